// SIREN evaluation, its output's context or prediction, and the tables of spec Appendix A.
#include "sinr/siren.hpp"

#include <cmath>
#include <cstring>
#include <vector>

namespace sinr {

namespace {

struct Tables {
  int16_t sine[kSineSize];
  double edges[kNumContexts];
  int32_t expm1[kExpm1Size];

  Tables() {
    const double pi = 3.141592653589793;  // binary64 nearest to pi, as numpy's np.pi
    for (int k = 0; k < kSineSize; ++k)
      sine[k] = static_cast<int16_t>(std::nearbyint(std::sin(2 * pi * k / kSineSize) * (1 << kActivationBits)));
    for (int k = 0; k < kNumContexts; ++k)
      edges[k] = std::nearbyint(std::expm1(k / 4.0) * 0x1p20) / 0x1p20;
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
const int32_t* expm1_table() { return tables().expm1; }

uint32_t crc32(const uint8_t* data, int64_t n) {
  static const struct Crc {
    uint32_t table[256];
    Crc() {
      for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
      }
    }
  } crc;
  uint32_t c = 0xFFFFFFFFu;
  for (int64_t i = 0; i < n; ++i) c = crc.table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

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

int context_of_output(int kind, double offset, double scale, int64_t y) {
  const double fy = static_cast<double>(y);
  if (kind == kNormLog) {  // the output is log1p(mean) / scale
    const double k = std::floor(fy * (scale * 0x1p-10));
    if (!(k > 0)) return 0;
    return k >= kNumContexts - 1 ? kNumContexts - 1 : static_cast<int>(k);
  }
  const double mean = product(fy * 0x1p-12, scale) + offset;
  const double* edges = context_edges();
  int k = 0;
  while (k + 1 < kNumContexts && edges[k + 1] <= mean) ++k;
  return k;
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
