// Scratch memory for the bfloat16 copies of oneDNN primitives' inputs (native/src/onednn_ops.cc converts into it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace ect {

// float32 -> bfloat16 bits as VCVTNEPS2BF16 converts (and so oneDNN's reorders on avx512_core_bf16): round to nearest
// even; a subnormal input becomes a zero of its sign; a NaN stays a NaN, made quiet. Kernels that write a bf16 copy
// themselves (GroupNorm's bf16 output) use it, so their copy is the one a reorder of their float32 output would make.
inline uint16_t bf16FromFloat(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  // branch-free (selects), so that loops over it vectorise
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t quietNan = (bits >> 16) | 0x0040u;
  const uint32_t signedZero = (bits >> 16) & 0x8000u;
  const uint32_t out = (bits & 0x7fffffffu) > 0x7f800000u ? quietNan : (bits & 0x7f800000u) == 0 ? signedZero : rounded;
  return static_cast<uint16_t>(out);
}

// bf16FromFloat over n values; with VCVTNEPS2BF16 itself where the addon is compiled for it (-march=native on a CPU
// with avx512_bf16), 16 values per instruction.
inline void bf16FromFloats(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    const __m256bh packed = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), reinterpret_cast<const __m256i&>(packed));
  }
#endif
  for (; i < n; i++) out[i] = bf16FromFloat(in[i]);
}

// A grow-only buffer a kernel's input is converted into just before a primitive reads it. One per operand
// position, reused by every call (the JavaScript thread runs one kernel at a time), so a step allocates nothing.
class Bf16Scratch {
 public:
  // At least `bytes` bytes (grown when needed; the contents are not kept).
  void* reserve(size_t bytes);
  // Bytes held.
  size_t bytes() const { return capacity_; }

 private:
  std::unique_ptr<void, decltype(&std::free)> data_{nullptr, &std::free};  // 64-byte aligned (a cache line)
  size_t capacity_ = 0;
};

}  // namespace ect
