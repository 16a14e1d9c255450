// The R face of the native core's container reader (sinrcore/include/sinr/storage): an open file is
// an external pointer to a MatrixReader, and reads come back as Matrix's dgCMatrix (genes x cells).
// The core's typed errors reach R as "Kind\x1fmessage", which R/errors.R turns into a classed R
// condition whose message is the Python reader's one line; nothing here can end the R session.
#include <Rcpp.h>
#include <R_ext/Altrep.h>

#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sinr/moments.hpp"
#include "sinr/storage/errors.hpp"
#include "sinr/storage/reader.hpp"
#include "sinr/storage/source.hpp"

using sinr::storage::MatrixReader;
using sinr::storage::NameList;
using sinr::storage::SparseColumns;
using Handle = Rcpp::XPtr<MatrixReader>;

#define SINR_TRY try {
#define SINR_CATCH                                                                                          \
  }                                                                                                         \
  catch (const sinr::storage::SinrError& e) {                                                               \
    throw Rcpp::exception((std::string(e.kind()) + "\x1f" + e.what()).c_str(), false);                     \
  }                                                                                                         \
  catch (const std::bad_alloc&) {                                                                           \
    throw Rcpp::exception("MemoryError\x1fnot enough memory for this read", false);                         \
  }

namespace {

MatrixReader& reader(SEXP handle) {
  Handle h(handle);
  if (!h.get()) throw Rcpp::exception("ClosedError\x1fthis .sinr handle is closed or was saved and loaded", false);
  return *h;
}

std::vector<int64_t> indices(const Rcpp::NumericVector& idx) {
  std::vector<int64_t> out(idx.size());
  for (R_xlen_t i = 0; i < idx.size(); ++i) out[i] = static_cast<int64_t>(idx[i]);
  return out;
}

void check_fits(int64_t nnz) {
  if (nnz > INT_MAX)
    throw Rcpp::exception(("ValueError\x1f" + std::to_string(nnz) +
                           " nonzeros do not fit a dgCMatrix (at most 2^31 - 1): read the matrix in parts "
                           "(sinr_open(path)[, cells] or SinrMatrix(path))").c_str(),
                          false);
}

Rcpp::S4 dgc(SparseColumns&& m) {
  check_fits(static_cast<int64_t>(m.indices.size()));
  Rcpp::S4 out("dgCMatrix");
  Rcpp::IntegerVector i(m.indices.begin(), m.indices.end());
  m.indices = std::vector<int32_t>();
  Rcpp::NumericVector x(m.values.begin(), m.values.end());
  m.values = std::vector<int32_t>();
  Rcpp::IntegerVector p(m.indptr.begin(), m.indptr.end());
  out.slot("i") = i;
  out.slot("p") = p;
  out.slot("x") = x;
  out.slot("Dim") = Rcpp::IntegerVector::create(static_cast<int>(m.n_rows), static_cast<int>(m.n_cols));
  return out;
}

SEXP strings(const std::vector<std::string>& values) {
  Rcpp::CharacterVector out(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    SET_STRING_ELT(out, i, Rf_mkCharLenCE(values[i].data(), static_cast<int>(values[i].size()), CE_UTF8));
  return out;
}

// A MessagePack value as R: nil NULL, bool logical, int and float double, str character (UTF-8),
// bin raw, array an unnamed list, map a named list.
SEXP to_r(const sinr::storage::msgpack::Value& v) {
  using V = sinr::storage::msgpack::Value;
  switch (v.type) {
    case V::kNil: return R_NilValue;
    case V::kBool: return Rcpp::wrap(v.boolean);
    case V::kInt: return Rcpp::wrap(v.negative ? static_cast<double>(v.as_int64()) : static_cast<double>(v.as_uint64()));
    case V::kFloat: return Rcpp::wrap(v.number);
    case V::kStr: return strings({v.text});
    case V::kBin: return Rcpp::RawVector(v.text.begin(), v.text.end());
    case V::kArray: {
      Rcpp::List out(v.items.size());
      for (size_t i = 0; i < v.items.size(); ++i) out[i] = to_r(v.items[i]);
      return out;
    }
    case V::kMap: {
      Rcpp::List out(v.fields.size());
      std::vector<std::string> keys;
      for (size_t i = 0; i < v.fields.size(); ++i) {
        out[i] = to_r(v.fields[i].second);
        keys.push_back(v.fields[i].first);
      }
      out.attr("names") = strings(keys);
      return out;
    }
  }
  return R_NilValue;
}

}  // namespace

// [[Rcpp::export(.sinr_open)]]
SEXP sinr_open_(std::string path, std::string matrix) {
  SINR_TRY
  return Handle(new MatrixReader(std::make_shared<sinr::storage::FileSource>(path), matrix), true);
  SINR_CATCH
}

// [[Rcpp::export(.sinr_is_open)]]
bool sinr_is_open_(SEXP handle) {
  return TYPEOF(handle) == EXTPTRSXP && R_ExternalPtrAddr(handle) != nullptr;
}

// [[Rcpp::export(.sinr_check_unchanged)]]
void sinr_check_unchanged_(SEXP handle) {
  SINR_TRY
  reader(handle).check_unchanged();
  SINR_CATCH
}

// [[Rcpp::export(.sinr_header)]]
Rcpp::List sinr_header_(SEXP handle) {
  SINR_TRY
  MatrixReader& r = reader(handle);
  Rcpp::NumericVector stats;
  Rcpp::CharacterVector stat_names;
  for (const auto& [k, v] : r.stats()) {
    stats.push_back(v);
    stat_names.push_back(k);
  }
  stats.attr("names") = stat_names;
  return Rcpp::List::create(
      Rcpp::Named("path") = r.path(), Rcpp::Named("matrix") = r.name(),
      Rcpp::Named("n_genes") = static_cast<double>(r.n_genes()), Rcpp::Named("n_cells") = static_cast<double>(r.n_cells()),
      Rcpp::Named("nnz") = static_cast<double>(r.nnz()), Rcpp::Named("mode") = r.mode(),
      Rcpp::Named("max_error") = static_cast<double>(r.max_error()),
      Rcpp::Named("inputs_error") = r.inputs_error() == MatrixReader::kNoInputsError
                                        ? NA_REAL : static_cast<double>(r.inputs_error()),
      Rcpp::Named("n_chunks") = static_cast<double>(r.n_chunks()),
      Rcpp::Named("n_segments") = static_cast<double>(r.n_segments()),
      Rcpp::Named("identity") = Rcpp::NumericVector::create(static_cast<double>(r.file_size()),
                                                            static_cast<double>(r.footer_crc())),
      Rcpp::Named("version") = std::to_string(r.major()) + "." + std::to_string(r.minor()),
      Rcpp::Named("writer") = r.writer(), Rcpp::Named("matrices") = strings(r.matrix_names()),
      Rcpp::Named("chunk_starts") = Rcpp::NumericVector(r.chunk_starts().begin(), r.chunk_starts().end()),
      Rcpp::Named("file_size") = static_cast<double>(r.file_size()),
      Rcpp::Named("stored_bytes") = static_cast<double>(r.stored_bytes()), Rcpp::Named("stats") = stats);
  SINR_CATCH
}

// [[Rcpp::export(.sinr_contents)]]
Rcpp::List sinr_contents_(SEXP handle) {
  SINR_TRY
  const sinr::storage::FileContents c = reader(handle).contents();
  return Rcpp::List::create(Rcpp::Named("object") = c.object, Rcpp::Named("elements") = strings(c.elements),
                            Rcpp::Named("map") = to_r(c.map));
  SINR_CATCH
}

// [[Rcpp::export(.sinr_element_image)]]
Rcpp::RawVector sinr_element_image_(SEXP handle, std::string element) {
  SINR_TRY
  const std::vector<uint8_t> image = reader(handle).element_image(element);
  return Rcpp::RawVector(image.begin(), image.end());
  SINR_CATCH
}

namespace {

// A name list as a character vector whose strings R makes as it reads them, as R's own deferred
// strings (as.character(1:n)) are made: the strings of a raw matrix's 737,280 barcodes take R 0.5-0.6 s
// (its garbage collection of them most of it), where the core decodes them in 0.05 s, so dimnames()
// of a file took 0.65 s where it now takes 0.08 s. data1 holds the decoded names (an external pointer,
// NULL once every string is made), data2 the strings made so far (NA_STRING where none yet: a name is
// never NA), a STRSXP made at the first.
R_altrep_class_t lazy_names;

using Names = std::vector<std::string>;

// The decoded names of a lazy_names vector whose strings R has not all made (data1 not NULL).
const Names& decoded(SEXP x) { return *static_cast<const Names*>(R_ExternalPtrAddr(R_altrep_data1(x))); }

R_xlen_t lazy_length(SEXP x) {
  SEXP made = R_altrep_data2(x);
  if (made != R_NilValue) return XLENGTH(made);
  return static_cast<R_xlen_t>(decoded(x).size());
}

// The strings made so far, made into a STRSXP at the first string R reads.
SEXP made_strings(SEXP x) {
  SEXP made = R_altrep_data2(x);
  if (made == R_NilValue) {
    const R_xlen_t n = lazy_length(x);
    made = PROTECT(Rf_allocVector(STRSXP, n));
    for (R_xlen_t i = 0; i < n; ++i) SET_STRING_ELT(made, i, NA_STRING);
    R_set_altrep_data2(x, made);
    UNPROTECT(1);
  }
  return made;
}

SEXP lazy_elt(SEXP x, R_xlen_t i) {
  SEXP made = made_strings(x);
  SEXP out = STRING_ELT(made, i);
  if (out == NA_STRING && R_altrep_data1(x) != R_NilValue) {  // once every string is made, NA is R's
    const std::string& name = decoded(x)[static_cast<size_t>(i)];
    out = Rf_mkCharLenCE(name.data(), static_cast<int>(name.size()), CE_UTF8);
    SET_STRING_ELT(made, i, out);
  }
  return out;
}

// Every string made (R asks for the vector's memory): the decoded names are let go.
SEXP whole(SEXP x) {
  if (R_altrep_data1(x) == R_NilValue) return R_altrep_data2(x);
  SEXP made = PROTECT(made_strings(x));
  for (R_xlen_t i = 0, n = XLENGTH(made); i < n; ++i) lazy_elt(x, i);
  R_set_altrep_data1(x, R_NilValue);
  UNPROTECT(1);
  return made;
}

void* lazy_dataptr(SEXP x, Rboolean) { return DATAPTR(whole(x)); }

const void* lazy_dataptr_or_null(SEXP x) {
  return R_altrep_data1(x) == R_NilValue ? DATAPTR_RO(R_altrep_data2(x)) : nullptr;
}

void lazy_set_elt(SEXP x, R_xlen_t i, SEXP v) { SET_STRING_ELT(whole(x), i, v); }

// No name is NA; once every string is made, R may have set one to NA.
int lazy_no_na(SEXP x) { return R_altrep_data1(x) != R_NilValue; }

// Names as R reads them (lazy_names). A name holding a NUL byte, which no R string can hold, is
// refused here rather than where R first reads it; `what` names the list.
SEXP lazy_strings(Names&& values, const std::string& what) {
  for (const std::string& name : values)
    if (std::memchr(name.data(), '\0', name.size()))
      throw Rcpp::exception(("ValueError\x1f" + what + " holds a name with a NUL byte, which an R string cannot hold")
                                .c_str(),
                            false);
  Rcpp::XPtr<Names> names(new Names(std::move(values)), true);
  return R_new_altrep(lazy_names, names, R_NilValue);
}

}  // namespace

// [[Rcpp::init]]
void sinr_init_names(DllInfo* dll) {
  lazy_names = R_make_altstring_class("sinr_names", "scinrcodec", dll);
  R_set_altrep_Length_method(lazy_names, lazy_length);
  R_set_altvec_Dataptr_method(lazy_names, lazy_dataptr);
  R_set_altvec_Dataptr_or_null_method(lazy_names, lazy_dataptr_or_null);
  R_set_altstring_Elt_method(lazy_names, lazy_elt);
  R_set_altstring_Set_elt_method(lazy_names, lazy_set_elt);
  R_set_altstring_No_NA_method(lazy_names, lazy_no_na);
}

// [[Rcpp::export(.sinr_names)]]
SEXP sinr_names_(SEXP handle, std::string which) {
  SINR_TRY
  MatrixReader& r = reader(handle);
  NameList list = which == "gene_ids"        ? r.gene_ids()
                  : which == "gene_names"    ? r.gene_names()
                  : which == "feature_types" ? r.feature_types()
                                             : r.cell_names();
  if (!list.present) return R_NilValue;
  return lazy_strings(std::move(list.values), r.path() + ": " + which);
  SINR_CATCH
}

namespace {

// Where each name of a name list first is, and whether another gene or cell has it too: an
// open-addressed table over the names' UTF-8 bytes, so that a read by name looks its names up without
// R's match(), which makes every name's R string (a raw matrix's 737,280 barcodes: 1 s for a read of
// its 2,896 cells). A slot holds a name's 1-based position (0: empty) and, above it, the high half of
// its hash, so that a probe reads another name only where their hashes agree. The names are read from
// the list the index was built of (its external pointer's protected value): the decoded names of
// lazy_names while R has not made every string, else the strings.
struct NameIndex {
  std::vector<uint64_t> slots;
  std::vector<bool> shared;  // by position of a name's first occurrence
};

constexpr uint64_t kPosition = 0xffffffffu;

std::string_view name_at(SEXP names, R_xlen_t i) {
  if (ALTREP(names) && R_altrep_inherits(names, lazy_names) && R_altrep_data1(names) != R_NilValue)
    return decoded(names)[static_cast<size_t>(i)];
  SEXP s = STRING_ELT(names, i);
  return {CHAR(s), static_cast<size_t>(LENGTH(s))};
}

// The slot of `name`: where it is, or the empty slot where it would go (then the hash to put there).
size_t slot_of(const NameIndex& index, SEXP names, std::string_view name, uint64_t* hash_bits = nullptr) {
  const uint64_t hash = std::hash<std::string_view>{}(name);
  const uint64_t high = hash & ~kPosition;
  if (hash_bits) *hash_bits = high;
  const size_t mask = index.slots.size() - 1;
  for (size_t at = hash & mask;; at = (at + 1) & mask) {
    const uint64_t slot = index.slots[at];
    if (slot == 0 || ((slot & ~kPosition) == high && name_at(names, (slot & kPosition) - 1) == name)) return at;
  }
}

NameIndex& name_index(SEXP index) {
  auto* out = static_cast<NameIndex*>(R_ExternalPtrAddr(index));
  if (!out) throw Rcpp::exception("ClosedError\x1fthis name index was saved and loaded", false);
  return *out;
}

}  // namespace

// The NameIndex of a name list (a character vector of .sinr_names, lazy or made), kept with it.
// [[Rcpp::export(.sinr_name_index)]]
SEXP sinr_name_index_(SEXP names) {
  SINR_TRY
  const R_xlen_t n = XLENGTH(names);
  size_t size = 2;
  while (size < 2 * static_cast<size_t>(n)) size *= 2;  // at most half full
  auto* index = new NameIndex{std::vector<uint64_t>(size, 0), std::vector<bool>(static_cast<size_t>(n), false)};
  Rcpp::XPtr<NameIndex> out(index, true, R_NilValue, names);
  for (R_xlen_t i = 0; i < n; ++i) {
    uint64_t high = 0;
    const size_t at = slot_of(*index, names, name_at(names, i), &high);
    if (index->slots[at]) index->shared[(index->slots[at] & kPosition) - 1] = true;
    else index->slots[at] = high | static_cast<uint64_t>(i + 1);
  }
  return out;
  SINR_CATCH
}

// Where each key (a character vector) first is in an indexed name list, as R's match() finds it (a
// key in latin1 or the native encoding is compared as UTF-8; one marked "bytes" is no name, as R
// compares it with no string of another encoding):
// pos, 1-based (NA: no such name), and shared, whether another gene or cell has that name too.
// [[Rcpp::export(.sinr_name_match)]]
Rcpp::List sinr_name_match_(SEXP index, Rcpp::CharacterVector keys) {
  SINR_TRY
  const NameIndex& table = name_index(index);
  SEXP names = R_ExternalPtrProtected(index);
  Rcpp::IntegerVector pos(keys.size(), NA_INTEGER);
  Rcpp::LogicalVector shared(keys.size(), 0);
  for (R_xlen_t k = 0; k < keys.size(); ++k) {
    SEXP key = STRING_ELT(keys, k);
    if (key == NA_STRING || Rf_getCharCE(key) == CE_BYTES) continue;
    const void* vmax = vmaxget();
    const uint64_t at = table.slots[slot_of(table, names, Rf_translateCharUTF8(key))] & kPosition;
    vmaxset(vmax);
    if (!at) continue;
    pos[k] = static_cast<int>(at);
    shared[k] = table.shared[at - 1];
  }
  return Rcpp::List::create(Rcpp::Named("pos") = pos, Rcpp::Named("shared") = shared);
  SINR_CATCH
}

// [[Rcpp::export(.sinr_entry)]]
double sinr_entry_(SEXP handle, double gene, double cell) {
  SINR_TRY
  return static_cast<double>(reader(handle).entry(static_cast<int64_t>(gene), static_cast<int64_t>(cell)));
  SINR_CATCH
}

namespace {

// One axis's summaries as R holds them: nonzeros, sums, means and variances (n - 1 denominator, as
// R's var; NA over fewer than two entries), each item over `entries` entries, its zeros included,
// each rounded once; of the items `items` lists (1-based; NULL: every item in order), the others
// holding what `fill` gives (R spreads only the summary a call asks for: a file may declare 2**31
// genes and store a few).
Rcpp::List axis_summaries(sinr::MomentArrays& m, const std::vector<int64_t>* items, int64_t entries,
                          const std::string& what) {
  const R_xlen_t held = static_cast<R_xlen_t>(m.sums.size());
  Rcpp::NumericVector nonzeros(held), sums(held), means(held, entries ? 0.0 : R_NaN), variances(held, NA_REAL);
  for (R_xlen_t k = 0; k < held; ++k) {
    nonzeros[k] = static_cast<double>(m.nonzeros[k]);
    sums[k] = static_cast<double>(m.sums[k]);
  }
  const sinr::Moments v = m.view();
  const sinr::Span<const int64_t> sums64{v.sums.data, v.sums.size};
  if (entries && sinr::moments_mean(sums64, entries, {REAL(means), held}))
    throw sinr::storage::CorruptFileError(what + ": negative sums of counts (file is corrupt)");
  if (entries >= 2 && sinr::moments_variance(sums64, {v.squares_low.data, v.squares_low.size},
                                             {v.squares_high.data, v.squares_high.size}, entries, 1,
                                             {REAL(variances), held}))
    throw sinr::storage::CorruptFileError(what + ": sums that no counts can have (file is corrupt)");
  SEXP listed = R_NilValue;
  if (items) {
    Rcpp::NumericVector one_based(held);
    for (R_xlen_t k = 0; k < held; ++k) one_based[k] = static_cast<double>((*items)[k]) + 1;
    listed = one_based;
  }
  const Rcpp::List fill = Rcpp::List::create(Rcpp::Named("nonzeros") = 0.0, Rcpp::Named("sums") = 0.0,
                                             Rcpp::Named("means") = entries ? 0.0 : R_NaN,
                                             Rcpp::Named("variances") = entries >= 2 ? 0.0 : NA_REAL);
  return Rcpp::List::create(Rcpp::Named("items") = listed, Rcpp::Named("nonzeros") = nonzeros,
                            Rcpp::Named("sums") = sums, Rcpp::Named("means") = means,
                            Rcpp::Named("variances") = variances, Rcpp::Named("fill") = fill);
}

}  // namespace

// Each gene's and each cell's summaries (axis_summaries) from one pass of the core over every chunk
// (MatrixReader::moments), on `threads` threads.
// [[Rcpp::export(.sinr_summaries)]]
Rcpp::List sinr_summaries_(SEXP handle, int threads) {
  SINR_TRY
  MatrixReader& r = reader(handle);
  sinr::storage::MatrixMoments m = r.moments(threads);
  return Rcpp::List::create(Rcpp::Named("genes") = axis_summaries(m.of_genes, &m.genes, r.n_cells(), r.path()),
                            Rcpp::Named("cells") = axis_summaries(m.of_cells, nullptr, r.n_genes(), r.path()));
  SINR_CATCH
}

// [[Rcpp::export(.sinr_block)]]
Rcpp::S4 sinr_block_(SEXP handle, Rcpp::Nullable<Rcpp::NumericVector> genes, Rcpp::Nullable<Rcpp::NumericVector> cells,
                     int threads) {
  SINR_TRY
  MatrixReader& r = reader(handle);
  if (genes.isNull() && cells.isNull()) {  // the whole matrix, placed straight into R's vectors
    check_fits(r.nnz());
    // Uninitialised: the core writes every element (zero-filling them first costs a pass over memory).
    Rcpp::IntegerVector i(Rcpp::no_init(static_cast<R_xlen_t>(r.nnz())));
    Rcpp::NumericVector x(Rcpp::no_init(static_cast<R_xlen_t>(r.nnz())));
    std::vector<int64_t> indptr(static_cast<size_t>(r.n_cells()) + 1);
    r.whole_into<double>(threads, indptr.data(), INTEGER(i), REAL(x));
    Rcpp::S4 out("dgCMatrix");
    out.slot("i") = i;
    out.slot("p") = Rcpp::IntegerVector(indptr.begin(), indptr.end());
    out.slot("x") = x;
    out.slot("Dim") = Rcpp::IntegerVector::create(static_cast<int>(r.n_genes()), static_cast<int>(r.n_cells()));
    return out;
  }
  std::vector<int64_t> g, c;
  if (genes.isNotNull()) g = indices(Rcpp::NumericVector(genes));
  if (cells.isNotNull()) c = indices(Rcpp::NumericVector(cells));
  return dgc(r.block(genes.isNotNull() ? &g : nullptr, cells.isNotNull() ? &c : nullptr, threads));
  SINR_CATCH
}

namespace {

// A block of block processing, which reads consecutive parts of a chunk: of a chunk decoded whole,
// the reader keeps for the next parts the cells that fit in keep_bytes (DelayedArray's block size).
SparseColumns block_of(SEXP handle, Rcpp::Nullable<Rcpp::NumericVector> genes, Rcpp::Nullable<Rcpp::NumericVector> cells,
                       double keep_bytes) {
  std::vector<int64_t> g, c;
  if (genes.isNotNull()) g = indices(Rcpp::NumericVector(genes));
  if (cells.isNotNull()) c = indices(Rcpp::NumericVector(cells));
  MatrixReader& r = reader(handle);
  r.set_keep_bytes(keep_bytes >= 0 && keep_bytes < 9e18 ? static_cast<int64_t>(keep_bytes) : INT64_MAX / 16);
  SparseColumns m = r.block(genes.isNotNull() ? &g : nullptr, cells.isNotNull() ? &c : nullptr, 1);
  check_fits(static_cast<int64_t>(m.indices.size()));
  return m;
}

}  // namespace

// A block for DelayedArray's extract_sparse_array: its dim, and its nonzeros as the 1-based
// (row, column) pairs of an nnz x 2 integer matrix, column by column, with their integer values;
// what SparseArraySeed and COO_SparseArray hold, built here in one pass.
// [[Rcpp::export(.sinr_sparse_block)]]
Rcpp::List sinr_sparse_block_(SEXP handle, Rcpp::Nullable<Rcpp::NumericVector> genes,
                              Rcpp::Nullable<Rcpp::NumericVector> cells, double keep_bytes) {
  SINR_TRY
  const SparseColumns m = block_of(handle, genes, cells, keep_bytes);
  const int nnz = static_cast<int>(m.indices.size());
  Rcpp::IntegerMatrix nzindex(Rcpp::no_init(nnz, 2));
  int* rows = INTEGER(nzindex);
  int* cols = rows + nnz;
  for (int64_t j = 0; j < m.n_cols; ++j)
    for (int64_t e = m.indptr[j]; e < m.indptr[j + 1]; ++e) {
      rows[e] = m.indices[e] + 1;
      cols[e] = static_cast<int>(j + 1);
    }
  return Rcpp::List::create(
      Rcpp::Named("dim") = Rcpp::IntegerVector::create(static_cast<int>(m.n_rows), static_cast<int>(m.n_cols)),
      Rcpp::Named("nzindex") = nzindex, Rcpp::Named("nzdata") = Rcpp::IntegerVector(m.values.begin(), m.values.end()));
  SINR_CATCH
}

// A block for DelayedArray's extract_array: a dense integer matrix.
// [[Rcpp::export(.sinr_dense_block)]]
Rcpp::IntegerMatrix sinr_dense_block_(SEXP handle, Rcpp::Nullable<Rcpp::NumericVector> genes,
                                      Rcpp::Nullable<Rcpp::NumericVector> cells, double keep_bytes) {
  SINR_TRY
  const SparseColumns m = block_of(handle, genes, cells, keep_bytes);
  Rcpp::IntegerMatrix out(static_cast<int>(m.n_rows), static_cast<int>(m.n_cols));  // zero-filled
  int* at = INTEGER(out);
  for (int64_t j = 0; j < m.n_cols; ++j)
    for (int64_t e = m.indptr[j]; e < m.indptr[j + 1]; ++e) at[j * m.n_rows + m.indices[e]] = m.values[e];
  return out;
  SINR_CATCH
}
