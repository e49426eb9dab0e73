// Multithreaded (OpenMP) float32 loops: broadcasting binary ops, unary ops, reductions, transpose, softmax.
#include "cpu_loops.h"
#include "vexp.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace ect {
namespace {

// Below this many elements a loop stays on one thread: waking the team costs more than it saves.
constexpr int64_t kParallelThreshold = 1 << 15;

int teamFor(int64_t work) { return work < kParallelThreshold ? 1 : omp_get_max_threads(); }

// Dimensions after merging neighbours that broadcast the same way; stride 0 marks a broadcast operand.
struct BroadcastPlan {
  std::vector<int64_t> dims, aStrides, bStrides;
};

BroadcastPlan planBroadcast(const std::vector<int64_t>& aShape, const std::vector<int64_t>& bShape,
                            const std::vector<int64_t>& outShape) {
  const size_t rank = outShape.size();
  auto sizeAt = [&](const std::vector<int64_t>& s, size_t outAxis) -> int64_t {
    const size_t offset = rank - s.size();
    return outAxis < offset ? 1 : s[outAxis - offset];
  };
  BroadcastPlan plan;
  int lastKind = -1;
  for (size_t axis = 0; axis < rank; axis++) {
    const int64_t n = outShape[axis];
    if (n == 1) continue;
    const int64_t an = sizeAt(aShape, axis), bn = sizeAt(bShape, axis);
    if ((an != n && an != 1) || (bn != n && bn != 1)) throw std::invalid_argument("binary: shapes do not broadcast");
    const int kind = (an == n ? 1 : 0) + (bn == n ? 2 : 0);
    if (kind == lastKind) {
      plan.dims.back() *= n;
    } else {
      plan.dims.push_back(n);
      plan.aStrides.push_back(an == n ? 1 : 0);
      plan.bStrides.push_back(bn == n ? 1 : 0);
      lastKind = kind;
    }
  }
  if (plan.dims.empty()) {
    plan.dims = {1};
    plan.aStrides = {1};
    plan.bStrides = {1};
  }
  // Turn "varies or not" flags into element strides (row-major over the collapsed dims).
  int64_t aStride = 1, bStride = 1;
  for (size_t i = plan.dims.size(); i-- > 0;) {
    if (plan.aStrides[i]) { plan.aStrides[i] = aStride; aStride *= plan.dims[i]; }
    if (plan.bStrides[i]) { plan.bStrides[i] = bStride; bStride *= plan.dims[i]; }
  }
  return plan;
}

template <typename Op, typename Out>
inline void binaryRow(Op op, const float* a, bool aVaries, const float* b, bool bVaries, Out* out, int64_t n) {
  if (aVaries && bVaries) {
    for (int64_t i = 0; i < n; i++) out[i] = op(a[i], b[i]);
  } else if (aVaries) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; i++) out[i] = op(a[i], bv);
  } else if (bVaries) {
    const float av = a[0];
    for (int64_t i = 0; i < n; i++) out[i] = op(av, b[i]);
  } else {
    const Out v = op(a[0], b[0]);
    for (int64_t i = 0; i < n; i++) out[i] = v;
  }
}

template <typename Op, typename Out>
void binaryWith(Op op, const float* a, const float* b, Out* out, const BroadcastPlan& plan) {
  const int rank = static_cast<int>(plan.dims.size());
  const int64_t inner = plan.dims[rank - 1];
  int64_t rows = 1;
  for (int i = 0; i < rank - 1; i++) rows *= plan.dims[i];
  const bool aVaries = plan.aStrides[rank - 1] != 0, bVaries = plan.bStrides[rank - 1] != 0;
  const int64_t total = rows * inner;
  // Work is split into contiguous output ranges so a single long row also uses every thread.
  const int team = teamFor(total);
#pragma omp parallel num_threads(team)
  {
    const int parts = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t begin = total * me / parts, end = total * (me + 1) / parts;
    // Odometer over the outer dims: offsets advance by adds, not a div/mod per row (rows can be 4 long).
    std::vector<int64_t> index(rank > 1 ? rank - 1 : 1, 0);
    int64_t aOffset = 0, bOffset = 0, rest = begin / inner;
    for (int d = rank - 2; d >= 0; d--) {
      index[d] = rest % plan.dims[d];
      rest /= plan.dims[d];
      aOffset += index[d] * plan.aStrides[d];
      bOffset += index[d] * plan.bStrides[d];
    }
    int64_t pos = begin, col = begin % inner;
    while (pos < end) {
      const int64_t n = std::min(inner - col, end - pos);
      binaryRow(op, a + aOffset + (aVaries ? col : 0), aVaries, b + bOffset + (bVaries ? col : 0), bVaries,
                out + pos, n);
      pos += n;
      col = 0;
      for (int d = rank - 2; d >= 0; d--) {
        aOffset += plan.aStrides[d];
        bOffset += plan.bStrides[d];
        if (++index[d] < plan.dims[d]) break;
        aOffset -= plan.aStrides[d] * plan.dims[d];
        bOffset -= plan.bStrides[d] * plan.dims[d];
        index[d] = 0;
      }
    }
  }
}

