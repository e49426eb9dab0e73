// Fused GroupNorm (+ shift before, + SiLU and a dropout mask after) forward and backward; one sample per OpenMP task.
//
// Per sample, with center_c = mean_g(c) - shift_c and rstd_g = 1 / sqrt(var_g + eps):
//   n = (x - center_c) * rstd_g,  z = gamma_c * n + beta_c = x * a_c + b_c,  y = act(z) * mask.
// Backward, with dz = dy * mask * act'(z), N = pixels * channels-per-group and sums over a sample's group:
//   dbeta_c += sum_p dz,  dgamma_c += sum_p dz * n,
//   dx = rstd_g * (gamma_c * dz - m1_g - n * m2_g),  m1_g = sum(gamma_c dz) / N,  m2_g = sum(gamma_c dz n) / N.
#include "group_norm.h"
#include "vexp.h"
#include "bf16.h"

#include <omp.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <stdexcept>
#include <vector>

namespace ect {
namespace {

inline float sigmoid(float z) { return 1.f / (1.f + vexp(-z)); }

void checkShape(const GroupNormShape& s) {
  if (s.batch < 0 || s.pixels < 0 || s.channels <= 0 || s.groups <= 0 || s.channels % s.groups != 0) {
    throw std::invalid_argument("groupNorm: channels must split into equal groups (channels " +
                                std::to_string(s.channels) + ", groups " + std::to_string(s.groups) + ")");
  }
}

// One sample's normalisation: per channel, the centre (group mean minus shift), rstd, and z = x * a + b.
struct SampleNorm {
  std::vector<float> center, rstd, a, b;
  std::vector<double> sum;
  explicit SampleNorm(int64_t channels) : center(channels), rstd(channels), a(channels), b(channels), sum(channels) {}

  // The sample's statistics as the forward pass keeps them for backward: center, then rstd, per channel.
  void save(float* stats) const {
    std::copy(center.begin(), center.end(), stats);
    std::copy(rstd.begin(), rstd.end(), stats + center.size());
  }

  // The state compute() leaves, from saved statistics: the same center and rstd, a and b by the same arithmetic.
  void load(const float* stats, const float* gamma, const float* beta) {
    const size_t C = center.size();
    for (size_t c = 0; c < C; c++) {
      center[c] = stats[c];
      rstd[c] = stats[C + c];
      a[c] = rstd[c] * gamma[c];
      b[c] = beta[c] - center[c] * a[c];
    }
  }

  // CT: the channel count when known at compile time (then the per-pixel loops over channels have a fixed trip
  // count and keep their accumulators in registers), 0 for any.
  template <int CT>
  void compute(const GroupNormShape& s, const float* x, const float* shift, const float* gamma, const float* beta,
               float eps) {
    const int64_t C = CT ? CT : s.channels, P = s.pixels, per = C / s.groups;
    const double count = static_cast<double>(P) * static_cast<double>(per);
    // pass 1: group means of u = x + shift
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int64_t p = 0; p < P; p++) {
      const float* row = x + p * C;
      for (int64_t c = 0; c < C; c++) sum[c] += row[c];
    }
    for (int64_t g = 0; g < s.groups; g++) {
      double total = 0;
      for (int64_t c = g * per; c < (g + 1) * per; c++) total += sum[c] + (shift ? P * static_cast<double>(shift[c]) : 0.0);
      const double mean = count > 0 ? total / count : 0.0;
      for (int64_t c = g * per; c < (g + 1) * per; c++) center[c] = static_cast<float>(mean - (shift ? shift[c] : 0.0));
    }
    // pass 2: group variances around those means (two passes, as tf.moments computes them)
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int64_t p = 0; p < P; p++) {
      const float* row = x + p * C;
      for (int64_t c = 0; c < C; c++) {
        const float d = row[c] - center[c];
        sum[c] += d * d;
      }
    }
    for (int64_t g = 0; g < s.groups; g++) {
      double total = 0;
      for (int64_t c = g * per; c < (g + 1) * per; c++) total += sum[c];
      const float r = static_cast<float>(1.0 / std::sqrt((count > 0 ? total / count : 0.0) + eps));
      for (int64_t c = g * per; c < (g + 1) * per; c++) {
        rstd[c] = r;
        a[c] = r * gamma[c];
        b[c] = beta[c] - center[c] * a[c];
      }
    }
  }
};

