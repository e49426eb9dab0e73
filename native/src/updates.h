// Optimiser and EMA updates over whole parameters, in double precision like the JavaScript loops they replace.
#pragma once
#include <cstdint>

namespace ect {

// Adam / RAdam step coefficients (lib/train/optim.ts StepCoefficients) and hyper-parameters.
struct MomentCoefficients {
  double beta1, beta2, eps, momentumScale, sqrtVScale;
  bool adaptive;  // divide by sqrt(v) (Adam, RAdam once rectified) or not (RAdam's early SGD-with-momentum steps)
};

// g' = nan_to_num(g) (NaN -> 0, +-inf -> +-infReplacement); m' = b1 m + (1 - b1) g'; v' = b2 v + (1 - b2) g'^2;
// theta' = theta - momentumScale m' / (sqrt(v') sqrtVScale + eps) (adaptive) or theta - momentumScale m'.
void momentUpdate(const MomentCoefficients& c, double infReplacement, int64_t n, const float* theta, const float* g,
                  const float* m, const float* v, float* newTheta, float* newM, float* newV);

// next = current + (target - current) * (1 - beta)
void emaUpdate(double beta, int64_t n, const float* current, const float* target, float* next);

}  // namespace ect