template <typename Op>
void unaryWith(Op op, const float* x, float* y, int64_t n) {
#pragma omp parallel for num_threads(teamFor(n)) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = op(x[i]);
}

struct ReduceTraits {
  double init;
  double (*combine)(double, double);
};

ReduceTraits traitsOf(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max: return {-std::numeric_limits<double>::infinity(), [](double a, double b) { return std::max(a, b); }};
    case ReduceOp::Min: return {std::numeric_limits<double>::infinity(), [](double a, double b) { return std::min(a, b); }};
    default: return {0.0, [](double a, double b) { return a + b; }};
  }
}

}  // namespace

void downsample2x(const float* x, int64_t batch, int64_t height, int64_t width, int64_t channels, float scale, float* out) {
  if (height % 2 || width % 2) throw std::invalid_argument("downsample2x: height and width must be even");
  const int64_t outH = height / 2, outW = width / 2, rows = batch * outH, C = channels;
#pragma omp parallel for num_threads(teamFor(rows * outW * C)) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t n = r / outH, i = r % outH;
    const float* top = x + ((n * height + 2 * i) * width) * C;
    const float* bottom = top + width * C;
    float* y = out + r * outW * C;
    for (int64_t j = 0; j < outW; j++) {
      const float* a = top + 2 * j * C;
      const float* b = bottom + 2 * j * C;
      float* o = y + j * C;
      for (int64_t c = 0; c < C; c++) o[c] = scale * ((a[c] + a[C + c]) + (b[c] + b[C + c]));
    }
  }
}

void upsample2x(const float* x, int64_t batch, int64_t height, int64_t width, int64_t channels, float scale, float* out) {
  const int64_t rows = batch * height, C = channels, outW = 2 * width;
#pragma omp parallel for num_threads(teamFor(4 * rows * width * C)) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const float* row = x + r * width * C;
    float* top = out + 2 * r * outW * C;
    float* bottom = top + outW * C;
    for (int64_t j = 0; j < width; j++) {
      const float* v = row + j * C;
      for (int64_t c = 0; c < C; c++) {
        const float value = scale * v[c];
        top[2 * j * C + c] = value;
        top[(2 * j + 1) * C + c] = value;
        bottom[2 * j * C + c] = value;
        bottom[(2 * j + 1) * C + c] = value;
      }
    }
  }
}

int threadCount() { return omp_get_max_threads(); }

void binary(BinaryOp op, const float* a, const std::vector<int64_t>& aShape, const float* b,
            const std::vector<int64_t>& bShape, float* out, const std::vector<int64_t>& outShape) {
  const BroadcastPlan plan = planBroadcast(aShape, bShape, outShape);
  switch (op) {
    case BinaryOp::Add: return binaryWith([](float x, float y) { return x + y; }, a, b, out, plan);
    case BinaryOp::Sub: return binaryWith([](float x, float y) { return x - y; }, a, b, out, plan);
    case BinaryOp::Mul: return binaryWith([](float x, float y) { return x * y; }, a, b, out, plan);
    case BinaryOp::Div: return binaryWith([](float x, float y) { return x / y; }, a, b, out, plan);
    case BinaryOp::SquaredDifference:
      return binaryWith([](float x, float y) { return (x - y) * (x - y); }, a, b, out, plan);
    case BinaryOp::Maximum: return binaryWith([](float x, float y) { return std::isnan(x) || x > y ? x : y; }, a, b, out, plan);
    case BinaryOp::Minimum: return binaryWith([](float x, float y) { return std::isnan(x) || x < y ? x : y; }, a, b, out, plan);
  }
  throw std::invalid_argument("binary: unknown op");
}