// dz = dy * mask * act'(z) written to dz, with per-channel sums of dz and dz * n (a separate loop per
// activation and mask so that the compiler vectorises each).
template <int CT, bool Silu, bool Masked>
void backwardPassA(int64_t P, int64_t channels, const float* x, const float* dy, const float* mask, const float* a,
                   const float* b, const float* center, const float* rstd, float* __restrict__ dz,
                   double* __restrict__ sumDz, double* __restrict__ sumDzN) {
  const int64_t C = CT ? CT : channels;
  for (int64_t p = 0; p < P; p++) {
    const float* row = x + p * C;
    const float* grad = dy + p * C;
    const float* keep = Masked ? mask + p * C : nullptr;
    float* out = dz + p * C;
    for (int64_t c = 0; c < C; c++) {
      float d = Masked ? grad[c] * keep[c] : grad[c];
      if (Silu) {
        const float z = row[c] * a[c] + b[c];
        const float sg = sigmoid(z);
        d *= sg * (1.f + z * (1.f - sg));
      }
      out[c] = d;
      sumDz[c] += d;
      sumDzN[c] += d * ((row[c] - center[c]) * rstd[c]);
    }
  }
}

int teamFor(const GroupNormShape& s) {
  // one thread for small tensors: waking the team costs more than the work
  return s.batch * s.pixels * s.channels < (1 << 15) ? 1 : omp_get_max_threads();
}

// Calls body(std::integral_constant<int, C>) for the UNets' common channel counts, else with 0 (any count).
template <typename Body>
void withChannels(int64_t channels, Body body) {
  switch (channels) {
    case 16: return body(std::integral_constant<int, 16>());
    case 32: return body(std::integral_constant<int, 32>());
    case 48: return body(std::integral_constant<int, 48>());
    case 64: return body(std::integral_constant<int, 64>());
    case 96: return body(std::integral_constant<int, 96>());
    case 128: return body(std::integral_constant<int, 128>());
    case 192: return body(std::integral_constant<int, 192>());
    case 256: return body(std::integral_constant<int, 256>());
    default: return body(std::integral_constant<int, 0>());
  }
}

// One pixel row of the forward pass: out = act(x * a + b) * mask.
template <int CT>
inline void forwardRow(int64_t channels, const float* row, const float* keep, const float* a, const float* b, bool silu,
                       float* __restrict__ out) {
  const int64_t C = CT ? CT : channels;
  if (silu) {
    for (int64_t c = 0; c < C; c++) {
      const float z = row[c] * a[c] + b[c];
      out[c] = z * sigmoid(z);
    }
  } else {
    for (int64_t c = 0; c < C; c++) out[c] = row[c] * a[c] + b[c];
  }
  if (keep) {
    for (int64_t c = 0; c < C; c++) out[c] *= keep[c];
  }
}

// One sample of the forward pass: y = act(x * a + b) * mask, as float32 (ys) or as bfloat16 (bs, through a row of
// float32 scratch: the same float32 values, then rounded).
template <int CT>
void forwardSample(const GroupNormShape& s, SampleNorm& norm, const float* xs, const float* shift, const float* ms,
                   const float* gamma, const float* beta, float eps, bool silu, float* ys, float* stats,
                   uint16_t* bs, float* scratch) {
  const int64_t C = CT ? CT : s.channels, P = s.pixels;
  norm.compute<CT>(s, xs, shift, gamma, beta, eps);
  if (stats) norm.save(stats);
  const float* a = norm.a.data();
  const float* b = norm.b.data();
  for (int64_t p = 0; p < P; p++) {
    const float* keep = ms ? ms + p * C : nullptr;
    if (!bs) {
      forwardRow<CT>(C, xs + p * C, keep, a, b, silu, ys + p * C);
      continue;
    }
    forwardRow<CT>(C, xs + p * C, keep, a, b, silu, scratch);
    bf16FromFloats(scratch, bs + p * C, C);
  }
}

// The forward pass over the batch, CT as in SampleNorm::compute.
template <int CT>
void forwardImpl(const GroupNormShape& s, const float* x, const float* shift, const float* mask, const float* gamma,
                 const float* beta, float eps, bool silu, float* y, float* stats, uint16_t* yBf16) {
  const int64_t C = s.channels, P = s.pixels;
#pragma omp parallel num_threads(teamFor(s))
  {
    SampleNorm norm(C);
    std::vector<float> scratch(yBf16 ? C : 0);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < s.batch; n++) {
      forwardSample<CT>(s, norm, x + n * P * C, shift ? shift + n * C : nullptr, mask ? mask + n * P * C : nullptr,
                        gamma, beta, eps, silu, y ? y + n * P * C : nullptr, stats ? stats + n * 2 * C : nullptr,
                        yBf16 ? yBf16 + n * P * C : nullptr, scratch.data());
    }
  }
}

