// The matrix reader (see reader.hpp; the Python twin is scinrcodec/reader/index.py and matrix.py).
#include "sinr/storage/reader.hpp"

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>

#include "sinr/assemble.hpp"
#include "sinr/checksum.hpp"
#include "sinr/models.hpp"
#include "sinr/crc32.hpp"
#include "sinr/siren.hpp"
#include "sinr/storage/count_sections.hpp"
#include "sinr/storage/errors.hpp"
#include "sinr/threads.hpp"
#include "sinr/tile.hpp"
#include "sinr/tile3.hpp"

namespace sinr::storage {

namespace {

using msgpack::Value;
using i128 = __int128;

Span<const int32_t> s32(const std::vector<int32_t>& v) { return {v.data(), static_cast<int64_t>(v.size())}; }
Span<const int64_t> s64(const std::vector<int64_t>& v) { return {v.data(), static_cast<int64_t>(v.size())}; }
Span<const uint8_t> bytes_of(const std::vector<uint8_t>& v) { return {v.data(), static_cast<int64_t>(v.size())}; }

constexpr int64_t kChunkFields = 6;
// A read of a few cells reads their chunk's tile data into a buffer its thread keeps up to this size
// (a chunk of 2M nonzeros holds about 1.3 MB).
constexpr size_t kKeptTileBytes = size_t{16} << 20;
// A filtered read (a gene, some cells) bounds each tile's triples by its wanted rows or columns
// times its width or height, often 30x what it returns: the tiles are decoded into a scratch of
// that bound that the calling thread keeps up to this many triples (never zeroed: only the
// triples written are touched), and only the kept ones are copied out.
constexpr int64_t kKeptScratchTriples = int64_t{1} << 21;

// The calling thread's scratch triples, grown to the largest bound asked for and released after a
// read that grew it beyond kKeptScratchTriples.
struct TripleScratch {
  std::unique_ptr<int32_t[]> rows, cols, values;
  int64_t size = 0;
  void reserve(int64_t n) {
    if (n <= size) return;
    rows.reset(), cols.reset(), values.reset();
    size = 0;
    rows.reset(new int32_t[static_cast<size_t>(n)]);
    cols.reset(new int32_t[static_cast<size_t>(n)]);
    values.reset(new int32_t[static_cast<size_t>(n)]);
    size = n;
  }
  void trim() {
    if (size > kKeptScratchTriples) rows.reset(), cols.reset(), values.reset(), size = 0;
  }
};

constexpr int64_t kMaxSirenLayers = 16;
constexpr int64_t kMaxSirenMultiplier = int64_t{1} << 40;
constexpr int64_t kMaxSirenShiftSpec = 62;
constexpr int64_t kMaxErrorLimit = (int64_t{1} << 31) - 2;

struct SectionSpec {
  const char* name;
  bool required;
  int major = 0;  // the one major version that has the section; 0: every version
};
const SectionSpec kMatrixSections[] = {{"names.gene_ids", false}, {"names.gene_names", false},
                                       {"names.feature_types", false}, {"genes.order", true},
                                       {"genes.baseline", true},       {"chunks.index", true},
                                       {"segments.index", false, 3}};
// Format 3 stores both count sections as byte planes (spec §5.4.3, read by count_sections.cpp);
// format 2 its values.counts as a plain zstd array.
// A chunk holds exactly one of cells.order and cells.order_planes (rule CP1, checked where it is read), and
// at most one of cells.names and cells.barcodes (rule CB1, checked at its load).
const SectionSpec kChunkSections[] = {
    {"cells.order", false},      {"cells.order_planes", false, 3},
    {"cells.baseline", true},    {"cells.names", false}, {"cells.barcodes", false, 3}, {"bands.rows", true},
    {"bands.widths", true},      {"bands.crc32", true},       {"tiles.nnz", true},    {"tiles.bytes", true},
    {"gaps.counts", true, 3},    {"values.counts", false, 2}, {"values.counts", false, 3},
    {"siren.meta", false},       {"siren.weights", false},    {"tiles.data", true}};

// Python's repr of a header value, for messages that quote one.
std::string repr(const Value* v) {
  if (!v) return "None";
  switch (v->type) {
    case Value::kNil: return "None";
    case Value::kBool: return v->boolean ? "True" : "False";
    case Value::kInt: return v->negative ? std::to_string(v->as_int64()) : std::to_string(v->as_uint64());
    case Value::kStr: return quoted(v->text);
    default: return "<" + std::string(v->type == Value::kFloat ? "float" : "object") + ">";
  }
}

std::string list_repr(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + quoted(names[i]);
  return out + "]";
}

// A header field that must be an int in [low, high] (Python's _int).
int64_t field_int(const Value& header, const char* key, int64_t low, uint64_t high, const std::string& what) {
  const Value* v = header.get(key);
  if (!v || !v->int_in(low, high))
    throw CorruptFileError(what + ": field " + quoted(key) + " is missing or out of range");
  return v->as_int64();
}

// SectionTable restricted to known names, with unknown and missing names refused.
template <size_t N>
SectionTable known_sections(SectionTable table, const SectionSpec (&specs)[N], int major, bool newer_minor,
                            const std::string& what) {
  auto in_version = [major](const SectionSpec& s) { return s.major == 0 || s.major == major; };
  std::vector<std::string> unknown;
  for (const auto& entry : table) {
    bool known = false;
    for (const auto& s : specs) known = known || (entry.first == s.name && in_version(s));
    if (!known) unknown.push_back(entry.first);
  }
  if (!unknown.empty() && !newer_minor)
    throw CorruptFileError(what + ": unknown section(s) " + list_repr(unknown));  // std::map: sorted
  for (const auto& name : unknown) table.erase(name);
  std::vector<std::string> missing;
  for (const auto& s : specs)
    if (s.required && in_version(s) && !table.count(s.name)) missing.push_back(s.name);
  if (!missing.empty()) throw CorruptFileError(what + ": missing section(s) " + list_repr(missing));
  return table;
}

// The two stages whose coding differs between major versions (spec §5.2): how a
// tile codes its positions and its values.
struct CodingStages {
  const char* positions;
  const char* values;
};
CodingStages coding_stages(int major) {
  return major == 2 ? CodingStages{"golomb-rans-positions", "context-rans-values"}
                    : CodingStages{"gap-bin-positions", "fine-context-values"};
}

// The required features this reader implements: `segments` (spec §5.5, format 3.1) and
// `cell-order-planes` (spec §5.6, format 3.2), the feature of section cells.order_planes.
constexpr const char* kSegments = "segments";
constexpr const char* kCellOrderPlanes = "cell-order-planes";
constexpr const char* kCellBarcodes = "cell-barcodes";  // section cells.barcodes (spec §5.7, format 3.2)

// Rules R1 and R2 of a format-3 matrix (spec §5.1.1, §9.2), checked before any other field of its map
// but its name: a matrix that needs a feature this reader lacks is refused for that feature. Returns
// the features the matrix lists.
std::set<std::string> check_required_features(const Value& header, const std::string& name,
                                              const std::string& version, const std::string& what) {
  const Value* features = header.get("required_features");
  bool ok = features && features->type == Value::kArray;
  std::set<std::string> seen;
  for (size_t i = 0; ok && i < features->items.size(); ++i)
    ok = features->items[i].type == Value::kStr && seen.insert(features->items[i].text).second;
  if (!ok) throw CorruptFileError(what + ": field 'required_features' is missing or not a list of distinct strings");
  for (const Value& feature : features->items)
    if (feature.text != kSegments && feature.text != kCellOrderPlanes && feature.text != kCellBarcodes)
      throw UnsupportedVersionError(what + ": matrix " + quoted(name) + " requires the feature " +
                                    quoted(feature.text) + " of .sinr format " + version +
                                    ", which this version of scinrcodec does not read (upgrade scinrcodec)");
  return seen;
}

// The stages of a matrix of format `major` against its mode (Python's parse_stages; rule M5, or R3
// in version 3); returns max_error.
int64_t parse_stages(const Value* configs, const std::string& mode, int major, const std::string& what) {
  if (!configs || configs->type != Value::kArray) throw CorruptFileError(what + ": stage list is missing");
  // Every stage id of every version is known: a format-3 matrix listing a format-2 stage breaks the
  // list of its mode, as in the Python reader.
  static const std::map<std::string, std::vector<std::string>> kParams = {
      {"reorder-detection-depth", {}},
      {"row-bands", {"chunk_cells", "patch_nnz", "tile_nnz"}},
      {coding_stages(2).positions, {}},
      {coding_stages(3).positions, {}},
      {"value-quantiser", {"max_error"}},
      {coding_stages(2).values, {}},
      {coding_stages(3).values, {}},
      {"siren-predictor", {}}};
  std::vector<std::string> ids;
  bool has_quantiser = false;
  int64_t max_error = 0;
  for (const auto& config : configs->items) {
    const Value* id = config.get("id");
    if (config.type != Value::kMap || !id || id->type != Value::kStr)
      throw CorruptFileError(what + ": a stage config is malformed");
    const auto known = kParams.find(id->text);
    if (known == kParams.end()) throw CorruptFileError(what + ": unknown stage " + quoted(id->text));
    if (std::find(ids.begin(), ids.end(), id->text) != ids.end())
      throw CorruptFileError(what + ": stage " + quoted(id->text) + " appears twice");
    std::vector<std::string> keys;
    for (const auto& field : config.fields)
      if (field.first != "id") keys.push_back(field.first);
    std::sort(keys.begin(), keys.end());
    if (keys != known->second)
      throw CorruptFileError(what + ": stage " + quoted(id->text) + " has parameters " + list_repr(keys));
    bool ok = true;
    if (id->text == "row-bands")
      ok = config.get("tile_nnz")->int_in(1, 1 << 20) && config.get("patch_nnz")->int_in(1, uint64_t{1} << 40) &&
           config.get("chunk_cells")->int_in(1, (uint64_t{1} << 31) - 1);
    if (id->text == "value-quantiser") {
      ok = config.get("max_error")->int_in(0, kMaxErrorLimit);
      if (ok) {
        has_quantiser = true;
        max_error = config.get("max_error")->as_int64();
      }
    }
    if (!ok) throw CorruptFileError(what + ": stage " + quoted(id->text) + " has invalid parameters");
    ids.push_back(id->text);
  }
  const CodingStages coding = coding_stages(major);
  std::vector<std::string> expected = {"reorder-detection-depth", "row-bands", coding.positions, "value-quantiser"};
  if (mode != "inr-only") expected.push_back(coding.values);
  expected.push_back("siren-predictor");
  if (ids != expected) throw CorruptFileError(what + ": stages " + list_repr(ids) + " do not match mode " + quoted(mode));
  if ((mode == "max-error") != (has_quantiser && max_error >= 1))
    throw CorruptFileError(what + ": mode " + quoted(mode) + " contradicts max_error " + std::to_string(max_error));
  return max_error;
}

// The frequencies of one context's bin counts (spec §C.4), as cumulative starts, a slot lookup and
// a used flag (scinrcodec.codec.models.frequencies and decoding_tables).
void value_model(const uint64_t* counts, int32_t* cum, uint8_t* lut, uint8_t* used) {
  std::fill(cum, cum + kNumBins + 1, 0);
  std::fill(lut, lut + kLutSize, 0);
  int64_t f[kNumBins];
  *used = normalised_frequencies(counts, 65536, f);
  if (!*used) return;
  for (int b = 0; b < kNumBins; ++b) cum[b + 1] = static_cast<int32_t>(cum[b] + f[b]);
  for (int s = 0; s < kLutSize; ++s) {
    const int32_t slot = s * (65536 / kLutSize);
    lut[s] = static_cast<uint8_t>(std::upper_bound(cum + 1, cum + kNumBins + 1, slot) - (cum + 1));
  }
}

}  // namespace

SparseColumns transposed(const SparseColumns& m) {
  if (m.n_cols > INT32_MAX) throw InvalidInputError("a matrix of more than 2**31 - 1 columns cannot be transposed");
  SparseColumns t;
  t.n_rows = m.n_cols;
  t.n_cols = m.n_rows;
  const size_t nnz = m.indices.size();
  // Row r's count goes to indptr[r + 2], so that after the prefix sums indptr[r + 1] is where row r
  // begins, the cursor of its scatter, and ends where it ends: no other table the rows' size.
  try {
    t.indptr.assign(static_cast<size_t>(m.n_rows) + 2, 0);
    t.indices.resize(nnz);
    t.values.resize(nnz);
  } catch (const std::bad_alloc&) {  // a file may declare 2**31 - 1 genes: a pointer each is 16 GiB
    char needed[64];
    const double bytes = (static_cast<double>(m.n_rows) + 2) * 8 + static_cast<double>(nnz) * 8;  // int64, int32 x 2
    std::snprintf(needed, sizeof needed, "%.1f GiB", bytes / (1 << 30));
    throw ResultAllocationError("the rows of " + std::to_string(m.n_rows) + " genes need " + needed);
  }
  for (const int32_t r : m.indices) {
    if (r < 0 || r >= m.n_rows) throw FormatError("a row index lies outside its matrix");
    ++t.indptr[static_cast<size_t>(r) + 2];
  }
  for (size_t r = 2; r < t.indptr.size(); ++r) t.indptr[r] += t.indptr[r - 1];
  for (int64_t j = 0; j < m.n_cols; ++j)
    for (int64_t i = m.indptr[j]; i < m.indptr[j + 1]; ++i) {
      const int64_t slot = t.indptr[static_cast<size_t>(m.indices[i]) + 1]++;
      t.indices[slot] = static_cast<int32_t>(j);
      t.values[slot] = m.values[i];
    }
  t.indptr.pop_back();
  return t;
}

const char* tile_status_text(int64_t status) {
  switch (status) {
    case kTruncated: return "a tile's stream ends early";
    case kBeyondTile: return "a position lies beyond its tile";
    case kBadEnding: return "a tile's stream does not end where its coder does";
    case kUnusedContext: return "a value uses a context with no frequency table";
    case kUnexpectedBytes: return "a tile with nothing to code has bytes";
    default: return "a tile is corrupt";
  }
}

// The gene tables, by row; a segment's rows (spec §5.5) are a table of their own, which its chunks
// read through rows_of().
struct MatrixReader::Genes {
  std::vector<int64_t> order;                        // gene of each stored row
  std::vector<int64_t> rank;                         // each row's rank by gene in its segment
  std::vector<std::pair<int64_t, int64_t>> by_gene;  // at each segment's rows: its (gene, row), ascending
  std::vector<int64_t> terms;                        // gene term of each stored row
};

struct MatrixReader::Chunk {
  int64_t index = 0, first_cell = 0, n_cells = 0, nnz = 0, n_rows = 0;
  int64_t segment = 0, row0 = 0, segment_rows = 0;  // its segment, the segment's first row and row count
  uint64_t checksum = 0;
  std::string what;
  SectionTable sections;
  int barcode_length = 0;  // L of its cells.barcodes (spec §5.7), 0 where its names are cells.names
  std::string barcode_suffix;
  std::vector<int64_t> row_starts, widths, tile_starts;
  // Per tile only what the band does not give (12 bytes a tile: at 1e9 nonzeros a chunk of every
  // tile field would hold 0.8 GB of directories): its stream's offset (absolute, the end last),
  // its nonzeros and its band; the rest follows from the band (spec §5.4.5).
  std::vector<int64_t> tile_offset;
  std::vector<uint32_t> tile_k;
  std::vector<int32_t> tile_band;
  std::vector<uint32_t> band_crc;
  // Checked bands: read without the chunk's lock by the reads that skip a checked band, set under it.
  std::vector<std::atomic<uint8_t>> band_verified;
  int64_t data_offset = 0, data_length = 0;
  std::vector<int64_t> cell_original;  // column -> original (file-wide) cell
  std::vector<int64_t> cell_position;  // chunk-local cell -> column
  std::vector<int32_t> cell_terms;     // by column
  std::vector<int32_t> cum;             // format 2's value models (spec §C.4)
  std::vector<uint8_t> lut, used;
  std::unique_ptr<const tile3::ChunkTables> tables3;  // format 3's gap and value tables (spec §6.4)
  const tile3::ChunkTables* tables3_model = nullptr;  // tables3, as the one model of ValueModels
  std::vector<int64_t> siren_spec{0, 0, 0}, siren_layers = std::vector<int64_t>(kLayerFields, 0), siren_params{0};
  std::vector<double> siren_norm{0.0, 1.0};
  int64_t n_sirens = 0;
  std::vector<int64_t> band_siren;
  std::mutex lock;

