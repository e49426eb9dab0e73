// A measured peak: independent multiply-add chains in registers, no memory traffic, timed on every thread at
// once. The computed peak (lib/machine/peak.ts) multiplies the datapath by a clock the CPU reports; a VM often
// reports the host's nominal clock while the core boosts above it, so the computed figure can be beaten by a
// real kernel. The rate measured here is what the cores actually sustain while they run vector code, which is
// the honest denominator for "fraction of peak".
#include "peak_probe.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace ect {
namespace {

// 16 independent accumulators: FMA latency (4 cycles on Zen 4/5 and Skylake onwards, 5-6 for VDPBF16PS) times
// 2 issue ports needs at most 12; more chains cost nothing since every accumulator stays in a register.
constexpr int kChains = 16;
constexpr int kChainsAvx2 = 12;  // 16 ymm registers: 12 accumulators and 2 operands

volatile float sink;  // keeps the accumulators live so the compiler cannot drop the loop

__attribute__((target("avx512f"))) void keep(__m512 total) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, total);
  float s = 0;
  for (float x : lanes) s += x;
  sink = s;
}

__attribute__((target("avx512f"))) double fp32Avx512(int64_t iterations) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; c++) acc[c] = _mm512_set1_ps(0.001f * c);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; i++) {
    for (int c = 0; c < kChains; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 total = acc[0];
  for (int c = 1; c < kChains; c++) total = _mm512_add_ps(total, acc[c]);
  keep(total);
  return static_cast<double>(iterations) * kChains * 16 * 2;
}

__attribute__((target("avx2,fma"))) double fp32Avx2(int64_t iterations) {
  __m256 acc[kChainsAvx2];
  for (int c = 0; c < kChainsAvx2; c++) acc[c] = _mm256_set1_ps(0.001f * c);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; i++) {
    for (int c = 0; c < kChainsAvx2; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  __m256 total = acc[0];
  for (int c = 1; c < kChainsAvx2; c++) total = _mm256_add_ps(total, acc[c]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, total);
  float s = 0;
  for (float x : lanes) s += x;
  sink = s;
  return static_cast<double>(iterations) * kChainsAvx2 * 8 * 2;
}

__attribute__((target("avx512f,avx512bf16"))) double bf16Avx512(int64_t iterations) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; c++) acc[c] = _mm512_set1_ps(0.001f * c);
  // Small operands keep the accumulators finite over any run length.
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
  for (int64_t i = 0; i < iterations; i++) {
    for (int c = 0; c < kChains; c++) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  }
  __m512 total = acc[0];
  for (int c = 1; c < kChains; c++) total = _mm512_add_ps(total, acc[c]);
  keep(total);
  // Each fp32 lane adds two bf16 products per instruction: 16 lanes x 2 products x 2 flops.
  return static_cast<double>(iterations) * kChains * 16 * 2 * 2;
}

using Kernel = double (*)(int64_t);

Kernel pick(const std::string& precision, std::string* name) {
  __builtin_cpu_init();
  if (precision == "bf16") {
    if (__builtin_cpu_supports("avx512bf16")) { *name = "VDPBF16PS zmm (avx512_bf16)"; return bf16Avx512; }
    *name = "none: this CPU has no avx512_bf16";
    return nullptr;
  }
  if (__builtin_cpu_supports("avx512f")) { *name = "VFMADD231PS zmm (avx512f)"; return fp32Avx512; }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) { *name = "VFMADD231PS ymm (avx2+fma)"; return fp32Avx2; }
  *name = "none: this CPU has neither avx512f nor avx2 with fma";
  return nullptr;
}

// Every thread runs the kernel at the same time; the rate is the total work over the slowest thread's time.
double timedRun(Kernel kernel, int threads, int64_t iterations, double* flops) {
  std::vector<double> seconds(threads, 0.0), work(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
#pragma omp barrier
    const auto start = std::chrono::steady_clock::now();
    work[t] = kernel(iterations);
    seconds[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  *flops = 0;
  for (double w : work) *flops += w;
  return *std::max_element(seconds.begin(), seconds.end());
}

}  // namespace

FmaRate measureFmaRate(const std::string& precision, int threads, double seconds, int repeats) {
  FmaRate result;
  result.threads = threads;
  const Kernel kernel = pick(precision, &result.kernel);
  if (!kernel || threads < 1) return result;
  // Calibrate the iteration count on a short run (which also wakes the vector units), then time the repeats.
  int64_t iterations = 1 << 16;
  double flops = 0;
  for (;;) {
    const double t = timedRun(kernel, threads, iterations, &flops);
    if (t > 0.02 || iterations > (int64_t{1} << 40)) {
      iterations = std::max<int64_t>(1, static_cast<int64_t>(iterations * seconds / t));
      break;
    }
    iterations *= 4;
  }
  for (int r = 0; r < std::max(1, repeats); r++) {
    const double t = timedRun(kernel, threads, iterations, &flops);
    const double gflops = flops / t / 1e9;
    if (gflops > result.gflops) { result.gflops = gflops; result.seconds = t; }
  }
  return result;
}

}  // namespace ect
