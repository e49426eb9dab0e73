// exp(v) for float v, written so that loops calling it vectorise (std::exp does not): Cody-Waite reduction by ln 2
// and the Cephes degree-5 polynomial, relative error about 1e-7 like std::exp's float. Arguments above 88 give
// exp(88); below -87 (where float exp is at most 1.6e-38) 0.
#pragma once
#include <cmath>
#include <cstdint>

namespace ect {

inline float vexp(float v) {
  const bool underflow = v < -87.f;
  v = v > 88.f ? 88.f : v;
  v = underflow ? -87.f : v;
  const float kf = std::floor(v * 1.44269504088896341f + 0.5f);
  const int k = static_cast<int>(kf);
  const float r = v - kf * 0.693359375f + kf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (k + 127) * (1 << 23);  // 2^k as a float's exponent field
  return underflow ? 0.f : p * __builtin_bit_cast(float, bits);
}

}  // namespace ect