  int64_t n_tiles() const { return static_cast<int64_t>(tile_k.size()); }
  int64_t n_bands() const { return static_cast<int64_t>(widths.size()); }
  int64_t tile_length(int64_t t) const { return tile_offset[t + 1] - tile_offset[t]; }
  int64_t tile_row(int64_t t) const { return row_starts[tile_band[t]]; }
  int64_t tile_h(int64_t t) const { return row_starts[tile_band[t] + 1] - row_starts[tile_band[t]]; }
  int64_t tile_first(int64_t t) const { return (t - tile_starts[tile_band[t]]) * widths[tile_band[t]]; }
  int64_t tile_w(int64_t t) const { return std::min(widths[tile_band[t]], n_cells - tile_first(t)); }
  int64_t tile_siren(int64_t t) const { return band_siren[tile_band[t]]; }
  // Band b's tile bytes [first, second) in the file (empty, at the tile data's start, without tiles).
  std::pair<int64_t, int64_t> band_bytes(int64_t b) const {
    const int64_t first = tile_starts[b], last = tile_starts[b + 1];
    const int64_t lo = last > first ? tile_offset[first] : data_offset;
    return {lo, last > first ? tile_offset[last] : lo};
  }

  ValueModels models() const {
    return ValueModels{cum.data(), lut.data(), used.data(), 1, kNumContexts, tables3 ? &tables3_model : nullptr};
  }
  SirenSet sirens() const {
    return SirenSet{siren_spec.data(), siren_norm.data(), n_sirens, siren_layers.data(),
                    static_cast<int64_t>(siren_layers.size()) / kLayerFields, siren_params.data(),
                    static_cast<int64_t>(siren_params.size())};
  }
  // Its segment's rows of a gene table: the chunk's row r is the table's row row0 + r (spec §5.5).
  template <typename T>
  Span<const T> rows_of(const std::vector<T>& table) const {
    return {table.data() + row0, segment_rows};
  }
  int64_t band_of_row(int64_t row) const {
    return std::upper_bound(row_starts.begin(), row_starts.end(), row) - row_starts.begin() - 1;
  }
};

struct MatrixReader::Decoded {
  std::vector<int32_t> rows, cols, values;
};

// Nonzeros of chunk-local cells lo, lo + 1, ... (original order) of one chunk, genes ascending in
// each cell; cell_starts, when known, every cell's first nonzero in the whole chunk.
struct MatrixReader::ChunkColumns {
  int64_t chunk = -1, lo = 0;
  std::vector<int64_t> indptr, cell_starts;
  std::vector<int32_t> indices, values;
  bool holds(int64_t first, int64_t last) const {
    return first >= lo && last < lo + static_cast<int64_t>(indptr.size()) - 1;
  }
};

// ---------------------------------------------------------------------------------------- open

namespace {
std::atomic<uint64_t> g_readers{0};
}  // namespace

MatrixReader::MatrixReader(std::shared_ptr<const ByteSource> source, const std::string& matrix)
    : source_(std::move(source)), id_(++g_readers) {
  what_ = source_->name();
  Footer footer = read_footer(*source_);
  major_ = footer.major;
  minor_ = footer.minor;
  newer_minor_ = footer.minor > read_version(footer.major)->newest_minor;
  body_end_ = footer.offset;
  footer_crc_ = footer.crc;
  const Value& content = footer.content;
  const Value* format = content.get("format");
  if (!format || format->type != Value::kStr || format->text != "sinr")
    throw CorruptFileError(what_ + ": footer does not describe a .sinr file");
  if (const Value* writer = content.get("writer"); writer && writer->type == Value::kStr) writer_ = writer->text;
  if (const Value* table = content.get("sections")) file_sections_ = *table;
  const Value* matrices = content.get("matrices");
  if (!matrices || matrices->type != Value::kArray || matrices->items.empty())
    throw CorruptFileError(what_ + ": footer lists no matrix");
  for (const auto& m : matrices->items) {
    const Value* n = m.get("name");
    if (!n || n->type != Value::kStr) throw CorruptFileError(what_ + ": a matrix of the footer has no name");
    matrix_names_.push_back(n->text);
  }
  if (std::set<std::string>(matrix_names_.begin(), matrix_names_.end()).size() != matrix_names_.size())
    throw CorruptFileError(what_ + ": two matrices share a name");
  size_t chosen = 0;
  if (!matrix.empty()) {
    chosen = std::find(matrix_names_.begin(), matrix_names_.end(), matrix) - matrix_names_.begin();
    if (chosen == matrix_names_.size()) {
      std::string all;
      for (size_t i = 0; i < matrix_names_.size(); ++i) all += (i ? ", " : "") + matrix_names_[i];
      throw SinrKeyError(what_ + ": no matrix named " + quoted(matrix) + " (it holds " + all + ")");
    }
  }
  const Value& header = matrices->items[chosen];
  const std::string& what = what_;
  name_ = matrix_names_[chosen];
  const std::string version = std::to_string(major_) + "." + std::to_string(minor_);
  if (major_ >= 3) {
    const std::set<std::string> features = check_required_features(header, name_, version, what);
    segmented_ = features.count(kSegments) > 0;
    cell_order_planes_ = features.count(kCellOrderPlanes) > 0;
    cell_barcodes_ = features.count(kCellBarcodes) > 0;
  }
  const Value* shape = header.get("shape");
  if (!shape || shape->type != Value::kArray || shape->items.size() != 2)
    throw CorruptFileError(what + ": header lacks a valid shape");
  for (int axis = 0; axis < 2; ++axis)
    if (!shape->items[axis].int_in(0, kMaxDimension))
      throw CorruptFileError(what + ": shape: field 'n' is missing or out of range");
  n_genes_ = shape->items[0].as_int64();
  n_cells_ = shape->items[1].as_int64();
  nnz_ = field_int(header, "nnz", 0, static_cast<uint64_t>(n_genes_) * static_cast<uint64_t>(n_cells_), what);
  const Value* mode = header.get("mode");
  if (!mode || mode->type != Value::kStr ||
      (mode->text != "lossless" && mode->text != "max-error" && mode->text != "inr-only"))
    throw CorruptFileError(what + ": unknown mode " + repr(mode));
  mode_ = mode->text;
  max_error_ = parse_stages(header.get("stages"), mode_, major_, what);
  n_chunks_ = field_int(header, "n_chunks", 0, n_cells_, what);
  if ((n_cells_ > 0) != (n_chunks_ > 0))
    throw CorruptFileError(what + ": " + std::to_string(n_chunks_) + " chunks for " + std::to_string(n_cells_) +
                           " cells");
  if (!segmented_ && major_ >= 3 && header.get("n_segments"))  // SG1
    throw CorruptFileError(what + ": field 'n_segments' without the feature 'segments'");
  const int64_t n_segments = segmented_ ? field_int(header, "n_segments", 1, n_chunks_, what) : 1;
  // M6, SG1: with segments, every segment may store every gene, 2^31 - 1 rows at most
  n_stored_ = field_int(header, "n_stored_genes", 0,
                        std::min<uint64_t>(static_cast<uint64_t>(n_genes_) * n_segments, kMaxDimension), what);
  for (const char* key : {"gene_names_are_ids", "has_cell_names"}) {
    const Value* v = header.get(key);
    if (!v || v->type != Value::kBool)
      throw CorruptFileError(what + ": field " + quoted(key) + " is missing or not a boolean");
  }
  gene_names_are_ids_ = header.get("gene_names_are_ids")->boolean;
  has_cell_names_ = header.get("has_cell_names")->boolean;
  if (const Value* stats = header.get("stats"); stats && stats->type == Value::kMap)
    for (const auto& [key, v] : stats->fields) {
      if (v.type == Value::kInt) stats_[key] = v.negative ? double(v.as_int64()) : double(v.as_uint64());
      if (v.type == Value::kFloat && std::isfinite(v.number)) stats_[key] = v.number;
    }
  // informative (§12.7): a lossless file's, where it is an int of -1 .. 2^31 - 2; anything else ignored
  if (const Value* options = header.get("options"); options && options->type == Value::kMap && mode_ == "lossless")
    if (const Value* error = options->get("inputs_error"); error && error->int_in(-1, kMaxErrorLimit))
      inputs_error_ = error->as_int64();
  sections_ = known_sections(parse_section_table(header.get("sections"), kPreambleSize, body_end_, what),
                             kMatrixSections, major_, newer_minor_, what);
  if (gene_names_are_ids_ && (sections_.count("names.gene_names") || !sections_.count("names.gene_ids")))
    throw CorruptFileError(what + ": 'gene_names_are_ids' contradicts the name sections");
  {
    const std::vector<uint8_t> raw = section_bytes(sections_, "chunks.index", what);
    chunk_index_ = unpack_array<uint64_t>(raw.data(), raw.size(), static_cast<uint64_t>(n_chunks_) * kChunkFields,
                                          what + ": section 'chunks.index'");
  }
  i128 cells = 0, nonzeros = 0;
  std::vector<std::tuple<int64_t, int64_t, std::string>> ranges;
  chunk_starts_.assign(1, 0);
  nnz_starts_.assign(1, 0);
  for (int64_t i = 0; i < n_chunks_; ++i) {
    const uint64_t* f = &chunk_index_[i * kChunkFields];
    bool ok = true;
    for (int k = 0; k < kChunkFields; ++k) ok = ok && f[k] < (uint64_t{1} << 63);
    ok = ok && f[1] <= std::min<uint64_t>(f[3], kMaxChunkHeaderBytes) && f[0] >= 16 &&
         f[3] <= static_cast<uint64_t>(body_end_) && f[0] <= static_cast<uint64_t>(body_end_) - f[3] && f[4] >= 1;
    if (!ok) throw CorruptFileError(what + ": chunk index holds an impossible entry");
    cells += f[4];
    nonzeros += f[5];
  }
  if (cells != n_cells_ || nonzeros != nnz_)
    throw CorruptFileError(what + ": chunk index does not add up to the matrix's cells and nonzeros");
  for (int64_t i = 0; i < n_chunks_; ++i) {
    const uint64_t* f = &chunk_index_[i * kChunkFields];
    ranges.emplace_back(static_cast<int64_t>(f[0]), static_cast<int64_t>(f[3]), "chunk " + std::to_string(i));
    chunk_starts_.push_back(chunk_starts_.back() + static_cast<int64_t>(f[4]));
    nnz_starts_.push_back(nnz_starts_.back() + static_cast<int64_t>(f[5]));
  }
  for (const auto& [n, ref] : sections_) ranges.emplace_back(ref.offset, ref.length, n);
  check_disjoint(std::move(ranges), what);
  parse_segments(n_segments);
  chunks_.resize(static_cast<size_t>(n_chunks_));
}

void MatrixReader::parse_segments(int64_t n_segments) {
  if (static_cast<bool>(sections_.count("segments.index")) != segmented_)  // SG1
    throw CorruptFileError(what_ + ": section 'segments.index' must be present if and only if the matrix lists the "
                                   "feature 'segments'");
  segment_chunks_ = {0, n_chunks_};
  segment_rows_ = {0, n_stored_};
  if (!segmented_) return;
  const std::vector<uint8_t> raw = section_bytes(sections_, "segments.index", what_);
  const std::vector<uint64_t> index = unpack_array<uint64_t>(
      raw.data(), raw.size(), 2 * static_cast<uint64_t>(n_segments), what_ + ": section 'segments.index'");
  // SG2; the sums of items clamped below 2**31 fit in an int64
  segment_chunks_.assign(1, 0);
  segment_rows_.assign(1, 0);
  bool chunks_ok = true, rows_ok = true;
  for (int64_t s = 0; s < n_segments; ++s) {
    const uint64_t chunks = index[2 * s], rows = index[2 * s + 1];
    chunks_ok = chunks_ok && chunks >= 1 && chunks <= static_cast<uint64_t>(n_chunks_);
    rows_ok = rows_ok && rows <= static_cast<uint64_t>(n_genes_);
    segment_chunks_.push_back(segment_chunks_.back() + static_cast<int64_t>(std::min<uint64_t>(chunks, INT32_MAX)));
    segment_rows_.push_back(segment_rows_.back() + static_cast<int64_t>(std::min<uint64_t>(rows, INT32_MAX)));
  }
  if (!chunks_ok || segment_chunks_.back() != n_chunks_)
    throw CorruptFileError(what_ + ": segment index: every segment needs at least one chunk, and the segments' chunks "
                                   "must add up to the matrix's " + std::to_string(n_chunks_));
  if (!rows_ok || segment_rows_.back() != n_stored_)
    throw CorruptFileError(what_ + ": segment index: a segment's rows exceed the matrix's " + std::to_string(n_genes_) +
                           " genes, or the segments' rows do not add up to its " + std::to_string(n_stored_) +
                           " stored genes");
}

MatrixReader::~MatrixReader() = default;

int64_t MatrixReader::stored_bytes() const {
  int64_t total = 0;
  for (int64_t i = 0; i < n_chunks_; ++i) total += static_cast<int64_t>(chunk_index_[i * kChunkFields + 3]);
  for (const auto& [n, ref] : sections_) total += ref.length;
  return total;
}

std::vector<uint8_t> MatrixReader::section_bytes(const SectionTable& table, const std::string& name,
                                                 const std::string& what) {
  const SectionRef& ref = table.at(name);
  std::vector<uint8_t> data = source_->read(ref.offset, ref.length);
  if (!crc32_matches(data.data(), ref.length, ref.crc))
    throw CorruptFileError(what + ": checksum mismatch in section " + quoted(name) + " (file is corrupt)");
  return data;
}

SectionTable MatrixReader::file_sections() {
  if (minor_ < read_version(major_)->file_sections_since) return SectionTable();  // format 2.0: ignored (spec §4)
  return parse_section_table(&file_sections_, kPreambleSize, body_end_, what_ + ": file sections");
}

FileContents MatrixReader::contents() {
  FileContents out;
  const std::string what = what_ + ": file sections";
  const SectionTable refs = file_sections();
  if (refs.empty()) return out;
  if (!refs.count("contents")) {
    if (newer_minor_) return out;
    throw CorruptFileError(what_ + ": file-level sections without a 'contents' section");
  }
  const std::vector<uint8_t> raw = section_bytes(refs, "contents", what);
  out.map = unpack_map(raw.data(), raw.size(), what + ": section 'contents'");
  const Value* object = out.map.get("object");
  if (!object || object->type != Value::kStr || (object->text != "anndata" && object->text != "10x-h5"))
    throw CorruptFileError(what_ + ": contents section names an unknown object " + repr(object));
  const Value* elements = out.map.get("elements");
  if (!elements || elements->type != Value::kArray)
    throw CorruptFileError(what_ + ": contents section has a field of the wrong type");
  out.object = object->text;
  for (const auto& e : elements->items) {
    const Value* element = e.get("element");
    if (!element || element->type != Value::kStr)
      throw CorruptFileError(what_ + ": contents section holds a malformed element entry");
    for (const std::string& seen : out.elements)
      if (seen == element->text)  // as the Python reader: one entry per element
        throw CorruptFileError(what_ + ": contents section places element " + quoted(element->text) +
                               " in a missing or wrong section");
    out.elements.push_back(element->text);
  }
  return out;
}

std::vector<uint8_t> MatrixReader::element_image(const std::string& element) {
  const FileContents c = contents();
  const Value* elements = c.map.get("elements");
  if (c.object.empty() || !elements)  // a file of matrices only (or of a newer minor without contents)
    throw CorruptFileError(what_ + ": the file stores no element " + quoted(element));
  const SectionTable refs = file_sections();
  for (const auto& e : elements->items) {
    const Value* name = e.get("element");
    if (name->text != element) continue;
    const Value* section = e.get("section");
    const Value* bytes = e.get("bytes");
    if (!section || section->type != Value::kStr || !bytes || !bytes->is_int() || bytes->negative)
      throw CorruptFileError(what_ + ": contents section holds a malformed element entry");
    const std::string expected = c.object == "10x-h5" ? std::string("10x.h5") : "anndata." + element;
    if (section->text != expected || !refs.count(expected))
      throw CorruptFileError(what_ + ": contents section places element " + quoted(element) +
                             " in a missing or wrong section");
    const std::string what = what_ + ": file sections: section " + quoted(expected);
    const std::vector<uint8_t> raw = section_bytes(refs, expected, what_ + ": file sections");
    return unpack_array<uint8_t>(raw.data(), raw.size(), bytes->as_uint64(), what);
  }
  throw CorruptFileError(what_ + ": the file stores no element " + quoted(element));
}

// ---------------------------------------------------------------------------------------- genes

const MatrixReader::Genes& MatrixReader::genes_table() {
  std::lock_guard<std::mutex> guard(lock_);
  if (genes_) return *genes_;
  auto g = std::make_unique<Genes>();
  const std::string not_permutation = what_ + ": stored gene order is not part of a permutation";
  const std::vector<uint8_t> raw = section_bytes(sections_, "genes.order", what_);
  const std::vector<uint32_t> order =
      unpack_array<uint32_t>(raw.data(), raw.size(), n_stored_, what_ + ": section 'genes.order'");
  for (uint32_t gene : order)
    if (gene >= n_genes_) throw CorruptFileError(not_permutation);  // M13
  const std::vector<uint8_t> base = section_bytes(sections_, "genes.baseline", what_);
  const std::vector<int16_t> terms =
      unpack_array<int16_t>(base.data(), base.size(), n_stored_, what_ + ": section 'genes.baseline'");
  // M14's count, checked with M13: every read that decodes trusts n_genes, which a footer could claim
  // one more of than the names hold (an empty gene read as if stored). One section corroborates it,
  // the one of fewest stored bytes, the least to fetch (a file's feature types; its text is still
  // decompressed and counted, where every names section took about 2 ms of a first read of 33,694
  // genes); the others are checked where read.
  const SectionTable::value_type* counted = nullptr;
  for (const char* section : {"names.gene_ids", "names.gene_names", "names.feature_types"}) {
    const auto found = sections_.find(section);
    if (found != sections_.end() && (!counted || found->second.length < counted->second.length)) counted = &*found;
  }
  if (counted) {
    const std::vector<uint8_t> text = section_bytes(sections_, counted->first, what_);
    names_text(text.data(), text.size(), n_genes_, what_ + ": section " + quoted(counted->first));
  }
  g->order.assign(order.begin(), order.end());
  g->terms.assign(terms.begin(), terms.end());
  g->by_gene.resize(order.size());
  g->rank.resize(order.size());
  for (size_t s = 0; s + 1 < segment_rows_.size(); ++s) {
    const int64_t r0 = segment_rows_[s], r1 = segment_rows_[s + 1];
    for (int64_t r = r0; r < r1; ++r) g->by_gene[r] = {order[r], r - r0};
    std::sort(g->by_gene.begin() + r0, g->by_gene.begin() + r1);
    for (int64_t i = r0; i < r1; ++i) {
      if (i > r0 && g->by_gene[i].first == g->by_gene[i - 1].first)  // M13, SG3: no gene twice in a segment
        throw CorruptFileError(not_permutation + (segmented_ ? " within a segment" : ""));
      g->rank[r0 + g->by_gene[i].second] = i - r0;
    }
  }
  genes_ = std::move(g);
  return *genes_;
}

int64_t MatrixReader::segment_of_chunk(int64_t ci) const {
  return std::upper_bound(segment_chunks_.begin(), segment_chunks_.end(), ci) - segment_chunks_.begin() - 1;
}

int64_t MatrixReader::stored_row(int64_t segment, int64_t gene) {
  const Genes& g = genes_table();
  const auto first = g.by_gene.begin() + segment_rows_[segment], last = g.by_gene.begin() + segment_rows_[segment + 1];
  const auto it = std::lower_bound(first, last, std::make_pair(gene, int64_t{-1}));
  return it != last && it->first == gene ? it->second : -1;
}

// ---------------------------------------------------------------------------------------- names

NameList MatrixReader::global_names(const std::string& section) {
  NameList list;
  if (sections_.count(section)) {
    const std::vector<uint8_t> raw = section_bytes(sections_, section, what_);
    list.present = true;
    list.values = unpack_strings(raw.data(), raw.size(), n_genes_, what_ + ": section " + quoted(section));
  }
  return list;
}

NameList MatrixReader::gene_ids() { return global_names("names.gene_ids"); }
NameList MatrixReader::gene_names() { return gene_names_are_ids_ ? gene_ids() : global_names("names.gene_names"); }
NameList MatrixReader::feature_types() { return global_names("names.feature_types"); }

NameList MatrixReader::cell_names() {
  NameList list;
  if (has_cell_names_) {
    list.present = true;
    list.values.reserve(static_cast<size_t>(n_cells_));
    for (int64_t i = 0; i < n_chunks_; ++i) {
      Chunk& c = chunk(i);
      if (c.barcode_length > 0) {
        barcode_names(c, list.values);
        continue;
      }
      const std::vector<uint8_t> raw = section_bytes(c.sections, "cells.names", c.what);
      std::vector<std::string> names =
          unpack_strings(raw.data(), raw.size(), c.n_cells, c.what + ": section 'cells.names'");
      for (auto& n : names) list.values.push_back(std::move(n));
    }
  }
  return list;
}

// Chunk c's names from its cells.barcodes (spec §5.7), appended to `out`: item i is the difference, mod
// 2^64, of the codes of names i and i-1 (rule CB3: every code below 4^L).
void MatrixReader::barcode_names(const Chunk& c, std::vector<std::string>& out) {
  const std::vector<uint8_t> raw = section_bytes(c.sections, "cells.barcodes", c.what);
  const std::vector<uint64_t> deltas =
      unpack_shuffled<uint64_t>(raw.data(), raw.size(), c.n_cells, c.what + ": section 'cells.barcodes'");
  const int length = c.barcode_length;
  std::string name(static_cast<size_t>(length), 'A');
  name += c.barcode_suffix;
  uint64_t code = 0;
  for (const uint64_t delta : deltas) {
    code += delta;
    if (length < 32 && (code >> (2 * length)) != 0)
      throw CorruptFileError(c.what + ": section 'cells.barcodes' codes a barcode of more than " +
                             std::to_string(length) + " bases");
    for (int j = 0; j < length; ++j) name[length - 1 - j] = "ACGT"[(code >> (2 * j)) & 3];
    out.push_back(name);
  }
}

// What a chunk's load hands over, as soon as it has read the chunk's band layout, to a thread that
// holds the chunk's block and checks its bands meanwhile: a cell read first in its chunk then checks
// the tile data while the chunk's tables are built, not after (0.13 ms of its 1.2 ms, 6e7 files).
class MatrixReader::BandHandoff {
 public:
  std::vector<std::pair<int64_t, int64_t>> bytes;  // each band's tile bytes in the file
  std::vector<uint32_t> crc;                       // and its checksum

