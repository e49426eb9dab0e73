// Optimiser and EMA updates over a set of parameters in one call, in double precision like the JavaScript loops
// they replace. One call per step covers every parameter: a network has hundreds of small tensors, and a call
// (and a wake-up of the thread team) per tensor cost more than the arithmetic.
#pragma once
#include <cstdint>
#include <vector>

namespace ect {

// Adam / RAdam step coefficients (lib/train/optim.ts StepCoefficients) and hyper-parameters.
struct MomentCoefficients {
  double beta1, beta2, eps, momentumScale, sqrtVScale;
  bool adaptive;  // divide by sqrt(v) (Adam, RAdam once rectified) or not (RAdam's early SGD-with-momentum steps)
};

// One parameter's arrays for momentUpdate, each of n elements.
struct MomentSlot {
  int64_t n;
  const float *theta, *g, *m, *v;
  float *newTheta, *newM, *newV;
};

// For every slot: g' = nan_to_num(g) (NaN -> 0, +-inf -> +-infReplacement); m' = b1 m + (1 - b1) g';
// v' = b2 v + (1 - b2) g'^2; theta' = theta - momentumScale m' / (sqrt(v') sqrtVScale + eps) (adaptive) or
// theta - momentumScale m'.
void momentUpdate(const MomentCoefficients& c, double infReplacement, const std::vector<MomentSlot>& slots);

// One average's arrays for emaUpdate, each of n elements.
struct EmaSlot {
  int64_t n;
  const float *current, *target;
  float* next;
};

// For every slot: next = current + (target - current) * (1 - beta).
void emaUpdate(double beta, const std::vector<EmaSlot>& slots);

// A float32 array: its first element and its length.
struct FloatSpan {
  const float* data;
  int64_t n;
};

// The sum of the squares of every element, in double (exact squares; NaN or infinite when an element is). Each
// array is summed in eight interleaved lanes and the arrays in order, on the calling thread: the same bits whatever
// the thread count.
double sumOfSquares(const std::vector<FloatSpan>& arrays);

// The index of the first array holding a NaN or an infinity (an exponent of all ones), or -1.
int64_t firstNonFinite(const std::vector<FloatSpan>& arrays);

}  // namespace ect
