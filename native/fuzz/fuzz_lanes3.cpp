// libFuzzer harness of format 3's lockstep tile decoder (lanes3.hpp), built with ASan and UBSan by
// .ci/sanitize (clang):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/core/include \
//           native/fuzz/fuzz_lanes3.cpp native/core/src/*.cpp -o fuzz_lanes3 && ./fuzz_lanes3 -runs=N
//
// Tiles whose nonzeros, values and terms come from the input are encoded under their own chunk's
// tables into one buffer (a heap copy of exactly the streams, so any overread is caught), then the
// read kernel (decode_tiles of tile.hpp, as whole decodes call it) decodes the batch once per path:
// the scalar decoder, the portable lanes and, where the CPU has AVX2, the AVX2 lanes. Every triple,
// count and status must be the same on each path, the output's untouched entries included; so must
// count_rows's row counts and statuses (the lanes' count mode). The first byte picks one of two
// properties:
// - valid tiles: every tile decodes, each row counts the nonzeros decoded in it, and the lanes
//   decode every tile themselves (none handed back);
// - damaged tiles: bytes, lengths, offsets, shapes, places and terms changed as the input says,
//   read whole or (a block read) for the columns the input marks.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz_bytes.hpp"
#include "sinr/lanes3.hpp"
#include "sinr/models.hpp"
#include "sinr/tile.hpp"
#include "sinr/tile3.hpp"