  void give(const Chunk& c) {
    std::lock_guard<std::mutex> guard(lock_);
    for (int64_t b = 0; b < c.n_bands(); ++b) bytes.push_back(c.band_bytes(b));
    crc = c.band_crc;
    state_ = kGiven;
    ready_.notify_all();
  }
  // Nothing (more) comes: a wait() returns false unless the layout was given.
  void close() {
    std::lock_guard<std::mutex> guard(lock_);
    if (state_ == kPending) state_ = kClosed;
    ready_.notify_all();
  }
  bool wait() {
    std::unique_lock<std::mutex> guard(lock_);
    ready_.wait(guard, [this] { return state_ != kPending; });
    return state_ == kGiven;
  }
  // Which bands of a block read from the file at `offset` (`length` bytes) match their checksums.
  std::vector<uint8_t> check(const uint8_t* block, int64_t offset, int64_t length) const {
    std::vector<uint8_t> ok(bytes.size(), 0);
    for (size_t b = 0; b < bytes.size(); ++b) {
      const int64_t lo = bytes[b].first - offset, n = bytes[b].second - bytes[b].first;
      ok[b] = lo >= 0 && n >= 0 && lo <= length - n && crc32_matches(block + lo, n, crc[b]);
    }
    return ok;
  }

 private:
  enum State { kPending, kGiven, kClosed };
  std::mutex lock_;
  std::condition_variable ready_;
  State state_ = kPending;
};

// ---------------------------------------------------------------------------------------- chunks

MatrixReader::Chunk& MatrixReader::chunk(int64_t i, BandHandoff* handoff) {
  {
    std::lock_guard<std::mutex> guard(lock_);
    if (chunks_[i]) return *chunks_[i];
  }
  std::unique_ptr<Chunk> loaded = load_chunk(i, handoff);
  std::lock_guard<std::mutex> guard(lock_);
  if (!chunks_[i]) chunks_[i] = std::move(loaded);
  return *chunks_[i];
}

std::unique_ptr<MatrixReader::Chunk> MatrixReader::load_chunk(int64_t i, BandHandoff* handoff) {
  auto c = std::make_unique<Chunk>();
  const std::string what = what_ + ": chunk " + std::to_string(i);
  const uint64_t* f = &chunk_index_[i * kChunkFields];
  const int64_t offset = static_cast<int64_t>(f[0]), header_length = static_cast<int64_t>(f[1]);
  const int64_t block_length = static_cast<int64_t>(f[3]), n = static_cast<int64_t>(f[4]);
  const int64_t nnz = static_cast<int64_t>(f[5]);
  c->index = i;
  c->what = what;
  c->segment = segment_of_chunk(i);
  c->row0 = segment_rows_[c->segment];
  c->segment_rows = segment_rows_[c->segment + 1] - c->row0;
  c->first_cell = chunk_starts_[i];
  c->n_cells = n;
  c->nnz = nnz;
  const std::vector<uint8_t> raw = source_->read(offset, header_length);
  if (!crc32_matches(raw.data(), header_length, static_cast<uint32_t>(f[2])))
    throw CorruptFileError(what + ": header checksum mismatch (file is corrupt)");
  const Value header = unpack_header(raw.data(), raw.size(), kMaxChunkHeaderBytes, what + " header");
  if (field_int(header, "n_cells", 0, kMaxDimension, what) != n ||
      field_int(header, "nnz", 0, uint64_t{INT64_MAX}, what) != nnz)
    throw CorruptFileError(what + ": header contradicts the chunk index");
  c->n_rows = field_int(header, "n_rows", 0, n_stored_, what);  // K4
  if (c->n_rows > c->segment_rows)  // SG4
    throw CorruptFileError(what + ": " + std::to_string(c->n_rows) + " rows, more than its segment " +
                           std::to_string(c->segment) + " stores (" + std::to_string(c->segment_rows) + ")");
  field_int(header, "checksum", 0, UINT64_MAX, what);
  c->checksum = header.get("checksum")->as_uint64();
  if ((nnz == 0) != (c->n_rows == 0))
    throw CorruptFileError(what + ": " + std::to_string(c->n_rows) + " rows for " + std::to_string(nnz) + " nonzeros");
  const int64_t body = offset + header_length;
  const int64_t n_bands = field_int(header, "n_bands", 0, c->n_rows, what);
  if ((c->n_rows > 0) != (n_bands > 0))
    throw CorruptFileError(what + ": " + std::to_string(n_bands) + " bands for " + std::to_string(c->n_rows) +
                           " rows");
  c->sections = known_sections(parse_section_table(header.get("sections"), body, offset + block_length, what, body),
                               kChunkSections, major_, newer_minor_, what);
  const SectionTable& table = c->sections;
  // Rules K6 and CB1 (spec §5.7): the names in one section where the matrix has them, as barcodes only with
  // their feature listed; and CB2, the barcodes' length and suffix in the header.
  const bool barcodes = table.count("cells.barcodes") > 0;
  if ((table.count("cells.names") > 0 || barcodes) != has_cell_names_)
    throw CorruptFileError(what + ": cell names contradict the matrix's 'has_cell_names'");
  if (barcodes && table.count("cells.names"))
    throw CorruptFileError(what + ": holds both of the sections 'cells.names' and 'cells.barcodes'; a chunk holds "
                           "exactly one");
  if (barcodes && !cell_barcodes_)
    throw CorruptFileError(what + ": section 'cells.barcodes' needs the feature 'cell-barcodes', which the "
                           "matrix's required_features does not list");
  if (barcodes) {
    const Value* length = header.get("barcode_length");
    const Value* suffix = header.get("barcode_suffix");
    const bool ok = length && length->is_int() && length->int_in(1, 32) &&
                    suffix && suffix->type == Value::kStr && suffix->text.find_first_of("\r\n") == std::string::npos &&
                    length->as_int64() + static_cast<int64_t>(suffix->text.size()) <= kMaxNameBytes;
    if (!ok)
      throw CorruptFileError(what + ": section 'cells.barcodes' needs an int 'barcode_length' of 1 .. 32 and a str "
                             "'barcode_suffix' without line ends, the two at most " + std::to_string(kMaxNameBytes) +
                             " bytes a name");
    c->barcode_length = static_cast<int>(length->as_int64());
    c->barcode_suffix = suffix->text;
  }
  if (static_cast<bool>(table.count("values.counts")) == (mode_ == "inr-only"))
    throw CorruptFileError(what + ": value tables contradict mode " + quoted(mode_));
  auto array32 = [&](const char* name, uint64_t count) {
    const std::vector<uint8_t> bytes = section_bytes(table, name, what);
    return unpack_array<uint32_t>(bytes.data(), bytes.size(), count, what + ": section " + quoted(name));
  };
  // Geometry (Python's ChunkGeometry.checked) and the tile bound.
  const std::vector<uint32_t> rows = array32("bands.rows", n_bands + 1);
  const std::vector<uint32_t> widths = array32("bands.widths", n_bands);
  bool ok = rows[0] == 0 && static_cast<int64_t>(rows[n_bands]) == c->n_rows && !(c->n_rows > 0 && n == 0);
  for (int64_t b = 0; ok && b < n_bands; ++b) {
    const int64_t h = int64_t{rows[b + 1]} - int64_t{rows[b]}, w = widths[b];
    ok = h > 0 && w >= 1 && w <= std::max<int64_t>(n, 1) && h * std::min<int64_t>(w, std::max<int64_t>(n, 1)) <=
                                                               kMaxTileEntries;
  }
  if (!ok) throw CorruptFileError(what + ": band geometry contradicts the chunk's shape");
  c->row_starts.assign(rows.begin(), rows.end());
  c->widths.assign(widths.begin(), widths.end());
  c->tile_starts.assign(1, 0);
  i128 bound = nnz;
  for (int64_t b = 0; b < n_bands; ++b) {
    const int64_t h = c->row_starts[b + 1] - c->row_starts[b];
    c->tile_starts.push_back(c->tile_starts.back() + (n + c->widths[b] - 1) / c->widths[b]);
    const int64_t narrowest = std::max<int64_t>(kMaxTileEntries / h, 1);
    bound += 1 + (n + narrowest - 1) / narrowest;
  }
  const int64_t n_tiles = c->tile_starts.back();
  if (n_tiles > bound) throw CorruptFileError(what + ": more tiles than its nonzeros and shape allow");
  // Cells.
  const bool planes = table.count("cells.order_planes") > 0;
  // K5: without the feature (every version 2 matrix), cells.order is the one place of the order.
  if (!planes && !table.count("cells.order") && !cell_order_planes_)
    throw CorruptFileError(what + ": missing section(s) ['cells.order']");
  // Rule CP1: the cell order is in exactly one section, its byte planes only with their feature listed.
  if (planes == static_cast<bool>(table.count("cells.order")))
    throw CorruptFileError(what + ": holds " + (planes ? "both" : "neither") +
                           " of the sections 'cells.order' and 'cells.order_planes'; a chunk holds exactly one");
  if (planes && !cell_order_planes_)
    throw CorruptFileError(what + ": section 'cells.order_planes' needs the feature 'cell-order-planes', which the "
                           "matrix's required_features does not list");
  std::vector<uint32_t> order;
  if (planes) {
    const std::vector<uint8_t> bytes = section_bytes(table, "cells.order_planes", what);
    order = unpack_shuffled<uint32_t>(bytes.data(), bytes.size(), n, what + ": section 'cells.order_planes'");
  } else {
    order = array32("cells.order", n);
  }
  c->cell_position.assign(n, -1);
  for (int64_t col = 0; col < n; ++col) {
    if (order[col] >= n || c->cell_position[order[col]] >= 0)
      throw CorruptFileError(what + ": cell order is not a permutation");
    c->cell_position[order[col]] = col;
  }
  c->cell_original.resize(n);
  for (int64_t col = 0; col < n; ++col) c->cell_original[col] = c->first_cell + order[col];
  {
    const std::vector<uint8_t> bytes = section_bytes(table, "cells.baseline", what);
    const std::vector<int16_t> terms =
        unpack_array<int16_t>(bytes.data(), bytes.size(), n, what + ": section 'cells.baseline'");
    c->cell_terms.assign(terms.begin(), terms.end());
  }
  // Tiles.
  c->tile_k = array32("tiles.nnz", n_tiles);
  const std::vector<uint32_t> tile_bytes = array32("tiles.bytes", n_tiles);
  // Each tile's band and entries (format 3's density classes need them), in one pass over the
  // tiles written in place: a chunk of a 6e7 file has about 9,000 tiles, and pushing each field
  // took a fifth of the chunk's load.
  c->tile_band.resize(static_cast<size_t>(n_tiles));
  std::vector<int64_t> tile_n(static_cast<size_t>(n_tiles));
  i128 k_sum = 0, byte_sum = 0;
  ok = true;
  for (int64_t b = 0; b < n_bands; ++b) {
    const int64_t h = c->row_starts[b + 1] - c->row_starts[b], width = c->widths[b], first_tile = c->tile_starts[b];
    for (int64_t t = first_tile; t < c->tile_starts[b + 1]; ++t) {
      const int64_t entries = h * std::min(width, n - (t - first_tile) * width);
      c->tile_band[t] = static_cast<int32_t>(b);
      tile_n[t] = entries;
      ok &= c->tile_k[t] <= entries;
      k_sum += c->tile_k[t];
    }
  }
  if (k_sum != nnz || !ok)
    throw CorruptFileError(what + ": tile nonzeros contradict the chunk's nonzeros or tile sizes");
  const SectionRef& data = table.at("tiles.data");
  for (uint32_t b : tile_bytes) byte_sum += b;
  if (byte_sum != data.length) throw CorruptFileError(what + ": tile lengths do not add up to the tile data");
  c->data_offset = data.offset;
  c->data_length = data.length;
  c->tile_offset.resize(static_cast<size_t>(n_tiles) + 1);
  int64_t at = data.offset;
  for (int64_t t = 0; t < n_tiles; ++t) {
    c->tile_offset[t] = at;
    at += tile_bytes[t];
  }
  c->tile_offset[n_tiles] = at;
  c->band_crc = array32("bands.crc32", n_bands);
  c->band_verified = std::vector<std::atomic<uint8_t>>(static_cast<size_t>(n_bands));  // zero-initialised
  if (handoff) handoff->give(*c);
  // Count sections and the tiles' models, checked before any tile is decoded: format 2's value
  // models (spec §C.4; rule K13), format 3's gap and value tables (spec §6.4; rules G1-G3).
  if (major_ == 2) {
    c->cum.assign(kNumContexts * (kNumBins + 1), 0);
    c->lut.assign(kNumContexts * kLutSize, 0);
    c->used.assign(kNumContexts, 0);
    if (mode_ != "inr-only") {
      const std::vector<uint8_t> bytes = section_bytes(table, "values.counts", what);  // a plain zstd array
      const std::vector<uint64_t> value_counts = unpack_array<uint64_t>(
          bytes.data(), bytes.size(), kNumContexts * kNumBins, what + ": section 'values.counts'");
      check_value_counts(Span<const uint64_t>{value_counts.data(), static_cast<int64_t>(value_counts.size())}, nnz,
                         what);
      for (int k = 0; k < kNumContexts; ++k)
        value_model(&value_counts[k * kNumBins], &c->cum[k * (kNumBins + 1)], &c->lut[k * kLutSize], &c->used[k]);
    }
  } else {
    const bool code_values = mode_ != "inr-only";
    const std::vector<uint8_t> values = code_values ? section_bytes(table, "values.counts", what) : std::vector<uint8_t>();
    const std::vector<uint8_t> gaps = section_bytes(table, "gaps.counts", what);
    const std::vector<int64_t> tile_nnz(c->tile_k.begin(), c->tile_k.end());
    c->tables3 = format3_tables(Span<const uint8_t>{gaps.data(), static_cast<int64_t>(gaps.size())},
                                Span<const uint8_t>{values.data(), static_cast<int64_t>(values.size())}, code_values,
                                nnz, Span<const int64_t>{tile_n.data(), n_tiles},
                                Span<const int64_t>{tile_nnz.data(), n_tiles}, what);
    c->tables3_model = c->tables3.get();
  }
  // SIRENs (Python's _load_sirens, PatchSiren.parameter_count, from_meta and fits_int64).
  c->band_siren.assign(n_bands, -1);
  if (table.count("siren.meta") != table.count("siren.weights"))
    throw CorruptFileError(what + ": SIREN metadata and weights must come together");
  if (table.count("siren.meta")) {
    const std::vector<uint8_t> bytes = section_bytes(table, "siren.meta", what);
    const Value meta_map = unpack_map(bytes.data(), bytes.size(), what + ": section 'siren.meta'");
    const Value* meta = meta_map.get("bands");
    if (!meta || meta->type != Value::kArray || meta->items.empty())
      throw CorruptFileError(what + ": SIREN metadata is malformed");
    std::vector<int64_t> counts;
    for (const auto& entry : meta->items) {
      if (entry.type != Value::kArray || entry.items.size() != 2 || !entry.items[0].int_in(0, n_bands - 1) ||
          n_bands == 0)
        throw CorruptFileError(what + ": SIREN metadata is malformed");
      const Value& m = entry.items[1];
      const Value* layers = m.get("layers");
      if (!layers || layers->type != Value::kArray || layers->items.size() < 2 ||
          static_cast<int64_t>(layers->items.size()) > kMaxSirenLayers)
        throw CorruptFileError(what + ": SIREN metadata is malformed");
      int64_t total = 0, fan_in = 2;
      for (const auto& layer : layers->items) {
        bool shape_ok = layer.type == Value::kArray && layer.items.size() == 5;
        for (size_t k = 0; shape_ok && k < 5; ++k) shape_ok = layer.items[k].is_int();
        if (!shape_ok) throw CorruptFileError(what + ": SIREN layer metadata is malformed");
        if (!layer.items[1].int_in(fan_in, fan_in) || !layer.items[0].int_in(1, kMaxSirenWidth))
          throw CorruptFileError(what + ": SIREN layer shapes do not chain");
        const int64_t n_out = layer.items[0].as_int64();
        total += n_out * fan_in + n_out;
        fan_in = n_out;
      }
      if (fan_in != 1) throw CorruptFileError(what + ": SIREN must end in one output");
      counts.push_back(total);
    }
    std::set<int64_t> bands;
    for (const auto& entry : meta->items) bands.insert(entry.items[0].as_int64());
    if (bands.size() != meta->items.size()) throw CorruptFileError(what + ": a band has two SIRENs");
    const int64_t n_params = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    const std::vector<uint8_t> wbytes = section_bytes(table, "siren.weights", what);
    const std::vector<int16_t> weights =
        unpack_array<int16_t>(wbytes.data(), wbytes.size(), n_params, what + ": section 'siren.weights'");
    c->siren_spec.clear();
    c->siren_norm.clear();
    c->siren_layers.clear();
    c->siren_params.assign(weights.begin(), weights.end());
    int64_t used = 0;
    for (size_t s = 0; s < meta->items.size(); ++s) {
      const int64_t band = meta->items[s].items[0].as_int64();
      const Value& m = meta->items[s].items[1];
      const Value* bits_v = m.get("bits");
      if (!bits_v || !bits_v->int_in(2, 16)) throw CorruptFileError(what + ": SIREN metadata is malformed");
      const int64_t bits = bits_v->as_int64();
      const Value& layers = *m.get("layers");
      const int64_t first_row = static_cast<int64_t>(c->siren_layers.size()) / kLayerFields;
      int64_t at_param = used;
      for (const auto& layer : layers.items) {
        const Value &wm = layer.items[2], &bm = layer.items[3], &sh = layer.items[4];
        if (!sh.int_in(0, kMaxSirenShiftSpec) || !wm.int_in(-kMaxSirenMultiplier + 1, kMaxSirenMultiplier - 1) ||
            !bm.int_in(-kMaxSirenMultiplier + 1, kMaxSirenMultiplier - 1))
          throw CorruptFileError(what + ": SIREN layer scaling is out of range");
        const int64_t n_out = layer.items[0].as_int64(), n_in = layer.items[1].as_int64();
        for (int64_t p = at_param; p < at_param + n_out * n_in + n_out; ++p)
          if (std::abs(c->siren_params[p]) >= (int64_t{1} << (bits - 1)))
            throw CorruptFileError(what + ": SIREN parameters exceed their declared bit depth");
        c->siren_layers.insert(c->siren_layers.end(),
                               {n_out, n_in, wm.as_int64(), bm.as_int64(), sh.as_int64(), at_param});
        at_param += n_out * n_in + n_out;
      }
      const Value* norm = m.get("normalisation");
      static const char* kKinds[] = {"none", "minmax", "log"};
      int kind = -1;
      if (norm && norm->type == Value::kArray && norm->items.size() == 3 && norm->items[0].type == Value::kStr)
        for (int k = 0; k < 3; ++k)
          if (norm->items[0].text == kKinds[k]) kind = k;
      if (kind < 0 || norm->items[1].type != Value::kFloat || norm->items[2].type != Value::kFloat ||
          !std::isfinite(norm->items[1].number) || !std::isfinite(norm->items[2].number) ||
          !(norm->items[2].number > 0))
        throw CorruptFileError(what + ": patch normalisation metadata is malformed");
      const double off = norm->items[1].number, scale = norm->items[2].number;
      if ((kind != kNormMinmax && off != 0.0) || (kind == kNormNone && scale != 1.0))
        throw CorruptFileError(what + ": patch normalisation metadata contradicts its kind");
      // The static bound of spec §7.1.3, in exact 128-bit integers (every term is below 2**104).
      const int64_t h = c->row_starts[band + 1] - c->row_starts[band];
      i128 beta = std::max<int64_t>({h - 1, n - 1, 0});
      for (int64_t l = 0; l < static_cast<int64_t>(layers.items.size()); ++l) {
        const int64_t* row = &c->siren_layers[(first_row + l) * kLayerFields];
        const int64_t n_out = row[0], n_in = row[1];
        const i128 wm = row[2] < 0 ? -i128(row[2]) : i128(row[2]), bm = row[3] < 0 ? -i128(row[3]) : i128(row[3]);
        for (int64_t o = 0; o < n_out; ++o) {
          i128 sum = 0;
          for (int64_t k = 0; k < n_in; ++k) sum += std::abs(c->siren_params[row[5] + o * n_in + k]);
          const i128 bias = std::abs(c->siren_params[row[5] + n_out * n_in + o]);
          if (sum * beta * wm + bias * bm >= (i128(1) << 62))
            throw CorruptFileError(what + ": band " + std::to_string(band) + "'s SIREN can overflow 64-bit integers");
        }
        beta = 4096;
      }
      c->band_siren[band] = c->n_sirens++;
      c->siren_spec.insert(c->siren_spec.end(), {first_row, static_cast<int64_t>(layers.items.size()), kind});
      c->siren_norm.insert(c->siren_norm.end(), {off, scale});
      used = at_param;
    }
  }
  if (mode_ == "inr-only") {
    for (int64_t b = 0; b < n_bands; ++b) {
      int64_t band_nnz = 0;
      for (int64_t t = c->tile_starts[b]; t < c->tile_starts[b + 1]; ++t) band_nnz += c->tile_k[t];
      if (band_nnz > 0 && c->band_siren[b] < 0)
        throw CorruptFileError(what + ": an --inr-only band with nonzeros has no SIREN");
    }
  }
  return c;
}

void MatrixReader::verify_band(Chunk& c, int64_t band, const uint8_t* bytes) {
  std::lock_guard<std::mutex> guard(c.lock);
  if (c.band_verified[band]) return;
  const auto [lo, hi] = c.band_bytes(band);
  std::vector<uint8_t> read;
  if (!bytes) {
    read = source_->read(lo, hi - lo);
    bytes = read.data();
  } else {
    bytes += lo - c.data_offset;
  }
  if (!crc32_matches(bytes, hi - lo, c.band_crc[band]))
    throw CorruptFileError(what_ + ": chunk " + std::to_string(c.index) + ": checksum mismatch in the tiles of band " +
                           std::to_string(band) + " (file is corrupt)");
  c.band_verified[band] = 1;
}

// ---------------------------------------------------------------------------------------- decode

MatrixReader::Decoded MatrixReader::decode(Chunk& c, const std::vector<int64_t>& tiles, int64_t want_row,
                                           int64_t want_col, const std::vector<uint8_t>& col_mask,
                                           Span<const uint8_t> data, int threads, Decoded reuse) {
  Decoded out = std::move(reuse);  // its vectors keep their memory: resizing writes only what they lacked
  if (tiles.empty()) {
    out.rows.clear(), out.cols.clear(), out.values.clear();  // no triple of the last chunk stays
    return out;
  }
  const Genes& genes = genes_table();
  std::vector<int64_t> offset(tiles.size()), length(tiles.size()), capacity(tiles.size()), out_start(tiles.size());
  int64_t total_bytes = 0, total = 0;
  std::vector<int64_t> wanted;
  if (!col_mask.empty()) {
    wanted.assign(col_mask.size() + 1, 0);
    for (size_t i = 0; i < col_mask.size(); ++i) wanted[i + 1] = wanted[i] + col_mask[i];
  }
  for (size_t i = 0; i < tiles.size(); ++i) {
    const int64_t t = tiles[i];
    if (!c.band_verified[c.tile_band[t]]) verify_band(c, c.tile_band[t], nullptr);
    offset[i] = total_bytes;
    length[i] = c.tile_length(t);
    total_bytes += length[i];
    int64_t cap = c.tile_k[t];
    if (want_row >= 0) cap = std::min(cap, c.tile_w(t));
    if (want_col >= 0) cap = std::min(cap, c.tile_h(t));
    if (!col_mask.empty())
      cap = std::min(cap, c.tile_h(t) * (wanted[c.tile_first(t) + c.tile_w(t)] - wanted[c.tile_first(t)]));
    out_start[i] = total;
    capacity[i] = cap;
    total += cap;
  }
  // The tiles' streams: the chunk's tile data when the caller has it, else read in runs of
  // consecutive tiles.
  std::vector<uint8_t> buf;
  const uint8_t* bytes = nullptr;
  int64_t n_bytes = total_bytes;
  const bool shared = data.size > 0;  // no tile bytes: nothing to share
  if (shared) {
    for (size_t i = 0; i < tiles.size(); ++i) offset[i] = c.tile_offset[tiles[i]] - c.data_offset;
    bytes = data.data;
    n_bytes = data.size;
  } else {
    buf.resize(static_cast<size_t>(std::max<int64_t>(total_bytes, 1)));
    bytes = buf.data();
  }
  for (size_t i = 0; !shared && i < tiles.size();) {
    size_t j = i + 1;
    while (j < tiles.size() && c.tile_offset[tiles[j]] == c.tile_offset[tiles[j - 1] + 1]) ++j;
    const int64_t run = offset[j - 1] + length[j - 1] - offset[i];
    source_->read(c.tile_offset[tiles[i]], run, buf.data() + offset[i]);
    i = j;
  }
  // The tile directory of these tiles, fields the decoder takes as int64 arrays.
  const size_t n_picked = tiles.size();
  std::vector<int64_t> k(n_picked), h(n_picked), w(n_picked), row(n_picked), first(n_picked), siren(n_picked);
  const std::vector<int64_t> cells(n_picked, c.n_cells), model(n_picked, 0);
  for (size_t i = 0; i < n_picked; ++i) {
    const int64_t t = tiles[i];
    k[i] = c.tile_k[t];
    h[i] = c.tile_h(t);
    w[i] = c.tile_w(t);
    row[i] = c.tile_row(t);
    first[i] = c.tile_first(t);
    siren[i] = c.tile_siren(t);
  }
  auto span = [](const std::vector<int64_t>& v) { return Span<const int64_t>{v.data(), static_cast<int64_t>(v.size())}; };
  const TileDirectory dir{span(offset), span(length), span(k), span(h), span(w), span(row),
                          span(first),  span(first),  span(cells), span(model), span(siren)};
  ReadFilter filter;
  filter.want_row = want_row;
  filter.want_col = want_col;
  filter.col_mask = Span<const uint8_t>{col_mask.data(), static_cast<int64_t>(col_mask.size())};
  const bool filtered = want_row >= 0 || want_col >= 0 || !col_mask.empty();
  thread_local TripleScratch scratch;
  struct Trim {
    ~Trim() { scratch.trim(); }
  } trim;
  int32_t *rows, *cols, *values;
  if (filtered) {
    scratch.reserve(std::max<int64_t>(total, 1));
    rows = scratch.rows.get(), cols = scratch.cols.get(), values = scratch.values.get();
  } else {  // every triple of every tile is kept: decoded in place
    out.rows.resize(total);
    out.cols.resize(total);
    out.values.resize(total);
    rows = out.rows.data(), cols = out.cols.data(), values = out.values.data();
  }
  std::vector<int64_t> counts(tiles.size(), 0), status(tiles.size(), 0);
  decode_tiles<int32_t, int32_t>(
      Span<const uint8_t>{bytes, n_bytes}, dir, c.rows_of(genes.terms),
      Span<const int32_t>{c.cell_terms.data(), static_cast<int64_t>(c.cell_terms.size())}, c.models(), c.sirens(),
      mode_ == "lossless" ? kModeLossless : mode_ == "max-error" ? kModeMaxError : kModeInrOnly, max_error_, filter,
      span(out_start), Triples<int32_t, int32_t>{{rows, total}, {cols, total}, {values, total}},
      Span<int64_t>{counts.data(), static_cast<int64_t>(counts.size())},
      Span<int64_t>{status.data(), static_cast<int64_t>(status.size())}, threads);
  for (int64_t s : status)
    if (s) throw CorruptFileError(what_ + ": " + tile_status_text(s) + " (file is corrupt)");
  int64_t kept = 0;
  for (size_t i = 0; i < tiles.size(); ++i) {
    if (counts[i] < 0 || counts[i] > capacity[i]) throw CorruptFileError(what_ + ": a tile is corrupt (file is corrupt)");
    kept += counts[i];
  }
  if (filtered) {
    out.rows.resize(kept);
    out.cols.resize(kept);
    out.values.resize(kept);
  }
  kept = 0;
  for (size_t i = 0; i < tiles.size(); ++i)
    for (int64_t e = out_start[i]; e < out_start[i] + counts[i]; ++e, ++kept) {
      out.rows[kept] = rows[e];
      out.cols[kept] = cols[e];
      out.values[kept] = values[e];
    }
  out.rows.resize(kept);
  out.cols.resize(kept);
  out.values.resize(kept);
  return out;
}

void MatrixReader::check_unchanged() const {
  uint8_t last;
  if (source_->size() > 0) source_->read(source_->size() - 1, 1, &last);  // a read checks the file's version
}

void MatrixReader::check_index(int64_t i, int64_t n, const char* axis) const {
  if (i < 0 || i >= n)
    throw SinrIndexError(std::string(axis) + " index " + std::to_string(i) + " out of range for " + std::to_string(n) +
                         " " + axis + "s");
}

int64_t MatrixReader::entry(int64_t gene, int64_t cell) {
  check_index(gene, n_genes_, "gene");
  check_index(cell, n_cells_, "cell");
  const int64_t ci = std::upper_bound(chunk_starts_.begin(), chunk_starts_.end(), cell) - chunk_starts_.begin() - 1;
  const int64_t row = stored_row(segment_of_chunk(ci), gene);
  Chunk& c = chunk(ci);
  const int64_t column = c.cell_position[cell - c.first_cell];
  if (row < 0 || row >= c.n_rows) return 0;
  const int64_t band = c.band_of_row(row);
  const int64_t t = c.tile_starts[band] + column / c.widths[band];
  if (!c.band_verified[band]) verify_band(c, band, nullptr);
  std::vector<uint8_t> buf = source_->read(c.tile_offset[t], c.tile_length(t));
  if (buf.empty()) buf.push_back(0);
  TileInfo tile;
  tile.start = 0;
  tile.length = c.tile_length(t);
  tile.k = c.tile_k[t];
  tile.h = c.tile_h(t);
  tile.w = c.tile_w(t);
  tile.row = c.tile_row(t);
  tile.col = c.tile_first(t);
  tile.first = c.tile_first(t);
  tile.cells = c.n_cells;
  tile.model = 0;
  tile.siren = c.tile_siren(t);
  const Genes& genes = genes_table();
  const EntryValue v = decode_entry(
      Span<const uint8_t>{buf.data(), static_cast<int64_t>(buf.size())}, tile, c.rows_of(genes.terms),
      Span<const int32_t>{c.cell_terms.data(), static_cast<int64_t>(c.cell_terms.size())}, c.models(), c.sirens(),
      mode_ == "lossless" ? kModeLossless : mode_ == "max-error" ? kModeMaxError : kModeInrOnly, max_error_, row,
      column);
  if (v.status) throw CorruptFileError(what_ + ": " + tile_status_text(v.status) + " (file is corrupt)");
  return v.value;
}

namespace {

// Compressed columns from (column, row, value) triples: a counting sort by column, then each
// column's few entries sorted by row.
SparseColumns to_columns(int64_t n_rows, int64_t n_cols, std::vector<std::tuple<int64_t, int32_t, int32_t>>& t) {
  SparseColumns out;
  out.n_rows = n_rows;
  out.n_cols = n_cols;
  out.indptr.assign(n_cols + 1, 0);
  for (const auto& e : t) ++out.indptr[std::get<0>(e) + 1];
  for (int64_t j = 0; j < n_cols; ++j) out.indptr[j + 1] += out.indptr[j];
  std::vector<std::pair<int32_t, int32_t>> entries(t.size());
  std::vector<int64_t> cursor(out.indptr.begin(), out.indptr.end() - 1);
  for (const auto& [col, row, value] : t) entries[cursor[col]++] = {row, value};
  t = {};
  out.indices.resize(entries.size());
  out.values.resize(entries.size());
  for (int64_t j = 0; j < n_cols; ++j) {
    const auto first = entries.begin() + out.indptr[j], last = entries.begin() + out.indptr[j + 1];
    if (!std::is_sorted(first, last)) std::sort(first, last);
  }
  for (size_t e = 0; e < entries.size(); ++e) {
    out.indices[e] = entries[e].first;
    out.values[e] = entries[e].second;
  }
  return out;
}

}  // namespace

SparseColumns MatrixReader::genes(const std::vector<int64_t>& genes, int threads) {
  for (int64_t g : genes) check_index(g, n_genes_, "gene");
  // Output positions of each distinct gene: `distinct` holds the first, then next[position] the others.
  std::vector<std::pair<int64_t, int32_t>> distinct;  // (gene, first output position), genes ascending
  std::vector<int32_t> next(genes.size(), -1);
  {
    std::vector<std::pair<int64_t, int32_t>> all;
    for (size_t i = 0; i < genes.size(); ++i) all.emplace_back(genes[i], static_cast<int32_t>(i));
    std::sort(all.begin(), all.end());
    for (size_t k = 0; k < all.size(); ++k) {
      if (k + 1 < all.size() && all[k + 1].first == all[k].first) next[all[k].second] = all[k + 1].second;
      if (k == 0 || all[k - 1].first != all[k].first) distinct.push_back(all[k]);
    }
  }
  // Per segment, the wanted rows (a gene's row in each segment that stores it, spec §5.5) and each
  // one's first output position by row; then every chunk of a segment with wanted rows, a chunk
  // per thread at a time.
  struct Rows {
    std::vector<std::pair<int64_t, int32_t>> wanted;  // (row, first output position), rows ascending
    std::vector<int32_t> head;                        // rows lo..hi: first output position or -1
    int64_t lo = 0, hi = -1;
  };
  std::vector<Rows> segments(static_cast<size_t>(n_segments()));
  std::vector<int64_t> work;  // the chunks to decode
  for (int64_t s = 0; s < n_segments(); ++s) {
    Rows& r = segments[s];
    for (const auto& [gene, pos] : distinct)
      if (const int64_t row = stored_row(s, gene); row >= 0) r.wanted.emplace_back(row, pos);
    if (r.wanted.empty()) continue;
    std::sort(r.wanted.begin(), r.wanted.end());
    r.lo = r.wanted.front().first, r.hi = r.wanted.back().first;
    r.head.assign(static_cast<size_t>(r.hi - r.lo + 1), -1);  // at most the segment's rows
    for (const auto& [row, pos] : r.wanted) r.head[row - r.lo] = pos;
    for (int64_t ci = segment_chunks_[s]; ci < segment_chunks_[s + 1]; ++ci) work.push_back(ci);
  }
  const int64_t workers = std::min<int64_t>(threads > 0 ? threads : threads_.load(), static_cast<int64_t>(work.size()));
  std::vector<std::vector<std::tuple<int64_t, int32_t, int32_t>>> parts(static_cast<size_t>(std::max<int64_t>(workers, 1)));
  std::atomic<size_t> at{0};
  run_on_threads(static_cast<int>(parts.size()), [&](int p) {
    try {
      for (size_t i; (i = at.fetch_add(1)) < work.size();) {
        Chunk& c = chunk(work[i]);
        const Rows& r = segments[c.segment];
        std::vector<int64_t> bands;
        for (const auto& [row, pos] : r.wanted)
          if (row < c.n_rows) bands.push_back(c.band_of_row(row));
        bands.erase(std::unique(bands.begin(), bands.end()), bands.end());
        std::vector<int64_t> tiles;
        for (int64_t b : bands)
          for (int64_t t = c.tile_starts[b]; t < c.tile_starts[b + 1]; ++t) tiles.push_back(t);
        const int64_t want_row = r.wanted.size() == 1 ? r.lo : -1;
        const Decoded d = decode(c, tiles, want_row, -1, {}, {}, 1, Decoded{});
        if (want_row < 0 && static_cast<int64_t>(tiles.size()) == c.n_tiles()) check_whole_decode(c, d);
        for (size_t e = 0; e < d.values.size(); ++e) {
          const int64_t row = d.rows[e];
          if (row < r.lo || row > r.hi) continue;
          for (int32_t pos = r.head[row - r.lo]; pos >= 0; pos = next[pos])
            parts[p].emplace_back(c.cell_original[d.cols[e]], pos, d.values[e]);
        }
      }
    } catch (...) {
      at.store(work.size());  // a corrupt chunk ends the read: the other threads take no more
      throw;
    }
  });
  std::vector<std::tuple<int64_t, int32_t, int32_t>> triples = std::move(parts[0]);
  for (size_t p = 1; p < parts.size(); ++p) triples.insert(triples.end(), parts[p].begin(), parts[p].end());
  return to_columns(static_cast<int64_t>(genes.size()), n_cells_, triples);
}

SparseColumns MatrixReader::cells(const std::vector<int64_t>& cells, int n_threads) {
  for (int64_t j : cells) check_index(j, n_cells_, "cell");
  // Each wanted cell's chunk and chunk-local cell; each chunk's wanted cells, distinct, ascending.
  std::vector<int64_t> chunk_of(cells.size()), local_of(cells.size());
  std::vector<std::vector<int64_t>> wanted(static_cast<size_t>(n_chunks_));
  for (size_t i = 0; i < cells.size(); ++i) {
    chunk_of[i] = std::upper_bound(chunk_starts_.begin(), chunk_starts_.end(), cells[i]) - chunk_starts_.begin() - 1;
    local_of[i] = cells[i] - chunk_starts_[chunk_of[i]];
    wanted[chunk_of[i]].push_back(local_of[i]);
  }
  std::vector<int64_t> needed;  // the chunks holding wanted cells
  for (int64_t ci = 0; ci < n_chunks_; ++ci) {
    std::vector<int64_t>& local = wanted[ci];
    if (local.empty()) continue;
    std::sort(local.begin(), local.end());
    local.erase(std::unique(local.begin(), local.end()), local.end());
    needed.push_back(ci);
  }
  // Each chunk's wanted columns, copied out of its decode (which may hold every cell of the chunk)
  // before its thread decodes another: the read holds at most a chunk's decode per thread besides
  // its result. Cells of several chunks take a chunk per thread at a time (a chunk split among the
  // threads waits for its slowest part: 1,000 random cells of a 6e7 file kept 2 cores 1.75 busy);
  // those of one chunk share its tiles among the threads.
  const int threads = n_threads > 0 ? n_threads : threads_.load();
  const int workers = static_cast<int>(std::min<int64_t>(threads, static_cast<int64_t>(needed.size())));
  std::vector<SparseColumns> parts(static_cast<size_t>(n_chunks_));
  std::atomic<size_t> next{0};
  run_on_threads(std::max(workers, 1), [&](int) {
    try {
      for (size_t i; (i = next.fetch_add(1)) < needed.size();) {
        const int64_t ci = needed[i];
        const std::vector<int64_t>& local = wanted[ci];
        const std::shared_ptr<const ChunkColumns> decoded = chunk_columns(ci, local, workers > 1 ? 1 : threads);
        SparseColumns& part = parts[ci];
        part.indptr.assign(1, 0);
        for (int64_t cell : local) {
          const int64_t lo = decoded->indptr[cell - decoded->lo], hi = decoded->indptr[cell - decoded->lo + 1];
          part.indices.insert(part.indices.end(), decoded->indices.begin() + lo, decoded->indices.begin() + hi);
          part.values.insert(part.values.end(), decoded->values.begin() + lo, decoded->values.begin() + hi);
          part.indptr.push_back(static_cast<int64_t>(part.indices.size()));
        }
      }
    } catch (...) {
      next.store(needed.size());  // a corrupt chunk ends the read: the other threads take no more
      throw;
    }
  });
  SparseColumns out;
  out.n_rows = n_genes_;
  out.n_cols = static_cast<int64_t>(cells.size());
  out.indptr.assign(cells.size() + 1, 0);
  std::vector<int64_t> column_of(cells.size());
  for (size_t i = 0; i < cells.size(); ++i) {
    const std::vector<int64_t>& local = wanted[chunk_of[i]];
    column_of[i] = std::lower_bound(local.begin(), local.end(), local_of[i]) - local.begin();
    const SparseColumns& part = parts[chunk_of[i]];
    out.indptr[i + 1] = out.indptr[i] + part.indptr[column_of[i] + 1] - part.indptr[column_of[i]];
  }
  out.indices.resize(out.indptr.back());
  out.values.resize(out.indptr.back());
  for (size_t i = 0; i < cells.size(); ++i) {
    const SparseColumns& part = parts[chunk_of[i]];
    const int64_t lo = part.indptr[column_of[i]], hi = part.indptr[column_of[i] + 1];
    std::copy(part.indices.begin() + lo, part.indices.begin() + hi, out.indices.begin() + out.indptr[i]);
    std::copy(part.values.begin() + lo, part.values.begin() + hi, out.values.begin() + out.indptr[i]);
  }
  return out;
}

std::shared_ptr<const MatrixReader::ChunkColumns> MatrixReader::chunk_columns(int64_t ci,
                                                                              const std::vector<int64_t>& local,
                                                                              int threads) {
  std::shared_ptr<const ChunkColumns> kept;
  {
    std::lock_guard<std::mutex> guard(kept_lock_);
    kept = kept_;
  }
  if (kept && kept->chunk == ci && kept->holds(local.front(), local.back())) return kept;
  // The calling thread keeps the buffer of tile data (no fresh pages at each read) unless a chunk
  // made it larger than kKeptTileBytes (checked however the read ends), and knows whose checked
  // tile data it holds: a cell of the chunk read last by this thread reads none again (a copy of
  // 1.4 MB, an eighth of a cell read of a 6e7 file), as entries and genes keep the chunk's header.
  struct Held {
    uint64_t reader = 0;
    int64_t chunk = -1, at = 0;
  };
  thread_local std::vector<uint8_t> buffer;
  thread_local Held held;
  struct Trim {
    ~Trim() {
      if (buffer.size() > kKeptTileBytes) {
        std::vector<uint8_t>().swap(buffer);
        held = Held{};
      }
    }
  } trim;
  // Cells of one chunk whose header is not loaded yet, with threads to spare: the chunk's whole
  // block (header, sections, tile data) is read on a second thread while this one loads the header
  // and tables, so that a cell read first in its chunk waits for the longer of the two, not for
  // both (0.26 and 0.42 ms of its 1.5 ms on a 6e7 file).
  const uint64_t* f = &chunk_index_[ci * kChunkFields];
  const int64_t block_offset = static_cast<int64_t>(f[0]), block_length = static_cast<int64_t>(f[3]);
  const bool ahead = threads > 1 && !loaded(ci) && block_length > 0;
  BandHandoff handoff;
  std::vector<uint8_t> band_ok;  // the bands the reading thread found whole
  if (ahead) {
    held = Held{};
    if (static_cast<int64_t>(buffer.size()) < block_length) buffer.resize(static_cast<size_t>(block_length));
    uint8_t* const into = buffer.data();  // this thread's buffer (the other thread has one of its own)
    run_on_threads(2, [&](int p) {
      if (p == 0) {
        struct Close {
          BandHandoff& handoff;
          ~Close() { handoff.close(); }  // however the load ends, the other thread stops waiting
        } close{handoff};
        chunk(ci, &handoff);
      } else {
        source_->read(block_offset, block_length, into);
        // waits for call 0 (run_on_threads runs it first where it cannot start this thread)
        if (handoff.wait()) band_ok = handoff.check(into, block_offset, block_length);
      }
    });
  }
  Chunk& c = chunk(ci);
  if (!band_ok.empty()) {  // the checks of the chunk loaded by this call (the one kept, its layout the same)
    std::lock_guard<std::mutex> guard(c.lock);
    for (int64_t b = 0; b < c.n_bands() && b < static_cast<int64_t>(band_ok.size()); ++b)
      if (band_ok[b] && c.band_bytes(b) == handoff.bytes[b] && c.band_crc[b] == handoff.crc[b]) c.band_verified[b] = 1;
  }
  auto out = std::make_shared<ChunkColumns>();
  out->chunk = ci;
  out->indptr.assign(c.n_cells + 1, 0);
  if (c.n_rows == 0) return out;
  std::vector<int64_t> columns;
  for (int64_t cell : local) columns.push_back(c.cell_position[cell]);
  std::sort(columns.begin(), columns.end());
  std::vector<int64_t> tiles;
  for (size_t b = 0; b + 1 < c.row_starts.size(); ++b) {
    int64_t last = -1;
    for (int64_t col : columns) {
      const int64_t t = c.tile_starts[b] + col / c.widths[b];
      if (t != last) tiles.push_back(t);
      last = t;
    }
  }
  // A run of consecutive cells, where the reader keeps cells for later reads, is a block whose
  // following cells block processing asks for next: the chunk is then decoded whole in runs (twice:
  // counts, then places) and the cells after the wanted ones kept. Any other set (a few cells, or
  // cells drawn at random: 1,000 of a 6e7 file hit 87% of its tiles) decodes only the tiles that
  // hold them, once, and places only their nonzeros.
  const bool block = keep_bytes_ > 0 && local.back() - local.front() + 1 == static_cast<int64_t>(local.size());
  if (2 * static_cast<int64_t>(tiles.size()) < c.n_tiles() || !block) {
    std::vector<uint8_t> mask;
    if (columns.size() > 1) {
      mask.assign(c.n_cells, 0);
      for (int64_t col : columns) mask[col] = 1;
    }
    // A tile in most bands (a cell's): the chunk's tile data in one read, which checks every band
    // at once, rather than a read (and a check) per band; decoded on threads when it is much.
    int64_t work = 0;
    for (int64_t t : tiles) work += c.tile_k[t];
    const int decoders = work >= kParallelMinEntries ? static_cast<int>(std::min<int64_t>(threads, tiles.size())) : 1;
    Span<const uint8_t> data;
    if (held.reader == id_ && held.chunk == ci) {
      data = {buffer.data() + held.at, c.data_length};
    } else if (4 * static_cast<int64_t>(tiles.size()) >= c.n_bands()) {
      const int64_t at = c.data_offset - block_offset;  // the tile data in the block (checked at open)
      const bool in_block = ahead && at >= 0 && at <= block_length - c.data_length;
      held = Held{};
      data = in_block ? verified_data(c, buffer.data() + at) : chunk_data_into(c, buffer);
      held = Held{id_, ci, in_block ? at : 0};  // checked: a corrupt band threw before this
    }
    const Decoded d = decode(c, tiles, -1, columns.size() == 1 ? columns[0] : -1, mask, data, decoders, Decoded{});
    if (static_cast<int64_t>(columns.size()) == c.n_cells) check_whole_decode(c, d);  // every cell: every nonzero
    place_chunk(c, d, *out);
    return out;
  }
  std::vector<int64_t> starts = kept && kept->chunk == ci ? kept->cell_starts : std::vector<int64_t>{};
  kept.reset();
  {
    std::lock_guard<std::mutex> guard(kept_lock_);
    kept_.reset();  // the cells kept before are of no more use to block processing: not two sets at once
  }
  check_chunk_sum(c, place_chunk_in_runs(c, local, std::move(starts), *out));
  if (static_cast<int64_t>(out->indptr.size()) - 1 > static_cast<int64_t>(local.size())) {
    std::lock_guard<std::mutex> guard(kept_lock_);
    kept_ = out;
  }
  return out;
}

void MatrixReader::place_chunk(const Chunk& c, const Decoded& d, ChunkColumns& out) {
  const Genes& genes = genes_table();
  const Span<const int64_t> rank_of_row = c.rows_of(genes.rank);
  const int64_t n_rows = c.segment_rows, n_cells = c.n_cells, n = static_cast<int64_t>(d.values.size());
  auto fail = [&](int status) { check_placed(c, status); };
  // Each nonzero's cell (chunk-local, original order), checked, and each cell's count.
  std::vector<int32_t> cell_of(static_cast<size_t>(n));
  std::vector<int64_t>& indptr = out.indptr;
  indptr.assign(static_cast<size_t>(n_cells) + 1, 0);
  for (int64_t e = 0; e < n; ++e) {
    const int32_t row = d.rows[e], col = d.cols[e];
    if (row < 0 || row >= n_rows) fail(kAssembleBadRow);
    if (col < 0 || col >= n_cells) fail(kAssembleBadColumn);
    const int64_t cell = c.cell_original[col] - c.first_cell;
    if (cell < 0 || cell >= n_cells) fail(kAssembleBadCell);
    cell_of[e] = static_cast<int32_t>(cell);
    ++indptr[cell + 1];
  }
  for (int64_t j = 0; j < n_cells; ++j) indptr[j + 1] += indptr[j];
  // Each nonzero to its cell's range as (rank, value), then each cell's in gene order.
  out.indices.resize(static_cast<size_t>(n));
  out.values.resize(static_cast<size_t>(n));
  std::vector<int64_t> at(indptr.begin(), indptr.end() - 1);
  for (int64_t e = 0; e < n; ++e) {
    const int64_t slot = at[cell_of[e]]++;
    out.indices[slot] = static_cast<int32_t>(rank_of_row[d.rows[e]]);
    out.values[slot] = d.values[e];
  }
  order_by_gene(c, out);
}

uint64_t MatrixReader::place_chunk_in_runs(Chunk& c, const std::vector<int64_t>& local, std::vector<int64_t> starts,
                                           ChunkColumns& out) {
  const std::vector<uint8_t> data = chunk_data(c);
  const Genes& genes = genes_table();
  const Span<const int64_t> gene_of_row = c.rows_of(genes.order), rank_of_row = c.rows_of(genes.rank);
  const int64_t n_rows = c.segment_rows, n_cells = c.n_cells;
  auto fail = [&](int status) { check_placed(c, status); };
  std::vector<int64_t> cell_of_column(static_cast<size_t>(n_cells));
  for (int64_t q = 0; q < n_cells; ++q) {
    cell_of_column[q] = c.cell_original[q] - c.first_cell;
    if (cell_of_column[q] < 0 || cell_of_column[q] >= n_cells) fail(kAssembleBadCell);
  }
  // Runs of consecutive tiles of about run_entries_ nonzeros.
  std::vector<std::vector<int64_t>> runs(1);
  for (int64_t t = 0, size = 0; t < c.n_tiles(); size += c.tile_k[t], ++t) {
    if (size + c.tile_k[t] > run_entries_ && !runs.back().empty()) {
      runs.emplace_back();
      size = 0;
    }
    runs.back().push_back(t);
  }
  auto each_nonzero = [&](auto&& visit) {
    Decoded d;  // each run decoded into the last one's memory
    for (const std::vector<int64_t>& run : runs) {
      d = decode(c, run, -1, -1, {}, bytes_of(data), 1, std::move(d));
      for (size_t e = 0; e < d.values.size(); ++e) {
        const int32_t row = d.rows[e], col = d.cols[e];
        if (row < 0 || row >= n_rows) fail(kAssembleBadRow);
        if (col < 0 || col >= n_cells) fail(kAssembleBadColumn);
        visit(row, cell_of_column[col], d.values[e]);
      }
    }
  };
  if (starts.empty()) {  // each cell's count, unless counted for an earlier window of the chunk
    starts.assign(static_cast<size_t>(n_cells) + 1, 0);
    each_nonzero([&](int32_t, int64_t cell, int32_t) { ++starts[cell + 1]; });
    for (int64_t j = 0; j < n_cells; ++j) starts[j + 1] += starts[j];
  }
  if (static_cast<int64_t>(starts.size()) != n_cells + 1 || starts.back() != c.nnz)
    throw CorruptFileError(what_ + ": chunk " + std::to_string(c.index) + " decodes to " +
                           std::to_string(starts.empty() ? 0 : starts.back()) + " nonzeros, not " +
                           std::to_string(c.nnz));
  // The cells kept: from the first wanted one through the last, and on while keep_bytes_ allows.
  const int64_t lo = local.front();
  int64_t hi = local.back() + 1;
  constexpr int64_t kBytes = sizeof(int32_t) * 2;
  while (hi < n_cells && (starts[hi + 1] - starts[lo]) * kBytes <= keep_bytes_) ++hi;
  out.lo = lo;
  out.indptr.resize(static_cast<size_t>(hi - lo) + 1);
  for (int64_t j = lo; j <= hi; ++j) out.indptr[j - lo] = starts[j] - starts[lo];
  out.indices.resize(out.indptr.back());
  out.values.resize(out.indptr.back());
  // Each nonzero of a kept cell to its place; the checksum over every nonzero, each cell's count
  // checked again (the file could have changed since it was counted).
  std::vector<int64_t> at(static_cast<size_t>(n_cells));
  for (int64_t j = 0; j < n_cells; ++j) at[j] = starts[j] - starts[lo];
  uint64_t checksum = 0;
  each_nonzero([&](int32_t row, int64_t cell, int32_t value) {
    if (at[cell] >= starts[cell + 1] - starts[lo]) fail(kAssembleBadCell);
    checksum += entry_hash(static_cast<uint64_t>(gene_of_row[row]), static_cast<uint64_t>(c.first_cell + cell),
                           static_cast<uint64_t>(static_cast<int64_t>(value)));
    const int64_t e = at[cell]++;
    if (cell >= lo && cell < hi) {
      out.indices[e] = static_cast<int32_t>(rank_of_row[row]);
      out.values[e] = value;
    }
  });
  for (int64_t j = 0; j < n_cells; ++j)
    if (at[j] != starts[j + 1] - starts[lo]) fail(kAssembleBadCell);
  order_by_gene(c, out);
  out.cell_starts = std::move(starts);
  return checksum;
}

void MatrixReader::order_by_gene(const Chunk& c, ChunkColumns& out) {
  // The thread's ordering scratch, kept for its next read of a segment as tall (a cell read's
  // fresh scratch, 130 KB for 33,000 rows, was a fifth of its placing).
  thread_local std::unique_ptr<RankOrder> by_rank;
  thread_local int64_t ranks = -1;
  if (ranks != c.segment_rows) {
    by_rank = std::make_unique<RankOrder>(c.segment_rows);
    ranks = c.segment_rows;
  }
  const auto by_gene = c.rows_of(genes_table().by_gene);
  for (size_t j = 0; j + 1 < out.indptr.size(); ++j) {
    const int64_t first = out.indptr[j], m = out.indptr[j + 1] - first;
    if (m == 0) continue;
    by_rank->order(out.indices.data() + first, out.values.data() + first, m);
    for (int64_t e = first; e < first + m; ++e)
      out.indices[e] = static_cast<int32_t>(by_gene[out.indices[e]].first);
  }
}

namespace {

// Rows `rows` (indices into m's rows, any order, repeats allowed) of m, in that order.
SparseColumns select_rows(const SparseColumns& m, const std::vector<int64_t>& rows) {
  std::vector<std::pair<int64_t, int32_t>> wanted;
  for (size_t i = 0; i < rows.size(); ++i) wanted.emplace_back(rows[i], static_cast<int32_t>(i));
  std::sort(wanted.begin(), wanted.end());
  std::vector<std::tuple<int64_t, int32_t, int32_t>> triples;
  for (int64_t j = 0; j < m.n_cols; ++j)
    for (int64_t e = m.indptr[j]; e < m.indptr[j + 1]; ++e) {
      auto it = std::lower_bound(wanted.begin(), wanted.end(), std::make_pair(int64_t{m.indices[e]}, int32_t{-1}));
      for (; it != wanted.end() && it->first == m.indices[e]; ++it) triples.emplace_back(j, it->second, m.values[e]);
    }
  return to_columns(static_cast<int64_t>(rows.size()), m.n_cols, triples);
}

// Columns `cols` of m, in that order.
SparseColumns select_columns(const SparseColumns& m, const std::vector<int64_t>& cols) {
  SparseColumns out;
  out.n_rows = m.n_rows;
  out.n_cols = static_cast<int64_t>(cols.size());
  out.indptr.assign(1, 0);
  for (int64_t j : cols) {
    out.indices.insert(out.indices.end(), m.indices.begin() + m.indptr[j], m.indices.begin() + m.indptr[j + 1]);
    out.values.insert(out.values.end(), m.values.begin() + m.indptr[j], m.values.begin() + m.indptr[j + 1]);
    out.indptr.push_back(static_cast<int64_t>(out.indices.size()));
  }
  return out;
}

}  // namespace

SparseColumns MatrixReader::block(const std::vector<int64_t>* genes, const std::vector<int64_t>* cells, int threads) {
  if (!genes && !cells) return whole(threads > 0 ? threads : threads_.load());
  if (!cells) return this->genes(*genes, threads);
  if (!genes) return this->cells(*cells, threads);
  for (int64_t g : *genes) check_index(g, n_genes_, "gene");
  for (int64_t j : *cells) check_index(j, n_cells_, "cell");
  // A cell read costs about one tile per band per cell, a gene read one band's tiles per chunk.
  if (static_cast<double>(cells->size()) * n_genes_ <= static_cast<double>(genes->size()) * n_cells_)
    return select_rows(this->cells(*cells, threads), *genes);
  return select_columns(this->genes(*genes, threads), *cells);
}

std::vector<uint8_t> MatrixReader::chunk_data(Chunk& c) {
  std::vector<uint8_t> data;  // sized by chunk_data_into to the chunk's tile data exactly
  chunk_data_into(c, data);
  return data;
}

Span<const uint8_t> MatrixReader::chunk_data_into(Chunk& c, std::vector<uint8_t>& buffer) {
  if (static_cast<int64_t>(buffer.size()) < c.data_length) buffer.resize(static_cast<size_t>(c.data_length));
  source_->read(c.data_offset, c.data_length, buffer.data());
  return verified_data(c, buffer.data());
}

Span<const uint8_t> MatrixReader::verified_data(Chunk& c, const uint8_t* data) {
  for (size_t b = 0; b < c.band_verified.size(); ++b)
    if (!c.band_verified[b]) verify_band(c, static_cast<int64_t>(b), data);
  return {data, c.data_length};
}

bool MatrixReader::loaded(int64_t i) {
  std::lock_guard<std::mutex> guard(lock_);
  return chunks_[i] != nullptr;
}

MatrixReader::Decoded MatrixReader::decode_chunk(Chunk& c, Decoded reuse, std::vector<uint8_t>& bytes, int threads) {
  // The tiles by first column (band after band where they start together): the cell-major placing
  // then writes to the cells of a few tiles' width at a time, not to every cell of the chunk in
  // each band, and its writes stay in cache (the Python reader's decode_chunk(by_cell=True)).
  std::vector<int64_t> tiles(static_cast<size_t>(c.n_tiles()));
  std::iota(tiles.begin(), tiles.end(), 0);
  std::stable_sort(tiles.begin(), tiles.end(), [&c](int64_t a, int64_t b) { return c.tile_first(a) < c.tile_first(b); });
  Decoded d = decode(c, tiles, -1, -1, {}, chunk_data_into(c, bytes), threads, std::move(reuse));
  if (static_cast<int64_t>(d.values.size()) != c.nnz)
    throw CorruptFileError(what_ + ": chunk " + std::to_string(c.index) + " decodes to " +
                           std::to_string(d.values.size()) + " nonzeros, not " + std::to_string(c.nnz));
  return d;
}

void MatrixReader::check_placed(const Chunk& c, int status) const {
  if (status)
    throw CorruptFileError(what_ + ": chunk " + std::to_string(c.index) + ": " + assemble_status_text(status) +
                           " (file is corrupt)");
}

void MatrixReader::check_chunk_sum(const Chunk& c, uint64_t checksum) const {
  if (checksum != c.checksum)
    throw CorruptFileError(what_ + ": chunk " + std::to_string(c.index) +
                           " decodes to content that fails its checksum (file is corrupt)");
}

void MatrixReader::check_whole_decode(const Chunk& c, const Decoded& d) {
  uint64_t checksum = 0;
  const int64_t n = static_cast<int64_t>(d.values.size());
  if (content_checksum_mapped(d.rows.data(), d.cols.data(), d.values.data(), n, c.rows_of(genes_table().order),
                              Span<const int64_t>{c.cell_original.data(), static_cast<int64_t>(c.cell_original.size())},
                              &checksum) < 0)
    check_placed(c, kAssembleBadRow);
  check_chunk_sum(c, checksum);
}

SparseColumns MatrixReader::whole(int threads) {
  SparseColumns out;
  out.n_rows = n_genes_;
  out.n_cols = n_cells_;
  out.indptr.assign(n_cells_ + 1, 0);
  out.indices.resize(nnz_);
  out.values.resize(nnz_);
  whole_into<int32_t>(threads, out.indptr.data(), out.indices.data(), out.values.data());
  return out;
}

template <typename V>
void MatrixReader::whole_into(int threads, int64_t* indptr, int32_t* indices, V* values) {
  const Genes& genes = genes_table();
  for (int64_t ci = 0; ci < n_chunks_; ++ci) chunk(ci);  // chunks load (and are checked) in this thread
  indptr[0] = 0;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  // Whole chunks on threads of their own, or each chunk decoded and placed by every thread where
  // whole chunks would leave threads idle (a file of fewer chunks than threads: share_chunks); no
  // more threads than chunks or than kThreadNonzeros nonzeros each, whatever was asked (more would
  // only be started, and their tables sized, for nothing).
  threads = static_cast<int>(
      std::clamp<int64_t>(threads, 1, std::max<int64_t>({int64_t{1}, n_chunks_, nnz_ / kThreadNonzeros})));
  std::vector<int64_t> chunk_nnz(static_cast<size_t>(n_chunks_));
  for (int64_t ci = 0; ci < n_chunks_; ++ci) chunk_nnz[ci] = nnz_starts_[ci + 1] - nnz_starts_[ci];
  const bool shared = share_chunks(chunk_nnz.data(), n_chunks_, threads, kSharedChunkCost);
  const int inside = shared ? threads : 1;
  const int workers = shared ? 1 : static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n_chunks_)));
  run_on_threads(workers, [&](int) {
    try {
      PlaceScratch scratch;  // kept from one chunk to the next, as are the decoded triples and tile bytes
      Decoded d;
      std::vector<uint8_t> bytes;
      for (int64_t ci = next++; ci < n_chunks_ && !failed; ci = next++) {
        Chunk& c = *chunks_[ci];
        d = decode_chunk(c, std::move(d), bytes, inside);
        uint64_t checksum = 0;
        const int status = place_by_cell<int32_t, V>(
            s32(d.rows), s32(d.cols), s32(d.values), s64(c.cell_original), c.first_cell, c.n_cells,
            c.rows_of(genes.rank), c.rows_of(genes.order), nnz_starts_[ci],
            Span<int64_t>{indptr + c.first_cell, c.n_cells + 1},
            Span<int32_t>{indices, nnz_}, Span<V>{values, nnz_}, &checksum, &scratch, inside);
        check_placed(c, status);
        check_chunk_sum(c, checksum);
      }
    } catch (...) {
      failed = true;  // the other threads stop at their next chunk
      throw;
    }
  });
}

