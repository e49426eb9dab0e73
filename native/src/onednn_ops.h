// Heavy tensor kernels on oneDNN primitives (convolutions and matrix products), on caller-owned memory.
#pragma once
#include <cstdint>
#include <string>

namespace ect {

// Geometry of one NHWC 2-D convolution with an HWIO filter (TensorFlow's layouts).
struct ConvGeometry {
  int64_t batch, inHeight, inWidth, inChannels;
  int64_t outHeight, outWidth, outChannels;
  int64_t filterHeight, filterWidth;
  int64_t strideHeight, strideWidth;
  int64_t dilationHeight, dilationWidth;  // TensorFlow convention: 1 means no dilation
  int64_t padTop, padLeft, padBottom, padRight;
};

// The data type convolutions and matrix products read their inputs in. Bf16: the float32 inputs (activations,
// filters, gradients) are rounded to bfloat16 before the primitive runs; accumulation, outputs and the bias stay
// float32. The caller decides where this is allowed (lib/backend/onednn/precision.ts checks the CPU).
enum class Precision { Fp32 = 0, Bf16 = 1 };

// Activation fused after a convolution or matrix product (TensorFlow.js `activation` attribute).
enum class Activation { Linear = 0, Relu = 1, Relu6 = 2, LeakyRelu = 3, Sigmoid = 4, Elu = 5 };

// Filters are reordered into the layout the primitive wants. A nonzero filterId names the filter's contents: the
// reordered copy is kept per primitive and id and reused while the id is alive, so the caller must never pass
// one id for two different contents, and must call releaseFilter(id) when those contents go away. 0: no reuse.

// y = act(conv(x, filter) + bias); bias may be null. In bf16, a non-null savedBf16 (batch x inH x inW x inC values)
// receives the input's bfloat16 copy the primitive read (NHWC), for convBackward to read instead of x; with x null,
// savedBf16 is that copy already (written by the kernel that made the input) and is read as it is.
void convForward(const ConvGeometry& g, const float* x, const float* filter, const float* bias, float* y,
                 Activation act, float alpha, Precision precision = Precision::Fp32, int64_t filterId = 0,
                 uint16_t* savedBf16 = nullptr);
// dx = gradient of the convolution with respect to its input.
void convBackwardData(const ConvGeometry& g, const float* dy, const float* filter, float* dx,
                      Precision precision = Precision::Fp32, int64_t filterId = 0);
// Drops every reordered copy kept for this filter id (no-op for an unknown id).
void releaseFilter(int64_t filterId);
// Reordered filter copies kept now (for memory checks and tests).
size_t cachedFilterCount();
// dfilter = gradient of the convolution with respect to its filter (HWIO).
void convBackwardFilter(const ConvGeometry& g, const float* x, const float* dy, float* dfilter,
                        Precision precision = Precision::Fp32);
// Every gradient of a convolution in one call: dx (skipped when null), dfilter, and dbias (skipped when null). The
// input comes as float32 x or, in bf16, as convForward's savedBf16 copy xBf16 (exactly one of the two). In bf16,
// dy is converted once and read by both primitives.
void convBackward(const ConvGeometry& g, const float* dy, const float* filter, int64_t filterId, const float* x,
                  const uint16_t* xBf16, float* dx, float* dfilter, float* dbias, Precision precision);

// Batched C[b] = act(op(A[b]) op(B[b]) + bias); batchA or batchB may be 1 (broadcast).
struct MatMulGeometry {
  int64_t batchA, batchB, m, k, n;
  bool transposeA, transposeB;
};
void matMul(const MatMulGeometry& g, const float* a, const float* b, const float* bias, float* c,
            Activation act, float alpha, Precision precision = Precision::Fp32);

// Which oneDNN implementation runs a convolution of this geometry (for profiles and tests).
std::string convImplementation(const ConvGeometry& g, int which, Precision precision = Precision::Fp32);
// Which oneDNN implementation runs a matrix product of this geometry (no bias, no activation).
std::string matMulImplementation(const MatMulGeometry& g, Precision precision = Precision::Fp32);
// The instruction set oneDNN dispatches to on this CPU (its effective ISA), e.g. "avx512_core_bf16".
std::string effectiveIsa();
// Convolutions and matrix products run with bf16 inputs so far (a test can check the bf16 path really ran).
int64_t bf16Executions();
// Convolution primitives run so far, in either precision.
int64_t convExecutions();
// Filter gradients computed by bf16FilterGradient (filter_grad_bf16.h) in place of oneDNN's primitive so far.
int64_t bf16FilterGradientRuns();
// oneDNN's verbose level from now on (0 off, 1 one stdout line per primitive execution, 2 creation too), as
// ONEDNN_VERBOSE sets it at start; lets a profile log one step and not the warm-up.
void setVerbose(int level);
// oneDNN's version string, e.g. "2.6.3".
std::string onednnVersion();
// Primitives built so far (cache size), for memory checks.
size_t cachedPrimitiveCount();

}  // namespace ect