void compare(CompareOp op, const float* a, const std::vector<int64_t>& aShape, const float* b,
             const std::vector<int64_t>& bShape, uint8_t* out, const std::vector<int64_t>& outShape) {
  const BroadcastPlan plan = planBroadcast(aShape, bShape, outShape);
  using Byte = uint8_t;
  switch (op) {
    case CompareOp::Less: return binaryWith([](float x, float y) { return Byte(x < y); }, a, b, out, plan);
    case CompareOp::LessEqual: return binaryWith([](float x, float y) { return Byte(x <= y); }, a, b, out, plan);
    case CompareOp::Greater: return binaryWith([](float x, float y) { return Byte(x > y); }, a, b, out, plan);
    case CompareOp::GreaterEqual: return binaryWith([](float x, float y) { return Byte(x >= y); }, a, b, out, plan);
    case CompareOp::Equal: return binaryWith([](float x, float y) { return Byte(x == y); }, a, b, out, plan);
    case CompareOp::NotEqual: return binaryWith([](float x, float y) { return Byte(x != y); }, a, b, out, plan);
  }
  throw std::invalid_argument("compare: unknown op");
}

void unary(UnaryOp op, const float* x, float* y, int64_t n, float alpha) {
  switch (op) {
    case UnaryOp::Sigmoid: return unaryWith([](float v) { return 1.f / (1.f + std::exp(-v)); }, x, y, n);
    case UnaryOp::Exp: return unaryWith([](float v) { return std::exp(v); }, x, y, n);
    case UnaryOp::Neg: return unaryWith([](float v) { return -v; }, x, y, n);
    case UnaryOp::Square: return unaryWith([](float v) { return v * v; }, x, y, n);
    case UnaryOp::Rsqrt: return unaryWith([](float v) { return 1.f / std::sqrt(v); }, x, y, n);
    case UnaryOp::Sqrt: return unaryWith([](float v) { return std::sqrt(v); }, x, y, n);
    case UnaryOp::Relu: return unaryWith([](float v) { return v < 0.f ? 0.f : v; }, x, y, n);
    case UnaryOp::Log: return unaryWith([](float v) { return std::log(v); }, x, y, n);
    case UnaryOp::Abs: return unaryWith([](float v) { return std::fabs(v); }, x, y, n);
    case UnaryOp::Tanh: return unaryWith([](float v) { return std::tanh(v); }, x, y, n);
    case UnaryOp::Reciprocal: return unaryWith([](float v) { return 1.f / v; }, x, y, n);
    case UnaryOp::Scale: return unaryWith([alpha](float v) { return alpha * v; }, x, y, n);
  }
  throw std::invalid_argument("unary: unknown op");
}

namespace {
// lib/random.ts mix32: MurmurHash3's finaliser on 32 bits (JavaScript's int32 arithmetic is arithmetic mod 2^32).
uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}
}  // namespace

void dropoutMask(uint32_t seed, double keep, float scale, float* out, int64_t n) {
  const uint32_t seedHash = mix32(seed);
#pragma omp parallel for num_threads(teamFor(n)) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    // hashUniform(seed, i) = mix32(i * 0x9e3779b1 + mix32(seed)) / 2^32, exact in double
    const double uniform = mix32(static_cast<uint32_t>(i) * 0x9e3779b1u + seedHash) / 4294967296.0;
    out[i] = uniform < keep ? scale : 0.f;
  }
}

void select(const uint8_t* condition, const float* a, const float* b, float* out, int64_t n) {
#pragma omp parallel for num_threads(teamFor(n)) schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = condition[i] ? a[i] : b[i];
}

void scaledSum(const float* a, const float* b, float scale, float* out, int64_t n) {
  // the sum is rounded to float before the product, as two separate elementwise kernels would round it
#pragma omp parallel for num_threads(teamFor(n)) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float sum = a[i] + b[i];
    out[i] = sum * scale;
  }
}

