// The SIREN predictor in integer arithmetic (spec §7): the decoder's evaluation of a band's
// quantised network, its output's coding context (§7.2; format 2: §C.6) or --inr-only prediction (§7.3), and the
// tables SINE, EDGE and EXPM1 (Appendix A), computed here so that the core needs nothing else.
//
// A SIREN's layers are rows of a table of kLayerFields int64: n_out, n_in, w_mult, b_mult, shift
// and the index of its first parameter; a layer's parameters are its n_out * n_in weights
// (row-major) then its n_out biases. Layers must chain (siren_valid); evaluation then reads only
// inside the tables. The arithmetic wraps modulo 2**64 where a file that failed the static bound
// of §7.1.3 could overflow: a valid file never does, so results are exact, and a hostile one gets
// arbitrary (but defined) outputs.
#pragma once
#include <cstdint>
#include <vector>

#include "sinr/models.hpp"

namespace sinr {

constexpr int kTableBits = 12;
constexpr int kActivationBits = 12;
constexpr int kOutputBits = 12;
constexpr int kLogGridBits = 10;  // --inr-only with log: the prediction is looked up on a 2**-10 nat grid
constexpr int kMaxSirenWidth = 512;
constexpr int kMaxSirenShift = 63;  // the spec allows 0..62; anything below 64 is a defined shift
constexpr int kLayerFields = 6;
constexpr int kSineSize = 1 << kTableBits;
constexpr int kExpm1Size = 22005;  // ceil(log1p(kMaxCount) * 2**kLogGridBits) + 1
constexpr int kNormNone = 0, kNormMinmax = 1, kNormLog = 2;

// The tables of Appendix A, computed once (thread-safe) from the C library's sin and expm1: every
// exact value is far from a rounding tie, so any libm accurate to a few ulp gives these integers
// (tables_match_spec checks their CRC-32s, and the Python tests check them against the spec).
const int16_t* sine_table();       // kSineSize entries: roundeven(sin(2 pi k / 4096) * 4096)
const double* context_edges();     // kNumContexts entries: roundeven(expm1(k / 4) * 2**20) / 2**20
const int32_t* expm1_table();      // kExpm1Size entries: min(roundeven(expm1((k + 1/2) / 1024)), kMaxCount)
bool tables_match_spec();          // the three tables against the check values of Appendix A

// A SIREN: n_layers rows of its layer table, and every parameter of the table it indexes.
struct SirenNet {
  const int64_t* layers = nullptr;  // n_layers x kLayerFields
  int64_t n_layers = 0;
  const int64_t* params = nullptr;
  int64_t n_params = 0;
};

// Whether a network only reads inside its tables: 1 <= n_out <= kMaxSirenWidth, each layer's n_in
// equals the previous layer's n_out (2 for the first), 0 <= shift <= kMaxSirenShift and its
// parameters lie inside params.
bool siren_valid(const SirenNet& net);

// The network's output y (units of 2**-kOutputBits) at patch-local (row, col) of a patch of
// height x width; work holds 2 * kMaxSirenWidth int64. The net must be siren_valid.
int64_t siren_output(const SirenNet& net, int64_t row, int64_t col, int64_t height, int64_t width, int64_t* work);

// siren_output for many points of one network: prepare() checks the net once and lays out its
// later layers for a fast path. Their inputs are SINE values (|x| <= 4096), so with weights below
// 2**32 in magnitude every product and every partial sum of up to 512 of them is an integer below
// 2**53: exact in binary64 whatever the order or fusion, hence equal to the int64 sums. Those
// layers then run as vectorisable double loops (weights transposed, input-major); the first layer
// (inputs up to 2**31) and any net with larger weights take the integer path.
class SirenEvaluator {
 public:
  // False (and nothing prepared) if the net is not siren_valid.
  bool prepare(const SirenNet& net);
  // The output at patch-local (row, col) of a height x width patch, as siren_output.
  int64_t output(int64_t row, int64_t col, int64_t height, int64_t width);

 private:
  SirenNet net_;
  bool fast_ = false;
  std::vector<double> weights_;       // per layer after the first: n_in x n_out, input-major
  std::vector<int64_t> first_weight_;  // each layer's offset into weights_
  std::vector<double> act_, sums_;
  std::vector<int64_t> work_;
};

// Format 2's coding context of a network output (spec §C.6), in 0..kNumContexts-1.
int context_of_output(int kind, double offset, double scale, int64_t y);

// Format 3's context of a network output on the 1/8-nat grid (spec §7.2), in 0..kFineContexts-1.
int fine_context_of_output(int kind, double offset, double scale, int64_t y);
const double* fine_context_edges();  // EDGE3 (spec Appendix A.5), kFineContexts of them

// --inr-only: the predicted count of a nonzero, in 1..kMaxCount (spec §7.3).
int64_t prediction_of_output(int kind, double offset, double scale, int64_t y);

}  // namespace sinr
