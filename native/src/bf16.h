// Scratch memory for the bfloat16 copies of oneDNN primitives' inputs (native/src/onednn_ops.cc converts into it).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <memory>

namespace ect {

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
