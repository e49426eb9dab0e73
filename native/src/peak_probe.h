// The multiply-add rate this CPU reaches on a kernel that does nothing else, measured where the code runs.
#pragma once

#include <string>

namespace ect {

struct FmaRate {
  double gflops = 0;      // summed over the threads, counting a multiply-add as 2 flops
  double seconds = 0;     // the slowest thread's time of the best repetition
  std::string kernel;     // the instruction measured, or why none was
  int threads = 0;
};

// Runs `threads` copies of a loop of independent multiply-adds (enough chains to cover the FMA latency on
// every unit) for about `seconds` each, all at once, and returns the best of `repeats` rates. precision is
// "fp32" (VFMADD231PS on the widest vectors the CPU has) or "bf16" (VDPBF16PS, avx512_bf16 only).
FmaRate measureFmaRate(const std::string& precision, int threads, double seconds, int repeats);

}  // namespace ect
