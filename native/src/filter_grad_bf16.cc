// The 3x3 and 1x1 filter gradients from bf16 inputs (filter_grad_bf16.h).
//
// VDPBF16PS multiplies pairs of bf16 values and adds both products to one float32 lane. The pairs here are the two
// images of a pair (n, n + 1) at one pixel and channel, so every tap's shifted view of x keeps its pairs aligned:
// per image pair, x and dy are first interleaved into [pixel][channel][2] (a 32-bit word per channel), then for each
// tap and block of input channels a CIB x (16 * COZ) tile of the gradient stays in CIB * COZ = 16 zmm accumulators
// while the kernel runs over every output pixel whose input pixel lies inside the image: the broadcast x pair of
// each input channel times 16 output channels' dy pairs per register. The tile is loaded from and stored to the
// thread's partial gradient once per image pair, tap and tile.
#include "filter_grad_bf16.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
#define ECT_BF16_FILTER_GRADIENT 1
#include <immintrin.h>
#endif

namespace ect {

bool bf16FilterGradientApplies(const ConvGeometry& g) {
  const int64_t k = g.filterHeight, pad = (k - 1) / 2;
  const bool same = (k == 1 || k == 3) && g.filterWidth == k && g.strideHeight == 1 && g.strideWidth == 1 &&
                    g.dilationHeight == 1 && g.dilationWidth == 1 && g.padTop == pad && g.padLeft == pad &&
                    g.padBottom == pad && g.padRight == pad && g.outHeight == g.inHeight && g.outWidth == g.inWidth;
  const bool channels = g.inChannels % 16 == 0 && (g.outChannels == 16 || g.outChannels == 32 || g.outChannels % 64 == 0);
  return same && channels && g.batch >= 2 && g.batch % 2 == 0 && g.inHeight > 0 && g.inWidth > 0 && g.outChannels > 0;
}

#ifdef ECT_BF16_FILTER_GRADIENT

bool bf16FilterGradientCompiled() { return true; }

namespace {

// out[2i] = a[i], out[2i + 1] = b[i] for i < n: 32 values of each at a time, the rest one by one.
void interleave(const uint16_t* a, const uint16_t* b, int64_t n, uint16_t* out) {
  alignas(64) static const uint16_t kLow[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t kHigh[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                 24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i low = _mm512_load_si512(kLow), high = _mm512_load_si512(kHigh);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512i va = _mm512_loadu_si512(a + i), vb = _mm512_loadu_si512(b + i);
    _mm512_storeu_si512(out + 2 * i, _mm512_permutex2var_epi16(va, low, vb));
    _mm512_storeu_si512(out + 2 * i + 32, _mm512_permutex2var_epi16(va, high, vb));
  }
  for (; i < n; i++) {
    out[2 * i] = a[i];
    out[2 * i + 1] = b[i];
  }
}

struct Plane {
  int64_t height, width, inChannels, outChannels, taps;  // taps: the filter's height and width (1 or 3)
};

// One tap (kh, kw) and one CIB x (16 * COZ) tile: tile[i][o] += sum over output pixels (y, x) whose input pixel
// (y + kh - pad, x + kw - pad) is inside, of xPairs[input pixel][i] . dyPairs[(y, x)][o] (dot products of pairs).
// xPairs points at the tile's first input channel, dyPairs at its first output channel; tile rows are outChannels apart.
template <int CIB, int COZ>
void tapTile(const Plane& p, int kh, int kw, const uint16_t* xPairs, const uint16_t* dyPairs, float* tile) {
  __m512 acc[CIB][COZ];
  for (int i = 0; i < CIB; i++)
    for (int j = 0; j < COZ; j++) acc[i][j] = _mm512_loadu_ps(tile + i * p.outChannels + 16 * j);
  const int64_t xStep = 2 * p.inChannels, dyStep = 2 * p.outChannels;
  const int64_t pad = (p.taps - 1) / 2, shiftY = kh - pad, shiftX = kw - pad;  // input pixel = output pixel + shift
  const int64_t y0 = std::max<int64_t>(0, -shiftY), y1 = std::min(p.height, p.height - shiftY);
  const int64_t x0 = std::max<int64_t>(0, -shiftX), x1 = std::min(p.width, p.width - shiftX);
  for (int64_t y = y0; y < y1; y++) {
    const uint16_t* xs = xPairs + ((y + shiftY) * p.width + x0 + shiftX) * xStep;
    const uint16_t* ds = dyPairs + (y * p.width + x0) * dyStep;
    for (int64_t x = x0; x < x1; x++, xs += xStep, ds += dyStep) {
      __m512bh d[COZ];
      for (int j = 0; j < COZ; j++) d[j] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(ds + 32 * j));
      for (int i = 0; i < CIB; i++) {
        int32_t pair;
        std::memcpy(&pair, xs + 2 * i, sizeof pair);
        const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
        for (int j = 0; j < COZ; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], a, d[j]);
      }
    }
  }
  for (int i = 0; i < CIB; i++)
    for (int j = 0; j < COZ; j++) _mm512_storeu_ps(tile + i * p.outChannels + 16 * j, acc[i][j]);
}

// Every tap and tile of one image pair into grad [taps][taps][inChannels][outChannels].
template <int CIB, int COZ>
void pairGradient(const Plane& p, const uint16_t* xPairs, const uint16_t* dyPairs, float* grad) {
  for (int kh = 0; kh < p.taps; kh++) {
    for (int kw = 0; kw < p.taps; kw++) {
      float* tap = grad + (kh * p.taps + kw) * p.inChannels * p.outChannels;
      for (int64_t ci = 0; ci < p.inChannels; ci += CIB) {
        for (int64_t co = 0; co < p.outChannels; co += 16 * COZ) {
          tapTile<CIB, COZ>(p, kh, kw, xPairs + 2 * ci, dyPairs + 2 * co, tap + ci * p.outChannels + co);
        }
      }
    }
  }
}

void pairGradientFor(const Plane& p, const uint16_t* xPairs, const uint16_t* dyPairs, float* grad) {
  if (p.outChannels == 16) pairGradient<16, 1>(p, xPairs, dyPairs, grad);
  else if (p.outChannels == 32) pairGradient<8, 2>(p, xPairs, dyPairs, grad);
  else pairGradient<4, 4>(p, xPairs, dyPairs, grad);  // a multiple of 64, tiles of 64 output channels
}

// Adds the per-channel sums of one image's dy [pixels][channels] (bf16) to bias: float32 within the image, float64 across.
void addChannelSums(const uint16_t* dy, int64_t pixels, int64_t channels, float* scratch, double* bias) {
  std::fill(scratch, scratch + channels, 0.0f);
  for (int64_t q = 0; q < pixels; q++) {
    const uint16_t* row = dy + q * channels;
    for (int64_t c = 0; c < channels; c++) {
      const uint32_t bits = static_cast<uint32_t>(row[c]) << 16;
      float value;
      std::memcpy(&value, &bits, sizeof value);
      scratch[c] += value;
    }
  }
  for (int64_t c = 0; c < channels; c++) bias[c] += scratch[c];
}

}  // namespace

