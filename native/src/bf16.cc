// Scratch memory for the bfloat16 copies of oneDNN primitives' inputs.
#include "bf16.h"

#include <algorithm>
#include <new>

namespace ect {

void* Bf16Scratch::reserve(size_t bytes) {
  const size_t needed = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;  // aligned_alloc wants a multiple of the alignment
  if (needed > capacity_) {
    data_.reset(std::aligned_alloc(64, needed));  // uninitialised: every byte read is written first
    if (!data_) throw std::bad_alloc();
    capacity_ = needed;
  }
  return data_.get();
}

}  // namespace ect
