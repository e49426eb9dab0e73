// The filter (and bias) gradient of a 3x3 or 1x1 "same" convolution from bf16 inputs, with VDPBF16PS: faster than oneDNN
// 2.6's jit_bf16 filter gradient on the UNets' shapes (docs/benchmarks.md), and written in the filter's own HWIO
// layout, so no reorder follows it. native/src/onednn_ops.cc runs it in place of that primitive where it applies.
#pragma once
#include <cstdint>

#include "onednn_ops.h"

namespace ect {

// Whether the kernel is compiled into this build (the addon is built with -march=native: a CPU with avx512_bf16).
bool bf16FilterGradientCompiled();

// Whether it computes this geometry: a 3x3 filter with padding 1 on every side or a 1x1 filter without, stride 1,
// no dilation (output the size of the input), an even batch, input channels a multiple of 16 and output channels 16, 32 or a multiple of 64.
bool bf16FilterGradientApplies(const ConvGeometry& g);

// dfilter[kh][kw][ci][co] (float32, HWIO) = sum over the batch and the pixels of x * dy, and dbias[co] (when not null)
// = sum of dy, from x [batch][height][width][ci] and dy [batch][height][width][co] in bfloat16 (NHWC). Products are
// summed in float32 by VDPBF16PS, two images of a pair at a time; the threads take the image pairs in even shares,
// each into its own partial gradient, and the partials are added in thread order: the same bits on every run with
// the same thread count. Call only where bf16FilterGradientApplies(g) and bf16FilterGradientCompiled().
void bf16FilterGradient(const ConvGeometry& g, const uint16_t* x, const uint16_t* dy, float* dfilter, float* dbias);

}  // namespace ect