namespace {

using namespace sinr;
using fuzz::Bytes;
using fuzz::ro;
using fuzz::rw;


// A batch of tiles of one chunk, as the reader hands it to decode_tiles.
struct Batch {
  std::vector<uint8_t> buf;
  std::vector<int64_t> offset, length, k, h, w, row, col, first, cells, model, siren, out_start;
  std::vector<int64_t> gene_terms;
  std::vector<int32_t> cell_terms;
  std::vector<uint64_t> gap_counts, value_counts;
  std::vector<uint8_t> col_mask;  // empty: every column (a whole decode), else a block read's columns
  int64_t want_col = -1;          // >= 0: a cell read's column
  int64_t want_row = -1;          // >= 0: a gene read's row (the scalar decoder's on every path)
  int64_t total = 0;  // output entries
};

struct Output {
  std::vector<int32_t> rows, cols, values;
  std::vector<int64_t> count, status;
  bool operator==(const Output& o) const {
    return rows == o.rows && cols == o.cols && values == o.values && count == o.count && status == o.status;
  }
};

// count_rows's output: each row's nonzeros (the band's h rows) and each tile's status.
struct Counted {
  std::vector<int64_t> rows, status;
  bool operator==(const Counted& o) const { return rows == o.rows && status == o.status; }
};

TileDirectory directory(const Batch& b) {
  return TileDirectory{ro(b.offset), ro(b.length), ro(b.k),     ro(b.h),     ro(b.w),    ro(b.row),
                       ro(b.col),    ro(b.first),  ro(b.cells), ro(b.model), ro(b.siren)};
}

Output decode(const Batch& b, const tile3::ChunkTables& tables, TileLanes lanes) {
  const tile3::ChunkTables* const models3[] = {&tables};
  ValueModels models;
  models.tables3 = models3;
  models.n_models = 1;
  const int64_t n = static_cast<int64_t>(b.k.size());
  const TileDirectory tiles = directory(b);
  const size_t size = static_cast<size_t>(b.total);
  Output out{std::vector<int32_t>(size, -7), std::vector<int32_t>(size, -7), std::vector<int32_t>(size, -7),
             std::vector<int64_t>(static_cast<size_t>(n), -7), std::vector<int64_t>(static_cast<size_t>(n), -7)};
  ReadFilter filter;
  filter.col_mask = ro(b.col_mask);
  filter.want_col = b.want_col;
  filter.want_row = b.want_row;
  set_tile_lanes(lanes);
  set_packed_nnz_per_row(0);  // the lanes read packed tables, which small inputs would not get
  decode_tiles<int32_t, int32_t>(Span<const uint8_t>{b.buf.data(), static_cast<int64_t>(b.buf.size())}, tiles,
                                 ro(b.gene_terms), ro(b.cell_terms), models, SirenSet{}, kModeLossless, 0, filter,
                                 ro(b.out_start), Triples<int32_t, int32_t>{rw(out.rows), rw(out.cols), rw(out.values)},
                                 rw(out.count), rw(out.status));
  set_tile_lanes(TileLanes::kAuto);
  return out;
}

Counted count(const Batch& b, const tile3::ChunkTables& tables, TileLanes lanes) {
  const tile3::ChunkTables* const models3[] = {&tables};
  ValueModels models;
  models.tables3 = models3;
  models.n_models = 1;
  Counted out{std::vector<int64_t>(b.gene_terms.size(), 0), std::vector<int64_t>(b.k.size(), -7)};
  set_tile_lanes(lanes);
  set_packed_nnz_per_row(0);
  count_rows(Span<const uint8_t>{b.buf.data(), static_cast<int64_t>(b.buf.size())}, directory(b), models,
             rw(out.rows), rw(out.status));
  set_tile_lanes(TileLanes::kAuto);
  return out;
}

// The encoder's tables of a count section, into one of two sets kept between inputs: only the rows
// with counts now or before are built again (building every row, under the fuzzer's coverage hooks,
// would be most of a run's time).
const std::vector<tile3::Table12>& encoder_tables(const std::vector<uint64_t>& counts, int which) {
  static std::vector<tile3::Table12> kept[2];
  std::vector<tile3::Table12>& out = kept[which];
  out.resize(counts.size() / kNumBins);
  for (size_t r = 0; r < out.size(); ++r) {
    bool counted = false;
    for (int bin = 0; bin < kNumBins; ++bin) counted |= counts[r * kNumBins + static_cast<size_t>(bin)] != 0;
    if (counted || out[r].used) tile3::build_table(counts.data() + r * kNumBins, out[r]);
  }
  return out;
}

// Up to 24 tiles of one band of h rows, their nonzeros, values and terms from the input, encoded.
Batch encode(Bytes& in) {
  Batch b;
  const int64_t n_tiles = 1 + in.below(24);
  const int64_t h = 1 + in.below(40);
  // terms of a few contexts (the tables of many would be most of a run's time), some clamped to 0
  for (int64_t i = 0; i < h; ++i) b.gene_terms.push_back(static_cast<int64_t>(in.take(1) % 32) - 12);
  std::vector<int64_t> tile_n, tile_k;
  std::vector<int32_t> positions, u, contexts;  // as the encoder holds them
  for (int64_t t = 0; t < n_tiles; ++t) {
    const int64_t w = 1 + in.below(20), n = h * w, col0 = static_cast<int64_t>(b.cell_terms.size());
    for (int64_t j = 0; j < w; ++j) b.cell_terms.push_back(static_cast<int32_t>(in.take(1) % 32) - 12);
    const int density = static_cast<int>(in.take(1));
    int64_t k = 0;
    for (int64_t q = 0; q < n; ++q)
      if (static_cast<int>(in.take(1)) < density) {
        positions.push_back(static_cast<int32_t>(q));
        const int wide = static_cast<int>(in.take(1));
        u.push_back(wide > 250 ? static_cast<int32_t>(in.take(4) % static_cast<uint64_t>(kMaxCount)) : wide % 9);
        contexts.push_back(tile3::baseline_context(b.gene_terms[q / w], b.cell_terms[col0 + q % w]));
        ++k;
      }
    tile_n.push_back(n), tile_k.push_back(k);
    b.k.push_back(k), b.h.push_back(h), b.w.push_back(w), b.row.push_back(0), b.col.push_back(col0);
    b.first.push_back(col0), b.model.push_back(0), b.siren.push_back(-1), b.out_start.push_back(b.total);
    b.total += k;
  }
  for (int64_t t = 0; t < n_tiles; ++t) b.cells.push_back(static_cast<int64_t>(b.cell_terms.size()));
  b.gap_counts.assign(tile3::kGapClasses * kNumBins, 0);
  b.value_counts.assign(tile3::kContexts * kNumBins, 0);
  tile3::gap_counts(ro(tile_n), ro(tile_k), ro(positions), rw(b.gap_counts));
  for (size_t i = 0; i < u.size(); ++i) ++b.value_counts[static_cast<size_t>(contexts[i] * kNumBins + bin_of(u[i]).bin)];
  const std::vector<tile3::Table12>& gaps = encoder_tables(b.gap_counts, 0);
  const std::vector<tile3::Table12>& values = encoder_tables(b.value_counts, 1);
  std::vector<uint8_t> out(
      static_cast<size_t>(tile3::tiles_bound(ro(tile_n), ro(tile_k), static_cast<int64_t>(positions.size()), true)));
  b.length.assign(static_cast<size_t>(n_tiles), 0);
  const int64_t bytes = tile3::encode_tiles(ro(tile_n), ro(tile_k), ro(positions), ro(u), ro(contexts), ro(gaps),
                                            ro(values), true, rw(out), rw(b.length));
  b.buf.assign(out.begin(), out.begin() + bytes);
  for (int64_t t = 0, at = 0; t < n_tiles; at += b.length[t], ++t) b.offset.push_back(at);
  return b;
}

// Every path writes the same, decoding and counting; returns the tiles the lanes handed back to the
// scalar decoder.
int64_t same_on_every_path(const Batch& b, const tile3::ChunkTables& tables, const Output& scalar,
                           const Counted& counted) {
  const int64_t before = lanes3::lane_counts().handed_back;
  for (TileLanes lanes : {TileLanes::kPortable, TileLanes::kAuto})
    if (!(decode(b, tables, lanes) == scalar) || !(count(b, tables, lanes) == counted)) std::abort();
  return lanes3::lane_counts().handed_back - before;
}

bool has_wide_value(const Output& o) {
  for (int32_t v : o.values)
    if (v >= (1 << 29)) return true;
  return false;
}

void valid(Bytes& in) {
  const Batch b = encode(in);
  const tile3::ChunkTables tables(ro(b.gap_counts), ro(b.value_counts));
  const Output scalar = decode(b, tables, TileLanes::kScalar);
  for (int64_t s : scalar.status)
    if (s != kOk) std::abort();
  const Counted counted = count(b, tables, TileLanes::kScalar);
  std::vector<int64_t> decoded(b.gene_terms.size(), 0);
  for (int32_t r : scalar.rows) ++decoded[static_cast<size_t>(r)];
  for (int64_t s : counted.status)
    if (s != kOk) std::abort();
  if (counted.rows != decoded) std::abort();
  const int64_t handed_back = same_on_every_path(b, tables, scalar, counted);
  if (handed_back != 0 && !has_wide_value(scalar)) std::abort();  // only raw fields over 25 bits go back
}

void damaged(Bytes& in) {
  Batch b = encode(in);
  const uint8_t read = in.take(1);
  if (read & 1)  // a block read: the columns the input marks
    for (size_t c = 0; c < b.cell_terms.size(); ++c) b.col_mask.push_back(in.take(1) & 1);
  else if (read & 2)  // a cell read
    b.want_col = in.below(static_cast<int64_t>(b.cell_terms.size()) + 1);
  else if (read & 4)  // a gene read
    b.want_row = in.below(static_cast<int64_t>(b.gene_terms.size()) + 1);
  const int64_t n = static_cast<int64_t>(b.k.size());
  for (int i = 0, changes = static_cast<int>(1 + in.below(8)); i < changes && in.n; ++i) {
    const int64_t t = in.below(n);
    switch (in.take(1) % 10) {
      case 0:
      case 1:
      case 2:
        if (!b.buf.empty()) b.buf[static_cast<size_t>(in.below(static_cast<int64_t>(b.buf.size())))] ^= in.take(1) | 1;
        break;
      case 3:
        b.length[t] = in.below(b.length[t] + 3);
        break;
      case 4:
        b.offset[t] += in.below(5) - 2;
        break;
      case 5:
        b.k[t] += in.below(5) - 2;
        break;
      case 6:
        b.h[t] += in.below(3) - 1;
        break;
      case 7:
        b.w[t] += in.below(3) - 1;
        break;
      case 8:
        b.gene_terms[static_cast<size_t>(in.below(static_cast<int64_t>(b.gene_terms.size())))] =
            static_cast<int64_t>(in.take(2)) - 30000;
        break;
      default:
        b.out_start[t] += in.below(5) - 2;
        break;
    }
  }
  const tile3::ChunkTables tables(ro(b.gap_counts), ro(b.value_counts));
  same_on_every_path(b, tables, decode(b, tables, TileLanes::kScalar), count(b, tables, TileLanes::kScalar));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sinr::fuzz::run_one(data, size, valid, damaged);
}