void bf16FilterGradient(const ConvGeometry& g, const uint16_t* x, const uint16_t* dy, float* dfilter, float* dbias) {
  const Plane p{g.inHeight, g.inWidth, g.inChannels, g.outChannels, g.filterHeight};
  const int64_t pixels = p.height * p.width, xImage = pixels * p.inChannels, dyImage = pixels * p.outChannels;
  const int64_t pairs = g.batch / 2, gradSize = p.taps * p.taps * p.inChannels * p.outChannels;
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), pairs)));
  std::vector<std::vector<float>> partial(parts);  // part 0 writes dfilter itself
  std::vector<std::vector<double>> partialBias(parts);
  std::vector<std::exception_ptr> failed(parts);  // an exception must not leave an OpenMP region
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int part = 0; part < parts; part++) {
    try {
      float* grad = dfilter;
      if (part > 0) {
        partial[part].assign(gradSize, 0.0f);
        grad = partial[part].data();
      } else {
        std::fill(dfilter, dfilter + gradSize, 0.0f);
      }
      if (dbias) partialBias[part].assign(p.outChannels, 0.0);
      // the interleaved pair, kept per thread between calls (a few hundred kB on the UNets' shapes)
      thread_local std::vector<uint16_t> xPairs, dyPairs;
      thread_local std::vector<float> sums;
      if (xPairs.size() < static_cast<size_t>(2 * xImage)) xPairs.resize(2 * xImage);
      if (dyPairs.size() < static_cast<size_t>(2 * dyImage)) dyPairs.resize(2 * dyImage);
      if (sums.size() < static_cast<size_t>(p.outChannels)) sums.resize(p.outChannels);
      const int64_t first = pairs * part / parts, last = pairs * (part + 1) / parts;
      for (int64_t pair = first; pair < last; pair++) {
        const uint16_t* x0 = x + 2 * pair * xImage;
        const uint16_t* dy0 = dy + 2 * pair * dyImage;
        interleave(x0, x0 + xImage, xImage, xPairs.data());
        interleave(dy0, dy0 + dyImage, dyImage, dyPairs.data());
        pairGradientFor(p, xPairs.data(), dyPairs.data(), grad);
        if (dbias) {
          addChannelSums(dy0, pixels, p.outChannels, sums.data(), partialBias[part].data());
          addChannelSums(dy0 + dyImage, pixels, p.outChannels, sums.data(), partialBias[part].data());
        }
      }
    } catch (...) {
      failed[part] = std::current_exception();
    }
  }
  for (const auto& error : failed) {
    if (error) std::rethrow_exception(error);
  }
  for (int part = 1; part < parts; part++) {
    for (int64_t k = 0; k < gradSize; k++) dfilter[k] += partial[part][k];
  }
  if (dbias) {
    for (int64_t c = 0; c < p.outChannels; c++) {
      double sum = 0.0;
      for (int part = 0; part < parts; part++) sum += partialBias[part][c];
      dbias[c] = static_cast<float>(sum);
    }
  }
}

#else

bool bf16FilterGradientCompiled() { return false; }

void bf16FilterGradient(const ConvGeometry&, const uint16_t*, const uint16_t*, float*, float*) {
  throw std::logic_error("bf16FilterGradient: not compiled into this build (no avx512_bf16 on the building CPU)");
}

#endif

}  // namespace ect
