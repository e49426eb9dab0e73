// float32 -> bfloat16 rounding for the bf16 inputs of convolutions and matrix products.
#include "bf16.h"

#include <cstring>

namespace ect {

uint16_t toBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  // NaN: keep the sign and the top mantissa bits, and force a mantissa bit so rounding cannot make it infinite
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  // round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then truncate (infinities stay infinite,
  // the largest finite floats round up to infinity as in IEEE rounding)
  const uint32_t lowestKept = (bits >> 16) & 1u;
  return static_cast<uint16_t>((bits + 0x7fffu + lowestKept) >> 16);
}

void floatToBf16(const float* x, uint16_t* out, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; i++) out[i] = toBf16(x[i]);
}

uint16_t* Bf16Scratch::convert(const float* x, int64_t n) {
  const size_t needed = static_cast<size_t>(n > 0 ? n : 1);
  if (needed > capacity_) {
    data_.reset(new uint16_t[needed]);  // no value-initialisation: every element read is written first
    capacity_ = needed;
  }
  floatToBf16(x, data_.get(), n);
  return data_.get();
}

}  // namespace ect
