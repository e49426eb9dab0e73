// float32 -> bfloat16 conversion for the bf16 inputs of oneDNN primitives (native/src/onednn_ops.cc).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace ect {

// Rounds n floats to bfloat16 (round to nearest, ties to even; NaN stays NaN), in parallel. bfloat16 is the upper
// half of a float32: same sign and 8-bit exponent, 7 stored mantissa bits.
void floatToBf16(const float* x, uint16_t* out, int64_t n);

// One float32 -> bfloat16 conversion, the rule floatToBf16 applies to each value.
uint16_t toBf16(float value);

// A grow-only bfloat16 buffer: kernels convert an input into it just before a primitive reads it. One per operand
// position, reused by every call (the JavaScript thread runs one kernel at a time), so a step allocates nothing.
class Bf16Scratch {
 public:
  // Converts n floats into the buffer (growing it when needed) and returns it.
  uint16_t* convert(const float* x, int64_t n);
  // Bytes held.
  size_t bytes() const { return capacity_ * sizeof(uint16_t); }

 private:
  std::unique_ptr<uint16_t[]> data_;
  size_t capacity_ = 0;
};

}  // namespace ect