void reduce(ReduceOp op, const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& axes, float* out) {
  // Collapse neighbouring axes of the same kind (kept / reduced); drop size-1 axes.
  std::vector<int64_t> dims;
  std::vector<bool> reduced;
  int64_t reduceCount = 1, total = 1;
  for (size_t axis = 0; axis < shape.size(); axis++) {
    const bool isReduced = std::find(axes.begin(), axes.end(), static_cast<int64_t>(axis)) != axes.end();
    total *= shape[axis];
    if (isReduced) reduceCount *= shape[axis];
    if (shape[axis] == 1) continue;
    if (!dims.empty() && reduced.back() == isReduced) {
      dims.back() *= shape[axis];
    } else {
      dims.push_back(shape[axis]);
      reduced.push_back(isReduced);
    }
  }
  const int64_t outCount = reduceCount == 0 ? 0 : total / std::max<int64_t>(reduceCount, 1);
  const ReduceTraits traits = traitsOf(op);
  const double scale = op == ReduceOp::Mean ? 1.0 / static_cast<double>(reduceCount) : 1.0;
  if (total == 0 || dims.empty()) {  // nothing to reduce over (or a scalar)
    for (int64_t i = 0; i < outCount; i++) out[i] = reduceCount == 0 ? static_cast<float>(traits.init) : x[i];
    return;
  }
  const int rank = static_cast<int>(dims.size());
  std::vector<int64_t> strides(rank);
  for (int i = rank - 1, s = 1; i >= 0; i--) { strides[i] = s; s *= dims[i]; }
  std::vector<int64_t> keptDims, keptStrides, redDims, redStrides;
  for (int i = 0; i < rank; i++) {
    (reduced[i] ? redDims : keptDims).push_back(dims[i]);
    (reduced[i] ? redStrides : keptStrides).push_back(strides[i]);
  }
  const bool lastReduced = reduced[rank - 1];
  // Inner contiguous run: the last reduced dim (summed per output) or the last kept dim (a row of outputs).
  const int64_t inner = dims[rank - 1];
  const int64_t outerOutputs = lastReduced ? outCount : outCount / inner;
  const int64_t outerReductions = lastReduced ? reduceCount / inner : reduceCount;
  auto offsetOf = [](int64_t flat, const std::vector<int64_t>& ds, const std::vector<int64_t>& ss, size_t count) {
    int64_t offset = 0;
    for (size_t d = count; d-- > 0;) {
      offset += (flat % ds[d]) * ss[d];
      flat /= ds[d];
    }
    return offset;
  };
  const size_t keptOuter = lastReduced ? keptDims.size() : keptDims.size() - 1;
  const size_t redOuter = lastReduced ? redDims.size() - 1 : redDims.size();
  if (lastReduced) {
    // Each output sums `outerReductions` contiguous runs of `inner` values.
#pragma omp parallel for num_threads(teamFor(total)) schedule(static)
    for (int64_t o = 0; o < outerOutputs; o++) {
      const int64_t base = offsetOf(o, keptDims, keptStrides, keptOuter);
      double acc = traits.init;
      for (int64_t r = 0; r < outerReductions; r++) {
        const float* run = x + base + offsetOf(r, redDims, redStrides, redOuter);
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
          double partial = 0;
          for (int64_t i = 0; i < inner; i++) partial += run[i];
          acc += partial;
        } else {
          for (int64_t i = 0; i < inner; i++) acc = traits.combine(acc, run[i]);
        }
      }
      out[o] = static_cast<float>(acc * scale);
    }
    return;
  }
  // Last axis kept: accumulate whole rows of `inner` outputs; split the reduction across threads.
  const int team = teamFor(total);
  std::vector<double> partials(static_cast<size_t>(team) * outCount, traits.init);
#pragma omp parallel num_threads(team)
  {
    const int parts = omp_get_num_threads(), me = omp_get_thread_num();
    double* mine = partials.data() + static_cast<size_t>(me) * outCount;
    for (int64_t o = 0; o < outerOutputs; o++) {
      const int64_t base = offsetOf(o, keptDims, keptStrides, keptOuter);
      double* row = mine + o * inner;
      const int64_t begin = outerReductions * me / parts, end = outerReductions * (me + 1) / parts;
      for (int64_t r = begin; r < end; r++) {
        const float* run = x + base + offsetOf(r, redDims, redStrides, redOuter);
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
          for (int64_t i = 0; i < inner; i++) row[i] += run[i];
        } else {
          for (int64_t i = 0; i < inner; i++) row[i] = traits.combine(row[i], run[i]);
        }
      }
    }
  }
  for (int64_t o = 0; o < outCount; o++) {
    double acc = partials[o];
    for (int t = 1; t < team; t++) acc = traits.combine(acc, partials[static_cast<size_t>(t) * outCount + o]);
    out[o] = static_cast<float>(acc * scale);
  }
}

void transpose(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& perm, float* out) {
  const size_t rank = shape.size();
  std::vector<int64_t> inStrides(rank);
  for (size_t i = rank, s = 1; i-- > 0;) { inStrides[i] = s; s *= shape[i]; }
  std::vector<int64_t> outDims(rank), outInStrides(rank);
  int64_t total = 1;
  for (size_t i = 0; i < rank; i++) {
    outDims[i] = shape[perm[i]];
    outInStrides[i] = inStrides[perm[i]];
    total *= outDims[i];
  }
  if (total == 0) return;
  if (rank == 0) { out[0] = x[0]; return; }
  const int64_t inner = outDims[rank - 1], innerStride = outInStrides[rank - 1];
  const int64_t rows = total / inner;
#pragma omp parallel for num_threads(teamFor(total)) schedule(static)
  for (int64_t row = 0; row < rows; row++) {
    int64_t offset = 0, rest = row;
    for (size_t d = rank - 1; d-- > 0;) {
      offset += (rest % outDims[d]) * outInStrides[d];
      rest /= outDims[d];
    }
    float* target = out + row * inner;
    for (int64_t i = 0; i < inner; i++) target[i] = x[offset + i * innerStride];
  }
}