MatrixMoments MatrixReader::moments(int threads) {
  const Genes& table = genes_table();
  for (int64_t ci = 0; ci < n_chunks_; ++ci) chunk(ci);  // chunks load (and are checked) in this thread
  // Each stored row's place among the stored genes (a gene stored in several segments has a row in
  // each): the moments are the stored genes', never an item per gene the file declares.
  std::vector<int64_t> genes(table.order);
  std::sort(genes.begin(), genes.end());
  genes.erase(std::unique(genes.begin(), genes.end()), genes.end());
  std::vector<int64_t> slot_of_row(table.order.size());
  for (size_t r = 0; r < slot_of_row.size(); ++r)
    slot_of_row[r] = std::lower_bound(genes.begin(), genes.end(), table.order[r]) - genes.begin();
  const int64_t n_stored = static_cast<int64_t>(genes.size());
  const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n_chunks_)));
  MatrixMoments out{std::move(genes), MomentArrays(n_stored), MomentArrays(n_cells_)};
  std::vector<MomentArrays> per_thread(static_cast<size_t>(workers - 1), MomentArrays(n_stored));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  run_on_threads(workers, [&](int w) {
    try {
      // a chunk's cells are its own: every thread adds to them; each adds to its own genes
      const Moments genes_here = w == 0 ? out.of_genes.view() : per_thread[w - 1].view();
      Decoded d;  // the decoded triples and tile bytes kept from one chunk to the next
      std::vector<uint8_t> bytes;
      for (int64_t ci = next++; ci < n_chunks_ && !failed; ci = next++) {
        Chunk& c = *chunks_[ci];
        d = decode_chunk(c, std::move(d), bytes, 1);
        uint64_t checksum = 0;
        if (accumulate_moments(s32(d.rows), s32(d.cols), s32(d.values), c.rows_of(table.order), c.rows_of(slot_of_row),
                               s64(c.cell_original), 0, genes_here, out.of_cells.view(), &checksum))
          throw CorruptFileError(what_ + ": chunk " + std::to_string(c.index) +
                                 " decodes to nonzeros outside its genes or cells (file is corrupt)");
        check_chunk_sum(c, checksum);
      }
    } catch (...) {
      failed = true;  // the other threads stop at their next chunk
      throw;
    }
  });
  for (MomentArrays& part : per_thread) add_moments(out.of_genes.view(), part.view());
  return out;
}

template void MatrixReader::whole_into<int32_t>(int, int64_t*, int32_t*, int32_t*);
template void MatrixReader::whole_into<double>(int, int64_t*, int32_t*, double*);

}  // namespace sinr::storage
