// Optimiser and EMA updates: the parameters cut into equal chunks, shared by the thread team in one region.
#include "updates.h"

// The same double-precision arithmetic as the JavaScript loops, without fused multiply-adds, so both agree.
#pragma GCC optimize("fp-contract=off")

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ect {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per unit of work

struct Chunk {
  size_t slot;
  int64_t begin, end;
};

// The slots' elements as chunks of at most kChunk (a slot's tail is a shorter chunk).
template <typename Slot>
std::vector<Chunk> chunksOf(const std::vector<Slot>& slots, int64_t* total) {
  std::vector<Chunk> chunks;
  *total = 0;
  for (size_t s = 0; s < slots.size(); s++) {
    for (int64_t b = 0; b < slots[s].n; b += kChunk) chunks.push_back({s, b, std::min(b + kChunk, slots[s].n)});
    *total += slots[s].n;
  }
  return chunks;
}

// One thread for little work: waking the team costs more than it saves.
int teamFor(int64_t total) { return total < (1 << 15) ? 1 : omp_get_max_threads(); }

// body(slot, begin, end) over every chunk of the slots, the chunks shared by the thread team.
template <typename Slot, typename Body>
void forEachChunk(const std::vector<Slot>& slots, Body body) {
  int64_t total = 0;
  const std::vector<Chunk> chunks = chunksOf(slots, &total);
  const auto count = static_cast<int64_t>(chunks.size());
#pragma omp parallel for num_threads(teamFor(total)) schedule(static)
  for (int64_t k = 0; k < count; k++) body(slots[chunks[k].slot], chunks[k].begin, chunks[k].end);
}

}  // namespace

void momentUpdate(const MomentCoefficients& c, double infReplacement, const std::vector<MomentSlot>& slots) {
  forEachChunk(slots, [&](const MomentSlot& s, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      double gi = s.g[i];
      if (std::isnan(gi)) gi = 0;
      else if (std::isinf(gi)) gi = gi > 0 ? infReplacement : -infReplacement;
      const double mi = c.beta1 * s.m[i] + (1 - c.beta1) * gi;
      const double vi = c.beta2 * s.v[i] + (1 - c.beta2) * gi * gi;
      const double step = c.adaptive ? (c.momentumScale * mi) / (std::sqrt(vi) * c.sqrtVScale + c.eps) : c.momentumScale * mi;
      s.newTheta[i] = static_cast<float>(s.theta[i] - step);
      s.newM[i] = static_cast<float>(mi);
      s.newV[i] = static_cast<float>(vi);
    }
  });
}

void emaUpdate(double beta, const std::vector<EmaSlot>& slots) {
  forEachChunk(slots, [&](const EmaSlot& s, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      s.next[i] = static_cast<float>(s.current[i] + (static_cast<double>(s.target[i]) - s.current[i]) * (1 - beta));
    }
  });
}

double sumOfSquares(const std::vector<FloatSpan>& arrays) {
  constexpr int kLanes = 8;
  double total = 0;
  for (const FloatSpan& a : arrays) {
    double lanes[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= a.n; i += kLanes) {
      for (int j = 0; j < kLanes; j++) {
        const double x = a.data[i + j];
        lanes[j] += x * x;
      }
    }
    double sum = 0;
    for (int j = 0; j < kLanes; j++) sum += lanes[j];
    for (; i < a.n; i++) sum += static_cast<double>(a.data[i]) * a.data[i];
    total += sum;
  }
  return total;
}

int64_t firstNonFinite(const std::vector<FloatSpan>& arrays) {
  constexpr uint32_t kExponent = 0x7f800000u;
  for (size_t k = 0; k < arrays.size(); k++) {
    const FloatSpan& a = arrays[k];
    uint32_t found = 0;
    for (int64_t i = 0; i < a.n; i++) {
      uint32_t bits;
      std::memcpy(&bits, a.data + i, sizeof bits);
      found |= (bits & kExponent) == kExponent;
    }
    if (found) return static_cast<int64_t>(k);
  }
  return -1;
}

}  // namespace ect
