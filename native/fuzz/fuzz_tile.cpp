// libFuzzer harness of the tile codec, built with ASan and UBSan by .ci/sanitize (clang):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/core/include \
//           native/fuzz/fuzz_tile.cpp native/core/src/*.cpp -o fuzz_tile && ./fuzz_tile -runs=N
//
// The first byte picks one of two properties:
// - hostile streams: a batch of tiles whose shapes, offsets, lengths, filters, models and bytes
//   all come from the input goes through decode_tiles, count_rows and decode_entry; each tile must
//   end with a status and nothing may be read or written outside the arrays (the sanitizers abort
//   otherwise);
// - round trip: a tile whose nonzeros, values and prediction terms come from the input is encoded
//   by encode_tiles and must decode to exactly the same triples, by batch and entry by entry.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_bytes.hpp"
#include "sinr/models.hpp"
#include "sinr/tile.hpp"

namespace {

using namespace sinr;

using fuzz::Bytes;

constexpr int64_t kProbScale = 1 << 16;

// Frequency tables as format 2 stores them (spec §C.4): every bin a row counts gets at least 1
// and the row sums to 2**16; unused rows are zero. cum: n_contexts x (kNumBins + 1).
struct Model {
  std::vector<int64_t> cum64;
  std::vector<int32_t> cum;
  std::vector<uint8_t> lut;
  std::vector<uint8_t> used;
};

Model model_from_counts(const std::vector<int64_t>& counts) {
  Model m;
  m.cum64.assign(kNumContexts * (kNumBins + 1), 0);
  m.cum.assign(m.cum64.size(), 0);
  m.lut.assign(kNumContexts * kLutSize, 0);
  m.used.assign(kNumContexts, 0);
  for (int c = 0; c < kNumContexts; ++c) {
    const int64_t* row = counts.data() + c * kNumBins;
    int64_t present = 0, total = 0, best = 0;
    for (int b = 0; b < kNumBins; ++b) {
      present += row[b] > 0;
      total += row[b];
      if (row[b] > row[best]) best = b;
    }
    if (!present) continue;
    std::vector<int64_t> freq(kNumBins, 0);
    int64_t sum = 0;
    for (int b = 0; b < kNumBins; ++b)
      if (row[b] > 0) sum += freq[b] = 1 + row[b] * (kProbScale - present) / total;
    freq[best] += kProbScale - sum;
    int64_t* cum = m.cum64.data() + c * (kNumBins + 1);
    for (int b = 0; b < kNumBins; ++b) cum[b + 1] = cum[b] + freq[b];
    for (int b = 0; b <= kNumBins; ++b) m.cum[c * (kNumBins + 1) + b] = static_cast<int32_t>(cum[b]);
    for (int s = 0; s < kLutSize; ++s) {
      int b = 0;
      while (cum[b + 1] <= s * (kProbScale / kLutSize)) ++b;
      m.lut[c * kLutSize + s] = static_cast<uint8_t>(b);
    }
    m.used[c] = 1;
  }
  return m;
}

ValueModels view(const Model& m) {
  return ValueModels{m.cum.data(), m.lut.data(), m.used.data(), 1, kNumContexts};
}

int64_t symbol_bound(int64_t k, int64_t n) {
  const int64_t m = std::min(k, n - k);
  const int64_t gap = std::max<int64_t>(1, ((n - m) * 69 + 50 * m) / std::max<int64_t>(100 * m, 1));
  return 3 * m + (n - m) / (15 * gap) + 2 + 3 * k;
}

void hostile(Bytes& in) {
  const int64_t n_tiles = 1 + in.below(3);
  const int64_t rows = 1 + in.below(48), cols = 1 + in.below(80);
  std::vector<int64_t> counts(kNumContexts * kNumBins, 0);
  for (int i = 0, n = static_cast<int>(in.below(64)); i < n; ++i)
    counts[in.below(kNumContexts) * kNumBins + in.below(kNumBins)] += 1 + in.below(1000);
  const Model model = model_from_counts(counts);
  std::vector<int64_t> gene_terms(rows), capacity(n_tiles), out_start(n_tiles), count(n_tiles), status(n_tiles);
  std::vector<int32_t> cell_terms(cols);
  for (auto& g : gene_terms) g = static_cast<int64_t>(in.take(2)) - 32768;
  for (auto& c : cell_terms) c = static_cast<int32_t>(in.take(2)) - 32768;
  std::vector<int64_t> offset(n_tiles), length(n_tiles), k(n_tiles), h(n_tiles), w(n_tiles), row(n_tiles),
      col(n_tiles), first(n_tiles), cells(n_tiles), model_id(n_tiles), siren(n_tiles);
  const int mode = static_cast<int>(in.below(3));
  const int64_t max_error = in.below(4);
  const size_t header = 8 + 16 * n_tiles;
  const int64_t stream_bytes = static_cast<int64_t>(in.n > header ? in.n - header : 0);
  int64_t total = 0;
  for (int64_t t = 0; t < n_tiles; ++t) {
    h[t] = 1 + in.below(rows);
    w[t] = 1 + in.below(cols);
    row[t] = in.below(rows + 2) - (in.take(1) == 7 ? 1 : 0);  // now and then outside the arrays
    col[t] = in.below(cols + 2);
    first[t] = in.below(4);
    cells[t] = first[t] + w[t] + in.below(3) - 1;
    k[t] = in.below(h[t] * w[t] + 2);
    offset[t] = in.below(stream_bytes + 3) - 1;
    length[t] = in.below(stream_bytes + 3);
    model_id[t] = in.take(1) == 5 ? 1 : 0;  // model 1 does not exist
    siren[t] = in.take(1) == 9 ? 0 : -1;    // nor does any SIREN
    out_start[t] = total;
    capacity[t] = std::max<int64_t>(k[t], 0);
    total += capacity[t];
  }
  ReadFilter filter;
  const uint64_t pick = in.take(1);
  if (pick & 1) filter.want_row = in.below(rows + 1);
  if (pick & 2) filter.want_col = in.below(cols + 1);
  std::vector<uint8_t> mask;
  if (pick & 4) {
    mask.resize(cols + 8);
    for (auto& b : mask) b = in.take(1) & 1;
    filter.col_mask = Span<const uint8_t>{mask.data(), static_cast<int64_t>(mask.size())};
  }
  // The stream bytes: a heap copy of exactly the rest, so any overread is caught.
  std::vector<uint8_t> buf(in.p, in.p + in.n);
  const Span<const uint8_t> stream{buf.data(), static_cast<int64_t>(buf.size())};
  auto span = [](const std::vector<int64_t>& v) { return Span<const int64_t>{v.data(), static_cast<int64_t>(v.size())}; };
  const TileDirectory dir{span(offset), span(length), span(k), span(h), span(w), span(row), span(col), span(first),
                          span(cells), span(model_id), span(siren)};
  std::vector<int32_t> out_rows(total), out_cols(total);
  std::vector<int64_t> out_values(total);
  const Triples<int32_t, int64_t> out{{out_rows.data(), total}, {out_cols.data(), total}, {out_values.data(), total}};
  const SirenSet no_sirens;
  const Span<const int64_t> gt{gene_terms.data(), rows};
  const Span<const int32_t> ct{cell_terms.data(), cols};
  decode_tiles(stream, dir, gt, ct, view(model), no_sirens, mode, max_error, filter, span(out_start), out,
               Span<int64_t>{count.data(), n_tiles}, Span<int64_t>{status.data(), n_tiles});
  for (int64_t t = 0; t < n_tiles; ++t)
    if (status[t] < kOk || status[t] > kUnexpectedBytes || count[t] < 0 || count[t] > capacity[t]) std::abort();
  std::vector<int64_t> row_counts(rows + 2, 0);
  count_rows(stream, dir, view(model), Span<int64_t>{row_counts.data(), static_cast<int64_t>(row_counts.size())},
             Span<int64_t>{status.data(), n_tiles});
  TileInfo tile{offset[0], length[0], k[0], h[0], w[0], row[0], col[0], first[0], cells[0], model_id[0], siren[0]};
  const EntryValue entry = decode_entry(stream, tile, gt, ct, view(model), no_sirens, mode, max_error,
                                        row[0] + in.below(h[0] + 1), col[0] + in.below(w[0] + 1));
  if (entry.status < kOk || entry.status > kUnexpectedBytes) std::abort();
}

void round_trip(Bytes& in) {
  const int64_t h = 1 + in.below(24), w = 1 + in.below(40), n = h * w;
  const int density = static_cast<int>(in.take(1));
  std::vector<int32_t> positions, u;  // as the encoder holds them
  for (int64_t p = 0; p < n; ++p)
    if (static_cast<int>(in.take(1)) < density) positions.push_back(static_cast<int32_t>(p));
  const int64_t k = static_cast<int64_t>(positions.size());
  for (int64_t i = 0; i < k; ++i) {
    const int wide = static_cast<int>(in.take(1));
    u.push_back(wide > 250 ? static_cast<int32_t>(in.take(4) % 2147483646u) : wide % 7);
  }
  std::vector<int64_t> gene_terms(h);
  std::vector<int32_t> cell_terms(w);
  for (auto& g : gene_terms) g = static_cast<int64_t>(in.take(1)) * 3 - 200;
  for (auto& c : cell_terms) c = static_cast<int32_t>(in.take(1)) * 2 - 200;
  std::vector<int32_t> contexts(k);
  std::vector<int64_t> counts(kNumContexts * kNumBins, 0);
  for (int64_t i = 0; i < k; ++i) {
    contexts[i] = baseline_context(gene_terms[positions[i] / w] + cell_terms[positions[i] % w]);
    counts[contexts[i] * kNumBins + bin_of(u[i]).bin] += 1;
  }
  const Model model = model_from_counts(counts);
  const int64_t bound = symbol_bound(k, n);
  std::vector<uint8_t> stream(4 + 2 * bound);
  static const std::vector<double> log2_table = [] {
    std::vector<double> table(kProbScale + 1);
    for (int64_t f = 0; f <= kProbScale; ++f) table[f] = std::log2(static_cast<double>(std::max<int64_t>(f, 1)));
    return table;
  }();
  int64_t length = 0;
  const int64_t tile_k = k, tile_n = n;
  encode_tiles(Span<const int64_t>{&tile_k, 1}, Span<const int64_t>{&tile_n, 1},
               Span<const int32_t>{positions.data(), k}, Span<const int32_t>{u.data(), k},
               Span<const int32_t>{contexts.data(), k}, Span2<const int64_t>{model.cum64.data(), kNumContexts, kNumBins + 1},
               true, bound, Span<uint8_t>{stream.data(), static_cast<int64_t>(stream.size())},
               Span<const double>{log2_table.data(), kProbScale + 1}, Span<int64_t>{&length, 1});
  std::vector<uint8_t> exact(stream.begin(), stream.begin() + length);  // exactly the tile's bytes
  const int64_t zero = 0, one_cell = w, siren = -1, model_id = 0, col0 = 0;
  const Span<const int64_t> s0{&zero, 1};
  const TileDirectory dir{s0, Span<const int64_t>{&length, 1}, Span<const int64_t>{&tile_k, 1}, Span<const int64_t>{&h, 1},
                          Span<const int64_t>{&w, 1}, s0, Span<const int64_t>{&col0, 1}, s0,
                          Span<const int64_t>{&one_cell, 1}, Span<const int64_t>{&model_id, 1},
                          Span<const int64_t>{&siren, 1}};
  std::vector<int32_t> rows(k + 1), cols(k + 1);
  std::vector<int64_t> values(k + 1);
  int64_t count = 0, status = 0;
  const Span<const uint8_t> bytes{exact.data(), length};
  const Span<const int64_t> gt{gene_terms.data(), h};
  const Span<const int32_t> ct{cell_terms.data(), w};
  decode_tiles(bytes, dir, gt, ct, view(model), SirenSet{}, kModeLossless, 0, ReadFilter{}, s0,
               Triples<int32_t, int64_t>{{rows.data(), k}, {cols.data(), k}, {values.data(), k}},
               Span<int64_t>{&count, 1}, Span<int64_t>{&status, 1});
  if (status != kOk || count != k) std::abort();
  for (int64_t i = 0; i < k; ++i)
    if (rows[i] != positions[i] / w || cols[i] != positions[i] % w || values[i] != u[i] + 1) std::abort();
  const int64_t probe = in.below(n);
  const TileInfo tile{0, length, k, h, w, 0, 0, 0, w, 0, -1};
  const EntryValue entry = decode_entry(bytes, tile, gt, ct, view(model), SirenSet{}, kModeLossless, 0,
                                        probe / w, probe % w);
  const auto hit = std::lower_bound(positions.begin(), positions.end(), probe);
  const int64_t expected = hit != positions.end() && *hit == probe ? u[hit - positions.begin()] + 1 : 0;
  if (entry.status != kOk || entry.value != expected) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sinr::fuzz::run_one(data, size, round_trip, hostile);
}
