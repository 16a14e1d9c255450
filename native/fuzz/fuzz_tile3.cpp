// libFuzzer harness of format 3.0's tile codec (tile3.hpp), built with ASan and UBSan by
// .ci/sanitize (clang):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/core/include \
//           native/fuzz/fuzz_tile3.cpp native/core/src/*.cpp -o fuzz_tile3 && ./fuzz_tile3 -runs=N
//
// The first byte picks one of two properties:
// - hostile streams: a batch of tiles whose shapes, offsets, lengths, terms, count tables and bytes
//   all come from the input goes through decode_tiles; each tile must end with a status and nothing
//   may be read or written outside the arrays (the sanitizers abort otherwise);
// - round trip: tiles whose nonzeros, values and terms come from the input are encoded by
//   encode_tiles under their own chunk's tables and must decode to exactly the same positions and
//   values, each stream given as a heap copy of exactly its bytes; prefixes of a stream must
//   decode to a status without reading outside it.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz_bytes.hpp"
#include "sinr/models.hpp"
#include "sinr/tile3.hpp"

namespace {

using namespace sinr;
using namespace sinr::tile3;
using fuzz::Bytes;
using fuzz::ro;
using fuzz::rw;


// A count section (rows x kNumBins) that knows which rows it touched.
struct Counts {
  std::vector<uint64_t> items;
  std::vector<uint8_t> touched;
  explicit Counts(int rows) : items(static_cast<size_t>(rows) * kNumBins, 0), touched(static_cast<size_t>(rows), 0) {}
  void add(int64_t row, int64_t bin, uint64_t n) {
    items[static_cast<size_t>(row * kNumBins + bin)] += n;
    touched[static_cast<size_t>(row)] = 1;
  }
};

// The tables of a section into one of two sets kept between inputs, rebuilding only the rows
// touched now or used before (any other row is unused in both): the rows are many and mostly
// unused, and rebuilding every one under the fuzzer's coverage hooks would be most of a run's time.
const std::vector<Table12>& tables(const Counts& counts, int which) {
  static std::vector<Table12> kept[2];
  std::vector<Table12>& out = kept[which];
  out.resize(counts.touched.size());
  for (size_t r = 0; r < out.size(); ++r)
    if (counts.touched[r] || out[r].used) build_table(counts.items.data() + r * kNumBins, out[r]);
  return out;
}

void hostile(Bytes& in) {
  const int64_t n_tiles = 1 + in.below(3);
  const int64_t rows = 1 + in.below(40), cols = 1 + in.below(40);
  Counts gap_counts(kGapClasses), value_counts(kContexts);
  for (int i = 0, n = static_cast<int>(in.below(48)); i < n; ++i)
    gap_counts.add(in.below(kGapClasses), in.below(kNumBins), 1 + in.below(1000));
  for (int i = 0, n = static_cast<int>(in.below(96)); i < n; ++i)
    value_counts.add(in.below(kContexts), in.below(kNumBins), 1 + in.below(1000));
  const std::vector<Table12>& gaps = tables(gap_counts, 0);
  const std::vector<Table12>& values = tables(value_counts, 1);
  const bool code_values = in.take(1) & 1;
  std::vector<int64_t> gene_terms(rows);
  std::vector<int32_t> cell_terms(cols);
  for (auto& g : gene_terms) g = static_cast<int64_t>(in.take(2)) - 32768;
  for (auto& c : cell_terms) c = static_cast<int32_t>(in.take(1)) - 60;
  std::vector<int64_t> offset(n_tiles), length(n_tiles), h(n_tiles), w(n_tiles), k(n_tiles), row(n_tiles),
      col(n_tiles), out_start(n_tiles), status(n_tiles, -1);
  const size_t header = 12 + 16 * n_tiles;
  const int64_t stream_bytes = static_cast<int64_t>(in.n > header ? in.n - header : 0);
  int64_t total = 0;
  for (int64_t t = 0; t < n_tiles; ++t) {
    h[t] = in.take(1) == 11 ? kMaxTileEntries : in.below(rows + 2);  // now and then too many entries
    w[t] = in.below(cols + 2);
    k[t] = in.below(h[t] * w[t] + 2);
    row[t] = in.below(rows + 2);  // now and then outside the terms
    col[t] = in.below(cols + 2);
    offset[t] = in.below(stream_bytes + 3) - 1;
    length[t] = in.below(stream_bytes + 3);
    out_start[t] = total - (in.take(1) == 3 ? 1 : 0);  // now and then overlapping the previous tile
    total += in.take(1) == 7 ? 0 : k[t];               // or without room
  }
  // The stream bytes: a heap copy of exactly the rest, so any overread is caught.
  const std::vector<uint8_t> buf(in.p, in.p + in.n);
  std::vector<int64_t> positions(static_cast<size_t>(total)), u(code_values ? static_cast<size_t>(total) : 0);
  const TileBatch batch{ro(offset), ro(length), ro(h), ro(w), ro(k), ro(row), ro(col), ro(out_start)};
  decode_tiles(ro(buf), batch, ro(gene_terms), ro(cell_terms), ro(gaps), ro(values), code_values,
               rw(positions), code_values ? rw(u) : Span<int64_t>{}, rw(status));
  for (int64_t t = 0; t < n_tiles; ++t)
    if (status[t] < kOk || status[t] > kUnexpectedBytes) std::abort();
}

// A chunk's counts (spec §6.4) from its tiles, as a writer takes them.
void count(int64_t n_t, const std::vector<int32_t>& positions, const std::vector<int32_t>& u,
           const std::vector<int32_t>& contexts, Counts& gaps, Counts& values) {
  const int64_t k = static_cast<int64_t>(positions.size()), m = coded_count(n_t, k);
  if (m > 0) {
    const int c = density_class(n_t, m);
    int64_t previous = -1;
    for (int64_t p = 0, i = 0; p < n_t; ++p) {
      const bool nonzero = i < k && positions[i] == p;
      i += nonzero;
      if (nonzero == (m == k)) {  // p is in the coded set
        gaps.add(c, bin_of(p - previous - 1).bin, 1);
        previous = p;
      }
    }
  }
  for (int64_t i = 0; i < k; ++i) values.add(contexts[i], bin_of(u[i]).bin, 1);
}

void round_trip(Bytes& in) {
  const int64_t n_tiles = 1 + in.below(3);
  const int64_t h = 1 + in.below(24);
  const bool code_values = in.take(1) & 1;
  std::vector<int64_t> gene_terms(h);
  for (auto& g : gene_terms) g = static_cast<int64_t>(in.take(1)) - 40;
  std::vector<int64_t> tile_n, tile_k, widths;
  std::vector<int32_t> positions, u, contexts;  // as the encoder holds them
  std::vector<int32_t> cell_terms;
  Counts gap_counts(kGapClasses), value_counts(kContexts);
  for (int64_t t = 0; t < n_tiles; ++t) {
    const int64_t w = 1 + in.below(40), n = h * w, col0 = static_cast<int64_t>(cell_terms.size());
    for (int64_t j = 0; j < w; ++j) cell_terms.push_back(static_cast<int32_t>(in.take(1)) - 40);
    const int density = static_cast<int>(in.take(1));
    std::vector<int32_t> p, v, c;
    for (int64_t q = 0; q < n; ++q)
      if (static_cast<int>(in.take(1)) < density) {
        p.push_back(static_cast<int32_t>(q));
        const int wide = static_cast<int>(in.take(1));
        v.push_back(wide > 250 ? static_cast<int32_t>(in.take(4) % static_cast<uint64_t>(kMaxCount)) : wide % 7);
        c.push_back(baseline_context(gene_terms[q / w], cell_terms[col0 + q % w]));
      }
    count(n, p, v, c, gap_counts, value_counts);
    tile_n.push_back(n), tile_k.push_back(static_cast<int64_t>(p.size())), widths.push_back(w);
    positions.insert(positions.end(), p.begin(), p.end());
    u.insert(u.end(), v.begin(), v.end());
    contexts.insert(contexts.end(), c.begin(), c.end());
  }
  const std::vector<Table12>& gaps = tables(gap_counts, 0);
  const std::vector<Table12>& values = tables(value_counts, 1);
  int64_t bound = 0;
  for (int64_t t = 0; t < n_tiles; ++t)
    bound += stream_bound(coded_count(tile_n[t], tile_k[t]) + (code_values ? tile_k[t] : 0));
  std::vector<uint8_t> out(static_cast<size_t>(bound));
  std::vector<int64_t> lengths(n_tiles);
  encode_tiles(ro(tile_n), ro(tile_k), ro(positions), ro(u), ro(contexts), ro(gaps), ro(values),
               code_values, rw(out), rw(lengths));
  int64_t offset = 0, first = 0, col0 = 0;
  for (int64_t t = 0; t < n_tiles; ++t) {
    const int64_t k = tile_k[t], w = widths[t];
    const int64_t step = lengths[t] / 16 + 1;
    for (int64_t cut = lengths[t]; cut >= 0; cut -= step) {  // the whole stream, then prefixes
      const std::vector<uint8_t> stream(out.begin() + offset, out.begin() + offset + cut);
      std::vector<int64_t> got_p(static_cast<size_t>(k)), got_u(static_cast<size_t>(k));
      TileView tile;
      tile.stream = ro(stream);
      tile.h = h;
      tile.w = w;
      tile.k = k;
      tile.gene_terms = ro(gene_terms);
      tile.cell_terms = Span<const int32_t>{cell_terms.data() + col0, w};
      const int64_t status = decode_tile(tile, ro(gaps), ro(values), code_values, rw(got_p), rw(got_u));
      if (status < kOk || status > kUnexpectedBytes) std::abort();
      if (cut < lengths[t]) continue;
      if (status != kOk) std::abort();
      for (int64_t i = 0; i < k; ++i)
        if (got_p[i] != positions[first + i] || (code_values && got_u[i] != u[first + i])) std::abort();
    }
    offset += lengths[t];
    first += k;
    col0 += w;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sinr::fuzz::run_one(data, size, round_trip, hostile);
}
