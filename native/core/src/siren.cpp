// SIREN evaluation, its output's context or prediction, and the tables of spec Appendix A.
#include "sinr/crc32.hpp"
#include "sinr/siren.hpp"

#include <cmath>
#include <cstring>
#include <vector>

namespace sinr {

namespace {

struct Tables {
  int16_t sine[kSineSize];
  double edges[kNumContexts];
  double fine_edges[kFineContexts];
  int32_t expm1[kExpm1Size];

  Tables() {
    const double pi = 3.141592653589793;  // binary64 nearest to pi, as numpy's np.pi
    for (int k = 0; k < kSineSize; ++k)
      sine[k] = static_cast<int16_t>(std::nearbyint(std::sin(2 * pi * k / kSineSize) * (1 << kActivationBits)));
    for (int k = 0; k < kNumContexts; ++k)
      edges[k] = std::nearbyint(std::expm1(k / 4.0) * 0x1p20) / 0x1p20;
    for (int k = 0; k < kFineContexts; ++k)  // format 3 (spec Appendix A.5): E3_2k = E_k
      fine_edges[k] = std::nearbyint(std::expm1(k / 8.0) * 0x1p20) / 0x1p20;
    for (int k = 0; k < kExpm1Size; ++k) {
      const double v = std::nearbyint(std::expm1((k + 0.5) / (1 << kLogGridBits)));
      expm1[k] = static_cast<int32_t>(v < static_cast<double>(kMaxCount) ? v : static_cast<double>(kMaxCount));
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

// Binary64 operations rounded one at a time (spec §7.4): the product goes through memory so that
// no compiler fuses it with the addition that follows (FMA contraction), whatever -ffp-contract.
inline double product(double a, double b) {
  volatile double p = a * b;
  return p;
}

constexpr uint32_t kSineCrc = 0x1AC8F72D;   // Appendix A.2, int16 little-endian
constexpr uint32_t kEdgeCrc = 0xB46601DB;   // Appendix A.1, the integers E_k as int64 little-endian
constexpr uint32_t kExpm1Crc = 0x514976D3;  // Appendix A.3, uint32 little-endian

template <typename T, int N>
uint32_t crc_le(const T (&values)[N], int bytes) {
  std::vector<uint8_t> buf(static_cast<size_t>(N) * bytes);
  for (int i = 0; i < N; ++i) {
    const uint64_t v = static_cast<uint64_t>(static_cast<int64_t>(values[i]));
    for (int b = 0; b < bytes; ++b) buf[i * bytes + b] = static_cast<uint8_t>(v >> (8 * b));
  }
  return crc32(buf.data(), static_cast<int64_t>(buf.size()));
}

}  // namespace

const int16_t* sine_table() { return tables().sine; }
const double* context_edges() { return tables().edges; }
const double* fine_context_edges() { return tables().fine_edges; }
const int32_t* expm1_table() { return tables().expm1; }

bool tables_match_spec() {
  const Tables& t = tables();
  int64_t scaled[kNumContexts];
  for (int k = 0; k < kNumContexts; ++k) scaled[k] = static_cast<int64_t>(t.edges[k] * 0x1p20);
  return crc_le(t.sine, 2) == kSineCrc && crc_le(scaled, 8) == kEdgeCrc && crc_le(t.expm1, 4) == kExpm1Crc;
}

bool siren_valid(const SirenNet& net) {
  if (net.n_layers < 0 || (net.n_layers > 0 && net.layers == nullptr) || net.n_params < 0) return false;
  int64_t size = 2;
  for (int64_t l = 0; l < net.n_layers; ++l) {
    const int64_t* layer = net.layers + l * kLayerFields;
    const int64_t n_out = layer[0], n_in = layer[1], shift = layer[4], first = layer[5];
    if (n_out < 1 || n_out > kMaxSirenWidth || n_in != size || shift < 0 || shift > kMaxSirenShift)
      return false;
    if (first < 0 || first > net.n_params || net.n_params - first < n_out * n_in + n_out) return false;
    size = n_out;
  }
  return true;
}

int64_t siren_output(const SirenNet& net, int64_t row, int64_t col, int64_t height, int64_t width, int64_t* work) {
  const int16_t* sine = sine_table();
  int64_t* current = work;
  int64_t* next = work + kMaxSirenWidth;
  // wrapping arithmetic (see siren.hpp): exact for every input the static bound admits
  current[0] = static_cast<int64_t>(2 * static_cast<uint64_t>(row) - (static_cast<uint64_t>(height) - 1));
  current[1] = static_cast<int64_t>(2 * static_cast<uint64_t>(col) - (static_cast<uint64_t>(width) - 1));
  int64_t y = 0;
  for (int64_t l = 0; l < net.n_layers; ++l) {
    const int64_t* layer = net.layers + l * kLayerFields;
    const int64_t n_out = layer[0], n_in = layer[1];
    const uint64_t w_mult = static_cast<uint64_t>(layer[2]), b_mult = static_cast<uint64_t>(layer[3]);
    const int shift = static_cast<int>(layer[4]);
    const int64_t* weights = net.params + layer[5];
    const int64_t* biases = weights + n_out * n_in;
    const bool last = l == net.n_layers - 1;
    for (int64_t o = 0; o < n_out; ++o) {
      const int64_t* w = weights + o * n_in;
      uint64_t z = 0;
      for (int64_t i = 0; i < n_in; ++i) z += static_cast<uint64_t>(w[i]) * static_cast<uint64_t>(current[i]);
      const int64_t a = static_cast<int64_t>(z * w_mult + static_cast<uint64_t>(biases[o]) * b_mult) >> shift;
      if (last)
        y = a;
      else
        next[o] = sine[a & (kSineSize - 1)];
    }
    int64_t* swap = current;
    current = next;
    next = swap;
  }
  return y;
}

bool SirenEvaluator::prepare(const SirenNet& net) {
  if (!siren_valid(net)) return false;
  net_ = net;
  work_.resize(2 * kMaxSirenWidth);
  act_.resize(kMaxSirenWidth);
  sums_.resize(kMaxSirenWidth);
  fast_ = true;
  for (int64_t l = 1; l < net.n_layers && fast_; ++l) {
    const int64_t* layer = net.layers + l * kLayerFields;
    const int64_t* w = net.params + layer[5];
    for (int64_t i = 0; i < layer[0] * layer[1]; ++i)
      if (w[i] <= -(int64_t{1} << 32) || w[i] >= (int64_t{1} << 32)) fast_ = false;
  }
  weights_.clear();
  first_weight_.assign(static_cast<size_t>(net.n_layers), 0);
  if (!fast_) return true;
  for (int64_t l = 1; l < net.n_layers; ++l) {
    const int64_t* layer = net.layers + l * kLayerFields;
    const int64_t n_out = layer[0], n_in = layer[1];
    const int64_t* w = net.params + layer[5];
    first_weight_[l] = static_cast<int64_t>(weights_.size());
    for (int64_t i = 0; i < n_in; ++i)
      for (int64_t o = 0; o < n_out; ++o) weights_.push_back(static_cast<double>(w[o * n_in + i]));
  }
  return true;
}

int64_t SirenEvaluator::output(int64_t row, int64_t col, int64_t height, int64_t width) {
  if (!fast_ || net_.n_layers < 2) return siren_output(net_, row, col, height, width, work_.data());
  const int16_t* sine = sine_table();
  // the first layer in integers (as siren_output), its activations as doubles
  const int64_t* layer = net_.layers;
  {
    const int64_t n_out = layer[0];
    const uint64_t x0 = 2 * static_cast<uint64_t>(row) - (static_cast<uint64_t>(height) - 1);
    const uint64_t x1 = 2 * static_cast<uint64_t>(col) - (static_cast<uint64_t>(width) - 1);
    const uint64_t w_mult = static_cast<uint64_t>(layer[2]), b_mult = static_cast<uint64_t>(layer[3]);
    const int shift = static_cast<int>(layer[4]);
    const int64_t* weights = net_.params + layer[5];
    const int64_t* biases = weights + 2 * n_out;
    for (int64_t o = 0; o < n_out; ++o) {
      const uint64_t z = static_cast<uint64_t>(weights[2 * o]) * x0 + static_cast<uint64_t>(weights[2 * o + 1]) * x1;
      const int64_t a = static_cast<int64_t>(z * w_mult + static_cast<uint64_t>(biases[o]) * b_mult) >> shift;
      act_[o] = sine[a & (kSineSize - 1)];
    }
  }
  double* act = act_.data();
  double* sums = sums_.data();
  int64_t y = 0;
  for (int64_t l = 1; l < net_.n_layers; ++l) {
    layer = net_.layers + l * kLayerFields;
    const int64_t n_out = layer[0], n_in = layer[1];
    const uint64_t w_mult = static_cast<uint64_t>(layer[2]), b_mult = static_cast<uint64_t>(layer[3]);
    const int shift = static_cast<int>(layer[4]);
    const int64_t* biases = net_.params + layer[5] + n_out * n_in;
    const double* w = weights_.data() + first_weight_[l];
    // exact integers: any order gives the int64 sums. Blocks of 8 outputs keep their sums in
    // registers across the inputs; the rest go through memory.
    int64_t o = 0;
    for (; o + 8 <= n_out; o += 8) {
      double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      const double* wo = w + o;
      for (int64_t i = 0; i < n_in; ++i) {
        const double x = act[i];
        const double* wi = wo + i * n_out;
        for (int j = 0; j < 8; ++j) acc[j] += wi[j] * x;
      }
      for (int j = 0; j < 8; ++j) sums[o + j] = acc[j];
    }
    for (; o < n_out; ++o) {  // the last few (the output layer's one) with four partial sums each
      double acc[4] = {0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 4 <= n_in; i += 4)
        for (int j = 0; j < 4; ++j) acc[j] += w[(i + j) * n_out + o] * act[i + j];
      for (; i < n_in; ++i) acc[0] += w[i * n_out + o] * act[i];
      sums[o] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
    const bool last = l == net_.n_layers - 1;
    for (o = 0; o < n_out; ++o) {
      const uint64_t z = static_cast<uint64_t>(static_cast<int64_t>(sums[o]));
      const int64_t a = static_cast<int64_t>(z * w_mult + static_cast<uint64_t>(biases[o]) * b_mult) >> shift;
      if (last)
        y = a;
      else
        act[o] = sine[a & (kSineSize - 1)];  // the inputs are spent: every sum is done
    }
  }
  return y;
}

namespace {

// The context of an output on a grid of n contexts: log targets scaled by log_factor (the grid's
// step in units of the output), others placed between the grid's edges.
int context_on_grid(int kind, double offset, double scale, int64_t y, double log_factor, const double* edges, int n) {
  const double fy = static_cast<double>(y);
  if (kind == kNormLog) {  // the output is log1p(mean) / scale
    const double k = std::floor(fy * (scale * log_factor));
    if (!(k > 0)) return 0;
    return k >= n - 1 ? n - 1 : static_cast<int>(k);
  }
  const double mean = product(fy * 0x1p-12, scale) + offset;
  int k = 0;
  while (k + 1 < n && edges[k + 1] <= mean) ++k;
  return k;
}

}  // namespace

int context_of_output(int kind, double offset, double scale, int64_t y) {
  return context_on_grid(kind, offset, scale, y, 0x1p-10, context_edges(), kNumContexts);
}

int fine_context_of_output(int kind, double offset, double scale, int64_t y) {
  return context_on_grid(kind, offset, scale, y, 0x1p-9, fine_context_edges(), kFineContexts);
}

int64_t prediction_of_output(int kind, double offset, double scale, int64_t y) {
  const double fy = static_cast<double>(y);
  if (kind == kNormLog) {
    const double k = std::floor(fy * (scale * 0x1p-2));
    const int64_t index = !(k > 0) ? 0 : k >= kExpm1Size - 1 ? kExpm1Size - 1 : static_cast<int64_t>(k);
    const int64_t v = expm1_table()[index];
    return v > 1 ? v : 1;
  }
  const double r = std::nearbyint(product(fy * 0x1p-12, scale) + offset);
  if (!(r > 1)) return 1;
  return r >= static_cast<double>(kMaxCount) ? kMaxCount : static_cast<int64_t>(r);
}

}  // namespace sinr