// The backward pass over the batch, CT as in SampleNorm::compute (only the statistics use it: passes A and B
// measured slower with a fixed channel count).
template <int CT>
void backwardImpl(const GroupNormShape& s, const float* dy, const float* x, const float* shift, const float* mask,
                  const float* gamma, const float* beta, float eps, bool silu, float* dx, float* dgamma, float* dbeta,
                  float* dshift, const float* stats) {
  const int64_t C = s.channels, P = s.pixels, per = C / s.groups;
  const double count = static_cast<double>(P) * static_cast<double>(per);
  // per-sample sums of dz and dz * n, reduced over samples in order afterwards (same result on any thread count)
  std::vector<double> sampleDz(static_cast<size_t>(s.batch * C)), sampleDzN(static_cast<size_t>(s.batch * C));
#pragma omp parallel num_threads(teamFor(s))
  {
    SampleNorm norm(C);
    std::vector<double> sumDz(C), sumDzN(C);
    std::vector<float> m1(C), m2(C), dshiftRow(C);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < s.batch; n++) {
      const float* xs = x + n * P * C;
      const float* dys = dy + n * P * C;
      float* dxs = dx + n * P * C;
      // the forward pass's statistics when it kept them (two passes over x fewer), else computed again
      if (stats) norm.load(stats + n * 2 * C, gamma, beta);
      else norm.compute<CT>(s, xs, shift ? shift + n * C : nullptr, gamma, beta, eps);
      const float* a = norm.a.data();
      const float* b = norm.b.data();
      const float* center = norm.center.data();
      const float* rstd = norm.rstd.data();
      std::fill(sumDz.begin(), sumDz.end(), 0.0);
      std::fill(sumDzN.begin(), sumDzN.end(), 0.0);
      // pass A: dz (kept in dx for pass B) and its per-channel sums
      const float* ms = mask ? mask + n * P * C : nullptr;
      double* sums[2] = {sumDz.data(), sumDzN.data()};
      if (silu && ms) backwardPassA<0, true, true>(P, C, xs, dys, ms, a, b, center, rstd, dxs, sums[0], sums[1]);
      else if (silu) backwardPassA<0, true, false>(P, C, xs, dys, ms, a, b, center, rstd, dxs, sums[0], sums[1]);
      else if (ms) backwardPassA<0, false, true>(P, C, xs, dys, ms, a, b, center, rstd, dxs, sums[0], sums[1]);
      else backwardPassA<0, false, false>(P, C, xs, dys, ms, a, b, center, rstd, dxs, sums[0], sums[1]);
      for (int64_t c = 0; c < C; c++) {
        sampleDz[n * C + c] = sumDz[c];
        sampleDzN[n * C + c] = sumDzN[c];
      }
      for (int64_t g = 0; g < s.groups; g++) {
        double t1 = 0, t2 = 0;
        for (int64_t c = g * per; c < (g + 1) * per; c++) {
          t1 += gamma[c] * sumDz[c];
          t2 += gamma[c] * sumDzN[c];
        }
        for (int64_t c = g * per; c < (g + 1) * per; c++) {
          m1[c] = static_cast<float>(t1 / count);
          m2[c] = static_cast<float>(t2 / count);
        }
      }
      // pass B: dx from dz
      std::fill(dshiftRow.begin(), dshiftRow.end(), 0.f);
      for (int64_t p = 0; p < P; p++) {
        const float* row = xs + p * C;
        float* d = dxs + p * C;
        for (int64_t c = 0; c < C; c++) {
          const float nrm = (row[c] - center[c]) * rstd[c];
          d[c] = rstd[c] * (gamma[c] * d[c] - m1[c] - nrm * m2[c]);
          dshiftRow[c] += d[c];
        }
      }
      if (dshift) std::memcpy(dshift + n * C, dshiftRow.data(), sizeof(float) * C);
    }
  }
  for (int64_t c = 0; c < C; c++) {
    double g = 0, bsum = 0;
    for (int64_t n = 0; n < s.batch; n++) {
      g += sampleDzN[n * C + c];
      bsum += sampleDz[n * C + c];
    }
    dgamma[c] = static_cast<float>(g);
    dbeta[c] = static_cast<float>(bsum);
  }
}

}  // namespace

void groupNormForward(const GroupNormShape& s, const float* x, const float* shift, const float* mask,
                      const float* gamma, const float* beta, float eps, bool silu, float* y, float* stats,
                      uint16_t* yBf16) {
  checkShape(s);
  if ((y == nullptr) == (yBf16 == nullptr)) throw std::invalid_argument("groupNorm: write y as float32 or as bf16, not both or neither");
  withChannels(s.channels, [&](auto ct) {
    forwardImpl<decltype(ct)::value>(s, x, shift, mask, gamma, beta, eps, silu, y, stats, yBf16);
  });
}

void groupNormBackward(const GroupNormShape& s, const float* dy, const float* x, const float* shift,
                       const float* mask, const float* gamma, const float* beta, float eps, bool silu, float* dx,
                       float* dgamma, float* dbeta, float* dshift, const float* stats) {
  checkShape(s);
  withChannels(s.channels, [&](auto ct) {
    backwardImpl<decltype(ct)::value>(s, dy, x, shift, mask, gamma, beta, eps, silu, dx, dgamma, dbeta, dshift, stats);
  });
}

}  // namespace ect