// A box [begin, begin + size) of a row-major tensor of `shape`, as rows of one contiguous run each.
struct BoxPlan {
  std::vector<int64_t> strides;  // of the full tensor
  int64_t base = 0;              // offset of the box's first element
  int runAxis = 0;               // axes before it index the rows
  int64_t run = 1;               // contiguous elements per row
  int64_t rows = 0;
};

static BoxPlan planBox(const std::vector<int64_t>& shape, const std::vector<int64_t>& begin, const std::vector<int64_t>& size) {
  const int rank = static_cast<int>(shape.size());
  BoxPlan plan;
  int64_t total = 1;
  for (int64_t s : size) total *= s;
  if (total == 0) return plan;
  plan.strides.resize(rank);
  for (int i = rank - 1, s = 1; i >= 0; i--) { plan.strides[i] = s; s *= shape[i]; }
  for (int i = 0; i < rank; i++) plan.base += begin[i] * plan.strides[i];
  // Trailing axes taken whole join the contiguous run; the first partial axis (from the end) ends it.
  plan.runAxis = rank - 1;
  plan.run = rank > 0 ? size[rank - 1] : 1;
  while (plan.runAxis > 0 && size[plan.runAxis] == shape[plan.runAxis]) {
    plan.runAxis--;
    plan.run *= size[plan.runAxis];
  }
  plan.rows = total / plan.run;
  return plan;
}

// Offset in the full tensor of the box's row `row`.
static inline int64_t boxRowOffset(const BoxPlan& plan, const std::vector<int64_t>& size, int64_t row) {
  int64_t offset = plan.base, rest = row;
  for (int d = plan.runAxis - 1; d >= 0; d--) {
    offset += (rest % size[d]) * plan.strides[d];
    rest /= size[d];
  }
  return offset;
}

void slice(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& begin,
           const std::vector<int64_t>& size, float* out) {
  const BoxPlan plan = planBox(shape, begin, size);
  const int64_t run = plan.run;
#pragma omp parallel for num_threads(teamFor(plan.rows * run)) schedule(static)
  for (int64_t row = 0; row < plan.rows; row++) {
    const int64_t offset = boxRowOffset(plan, size, row);
    std::copy(x + offset, x + offset + run, out + row * run);
  }
}

void insert(float* out, const std::vector<int64_t>& outShape, const std::vector<int64_t>& begin,
            const float* x, const std::vector<int64_t>& size) {
  const BoxPlan plan = planBox(outShape, begin, size);
  const int64_t run = plan.run;
#pragma omp parallel for num_threads(teamFor(plan.rows * run)) schedule(static)
  for (int64_t row = 0; row < plan.rows; row++) {
    const int64_t offset = boxRowOffset(plan, size, row);
    std::copy(x + row * run, x + (row + 1) * run, out + offset);
  }
}

void softmax(const float* x, int64_t rows, int64_t cols, float* out) {
  // Lanes of partial maxima and sums, so the loops vectorise (a running scalar max or sum is one serial chain).
  constexpr int kLanes = 16;
#pragma omp parallel for num_threads(teamFor(rows * cols)) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const float* in = x + r * cols;
    float* o = out + r * cols;
    const int64_t whole = cols - cols % kLanes;
    float lanes[kLanes];
    std::fill(lanes, lanes + kLanes, -std::numeric_limits<float>::infinity());
    for (int64_t c = 0; c < whole; c += kLanes) {
      for (int l = 0; l < kLanes; l++) lanes[l] = std::max(lanes[l], in[c + l]);
    }
    float peak = -std::numeric_limits<float>::infinity();
    for (int l = 0; l < kLanes; l++) peak = std::max(peak, lanes[l]);
    for (int64_t c = whole; c < cols; c++) peak = std::max(peak, in[c]);
    std::fill(lanes, lanes + kLanes, 0.f);
    for (int64_t c = 0; c < whole; c += kLanes) {
      for (int l = 0; l < kLanes; l++) {
        const float e = vexp(in[c + l] - peak);
        o[c + l] = e;
        lanes[l] += e;
      }
    }
    double sum = 0;
    for (int l = 0; l < kLanes; l++) sum += lanes[l];
    for (int64_t c = whole; c < cols; c++) {
      o[c] = vexp(in[c] - peak);
      sum += o[c];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = 0; c < cols; c++) o[c] *= inv;
  }
}

}  // namespace ect
