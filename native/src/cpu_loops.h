// Multithreaded float32 loops for the light kernels (elementwise, reductions, transpose, softmax).
#pragma once
#include <cstdint>
#include <vector>

namespace ect {

enum class BinaryOp { Add = 0, Sub = 1, Mul = 2, Div = 3, SquaredDifference = 4, Maximum = 5, Minimum = 6 };
enum class CompareOp { Less = 0, LessEqual = 1, Greater = 2, GreaterEqual = 3, Equal = 4, NotEqual = 5 };
enum class UnaryOp { Sigmoid = 0, Exp = 1, Neg = 2, Square = 3, Rsqrt = 4, Sqrt = 5, Relu = 6, Log = 7, Abs = 8,
                     Tanh = 9, Reciprocal = 10, Scale = 11 /* alpha * x */ };
enum class ReduceOp { Sum = 0, Mean = 1, Max = 2, Min = 3 };

// out = a op b with NumPy broadcasting; shapes are right-aligned against outShape.
void binary(BinaryOp op, const float* a, const std::vector<int64_t>& aShape, const float* b,
            const std::vector<int64_t>& bShape, float* out, const std::vector<int64_t>& outShape);
// out = (a op b) as 0/1 bytes, with broadcasting like binary().
void compare(CompareOp op, const float* a, const std::vector<int64_t>& aShape, const float* b,
             const std::vector<int64_t>& bShape, uint8_t* out, const std::vector<int64_t>& outShape);
// y = op(x) elementwise over n values.
void unary(UnaryOp op, const float* x, float* y, int64_t n, float alpha);
// out[i] = condition[i] ? a[i] : b[i] over n values (tf.where with a condition shaped like its values).
void select(const uint8_t* condition, const float* a, const float* b, float* out, int64_t n);
// out = (a + b) * scale elementwise over n values (a residual sum and its scale in one pass).
void scaledSum(const float* a, const float* b, float scale, float* out, int64_t n);
// Dropout mask: out[i] = scale where the i-th number of the counter-based uniform stream of `seed` is below keep,
// else 0 (the loop of DropoutMasks.mask, lib/nn/layers.ts, with lib/random.ts hashUniform: the same values).
void dropoutMask(uint32_t seed, double keep, float scale, float* out, int64_t n);
// out = reduction of x over `axes` (out keeps the other axes in order).
void reduce(ReduceOp op, const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& axes, float* out);
// out = x with its axes permuted (out axis i is x axis perm[i]).
void transpose(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& perm, float* out);
// out = x[begin : begin + size] (a box of x, every axis), copied in contiguous runs.
void slice(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& begin,
           const std::vector<int64_t>& size, float* out);
// out[begin : begin + size] = x (the inverse of slice; used by concat and stack).
void insert(float* out, const std::vector<int64_t>& outShape, const std::vector<int64_t>& begin,
            const float* x, const std::vector<int64_t>& size);
// Row-wise softmax of a [rows, cols] matrix.
void softmax(const float* x, int64_t rows, int64_t cols, float* out);
// NHWC x [batch, height, width, channels] (even height and width) -> out [batch, height/2, width/2, channels]:
// scale * the sum of each 2x2 block (scale 0.25: average pooling; 1: the gradient of upsample2x).
void downsample2x(const float* x, int64_t batch, int64_t height, int64_t width, int64_t channels, float scale, float* out);
// NHWC x [batch, height, width, channels] -> out [batch, 2 height, 2 width, channels]: scale * nearest neighbour
// (scale 1: upsampling; 0.25: the gradient of downsample2x).
void upsample2x(const float* x, int64_t batch, int64_t height, int64_t width, int64_t channels, float scale, float* out);
// Threads the loops (and oneDNN, which shares the OpenMP runtime) use.
int threadCount();

}  // namespace ect
