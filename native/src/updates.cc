// Optimiser and EMA updates: one pass over each parameter, threaded for large ones.
#include "updates.h"

// The same double-precision arithmetic as the JavaScript loops, without fused multiply-adds, so both agree.
#pragma GCC optimize("fp-contract=off")

#include <omp.h>

#include <cmath>

namespace ect {
namespace {

int teamFor(int64_t n) { return n < (1 << 15) ? 1 : omp_get_max_threads(); }

}  // namespace

void momentUpdate(const MomentCoefficients& c, double infReplacement, int64_t n, const float* theta, const float* g,
                  const float* m, const float* v, float* newTheta, float* newM, float* newV) {
#pragma omp parallel for num_threads(teamFor(n)) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    double gi = g[i];
    if (std::isnan(gi)) gi = 0;
    else if (std::isinf(gi)) gi = gi > 0 ? infReplacement : -infReplacement;
    const double mi = c.beta1 * m[i] + (1 - c.beta1) * gi;
    const double vi = c.beta2 * v[i] + (1 - c.beta2) * gi * gi;
    const double step = c.adaptive ? (c.momentumScale * mi) / (std::sqrt(vi) * c.sqrtVScale + c.eps) : c.momentumScale * mi;
    newTheta[i] = static_cast<float>(theta[i] - step);
    newM[i] = static_cast<float>(mi);
    newV[i] = static_cast<float>(vi);
  }
}

void emaUpdate(double beta, int64_t n, const float* current, const float* target, float* next) {
#pragma omp parallel for num_threads(teamFor(n)) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    next[i] = static_cast<float>(current[i] + (static_cast<double>(target[i]) - current[i]) * (1 - beta));
  }
}

}  // namespace ect
