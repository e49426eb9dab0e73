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

// Activation fused after a convolution or matrix product (TensorFlow.js `activation` attribute).
enum class Activation { Linear = 0, Relu = 1, Relu6 = 2, LeakyRelu = 3, Sigmoid = 4, Elu = 5 };

// y = act(conv(x, filter) + bias); bias may be null.
void convForward(const ConvGeometry& g, const float* x, const float* filter, const float* bias, float* y,
                 Activation act, float alpha);
// dx = gradient of the convolution with respect to its input.
void convBackwardData(const ConvGeometry& g, const float* dy, const float* filter, float* dx);
// dfilter = gradient of the convolution with respect to its filter (HWIO).
void convBackwardFilter(const ConvGeometry& g, const float* x, const float* dy, float* dfilter);

// Batched C[b] = act(op(A[b]) op(B[b]) + bias); batchA or batchB may be 1 (broadcast).
struct MatMulGeometry {
  int64_t batchA, batchB, m, k, n;
  bool transposeA, transposeB;
};
void matMul(const MatMulGeometry& g, const float* a, const float* b, const float* bias, float* c,
            Activation act, float alpha);

// Which oneDNN implementation runs a convolution of this geometry (for profiles and tests).
std::string convImplementation(const ConvGeometry& g, int which);
// oneDNN's version string, e.g. "2.6.3".
std::string onednnVersion();
// Primitives built so far (cache size), for memory checks.
size_t cachedPrimitiveCount();

}  // namespace ect
