// oneDNN convolutions and matrix products on TensorFlow's NHWC / HWIO memory, with primitives cached by shape and
// input precision. In bf16, each float32 input is converted by one oneDNN reorder into the bfloat16 layout the
// primitive reads (activations and gradients into scratch buffers, filters into kept blocked copies); outputs,
// bias and accumulation stay float32.
#include "onednn_ops.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include "bf16.h"
#include "filter_grad_bf16.h"

namespace ect {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

dnnl::engine& cpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& cpuStream() {
  static dnnl::stream stream(cpuEngine());
  return stream;
}

// Sets OpenMP's thread count for what oneDNN creates and runs in its scope to 1, and restores it after.
class OneThreadScope {
 public:
  explicit OneThreadScope(bool active) : saved_(active ? omp_get_max_threads() : 0) {
    if (saved_ > 0) omp_set_num_threads(1);
  }
  ~OneThreadScope() {
    if (saved_ > 0) omp_set_num_threads(saved_);
  }

 private:
  int saved_;
};

// The data type a primitive reads its inputs in.
dt inputType(Precision precision) { return precision == Precision::Bf16 ? dt::bf16 : dt::f32; }

// oneDNN names dimensions in logical NCHW / OIHW order whatever the memory layout.
memory::desc activationDesc(int64_t n, int64_t c, int64_t h, int64_t w, dt type = dt::f32) {
  return memory::desc({n, c, h, w}, type, tag::nhwc);
}
memory::desc filterDesc(const ConvGeometry& g, tag layout, dt type = dt::f32) {
  return memory::desc({g.outChannels, g.inChannels, g.filterHeight, g.filterWidth}, type, layout);
}

// Scratch for the bf16 copies of a primitive's data inputs (see Bf16Scratch): first and second operand, and the
// third for convBackward's dy when its two primitives would read dy in different layouts.
Bf16Scratch firstInput, secondInput, thirdInput;
int64_t bf16Runs = 0, convRuns = 0, ownFilterGradients = 0;
memory::dims strides(const ConvGeometry& g) { return {g.strideHeight, g.strideWidth}; }
// oneDNN counts dilation as the number of skipped taps: TensorFlow's d is oneDNN's d - 1.
memory::dims dilations(const ConvGeometry& g) { return {g.dilationHeight - 1, g.dilationWidth - 1}; }
memory::dims padBefore(const ConvGeometry& g) { return {g.padTop, g.padLeft}; }
memory::dims padAfter(const ConvGeometry& g) { return {g.padBottom, g.padRight}; }

std::string geometryKey(const ConvGeometry& g) {
  std::ostringstream key;
  for (int64_t v : {g.batch, g.inHeight, g.inWidth, g.inChannels, g.outHeight, g.outWidth, g.outChannels,
                    g.filterHeight, g.filterWidth, g.strideHeight, g.strideWidth, g.dilationHeight,
                    g.dilationWidth, g.padTop, g.padLeft, g.padBottom, g.padRight}) {
    key << v << ',';
  }
  return key.str();
}

dnnl::primitive_attr activationAttr(Activation act, float alpha) {
  dnnl::primitive_attr attr;
  dnnl::post_ops ops;
  switch (act) {
    case Activation::Linear: break;
    case Activation::Relu: ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f); break;
    case Activation::LeakyRelu: ops.append_eltwise(1.f, algorithm::eltwise_relu, alpha, 0.f); break;
    case Activation::Relu6: ops.append_eltwise(1.f, algorithm::eltwise_clip, 0.f, 6.f); break;
    case Activation::Sigmoid: ops.append_eltwise(1.f, algorithm::eltwise_logistic, 0.f, 0.f); break;
    case Activation::Elu: ops.append_eltwise(1.f, algorithm::eltwise_elu, 1.f, 0.f); break;
  }
  attr.set_post_ops(ops);
  return attr;
}

// Forward descriptor; also the "hint" the backward primitives are built from. The destination is float32 in
// either precision.
dnnl::convolution_forward::primitive_desc forwardPd(const ConvGeometry& g, bool withBias, Activation act, float alpha,
                                                    Precision precision) {
  auto src = activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth, inputType(precision));
  auto dst = activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth);
  auto weights = filterDesc(g, tag::any, inputType(precision));  // oneDNN picks its blocked filter layout; we reorder into it
  auto bias = memory::desc({g.outChannels}, dt::f32, tag::a);
  auto desc = withBias
      ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm::convolution_direct, src, weights,
                                        bias, dst, strides(g), dilations(g), padBefore(g), padAfter(g))
      : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm::convolution_direct, src, weights,
                                        dst, strides(g), dilations(g), padBefore(g), padAfter(g));
  return dnnl::convolution_forward::primitive_desc(desc, activationAttr(act, alpha), cpuEngine());
}

// A float32 input as the primitive reads it in bf16: the reorder that converts it, in one vectorised pass (round
// to nearest even; on avx512_core_bf16 oneDNN's VCVTNEPS2BF16, which also flushes float32 subnormals, |x| <
// 2^-126, to zero), from the caller's layout into the primitive's.
struct Bf16Input {
  memory::desc wanted;
  dnnl::reorder convert;
  Bf16Input(const memory::desc& user, const memory::desc& wanted)
      : wanted(wanted), convert(memory(user, cpuEngine(), nullptr), memory(wanted, cpuEngine(), nullptr)) {}
};

// The conversion of an input when the primitive reads bf16, else null (the float32 array is read in place).
std::unique_ptr<Bf16Input> bf16Input(const memory::desc& user, const memory::desc& wanted) {
  if (wanted.data_type() != dt::bf16) return nullptr;
  return std::make_unique<Bf16Input>(user, wanted);
}

// A filter in TensorFlow's HWIO layout and, when the primitive wants another layout, its reordered copy.
struct FilterSlot {
  memory::desc user;
  memory::desc internal;
  bool needsReorder = false;
  dnnl::reorder toInternal, toUser;
  memory buffer;  // internal-layout storage, owned by the cache entry
  std::unordered_map<int64_t, memory> byId;  // reordered copies of identified filters (convForward's filterId)

  FilterSlot(const ConvGeometry& g, const memory::desc& wanted, bool fromUser)
      : user(filterDesc(g, tag::hwio)), internal(wanted) {
    needsReorder = !(user == internal);
    if (!needsReorder) return;
    buffer = memory(internal, cpuEngine());
    if (fromUser) {
      toInternal = dnnl::reorder(memory(user, cpuEngine(), nullptr), buffer);
    } else {
      toUser = dnnl::reorder(buffer, memory(user, cpuEngine(), nullptr));
    }
  }
};

struct ConvBackwardDataEntry {
  dnnl::convolution_backward_data::primitive_desc pd;
  dnnl::convolution_backward_data primitive;
  std::unique_ptr<FilterSlot> filter;
  std::unique_ptr<Bf16Input> diffDst;
};

// A filter gradient run as `parts` single-threaded primitives side by side, each over its slice of the batch (its own
// stream and scratchpad), their float32 outputs summed in slice order: the same bits on every run with that many
// threads. oneDNN 2.6's filter gradient on two threads reduces across them, and this is faster on every float32
// shape of the UNets (batch 64, NHWC, 3x3, 2 threads, best of 20 calls: 28x28 64->64 12.2-12.4 -> 11.1 ms, 32->64
// 7.4-8.2 -> 6.2-6.8, 14x14 64->64 2.8 -> 2.3-2.4, 7x7 192->64 1.9-2.0 -> 1.5-1.6) and by about 4% in a bf16 step
// (docs/benchmarks.md). Forward and input-gradient primitives split so were slower or equal, and are not.
struct SplitFilterGradient {
  int parts;
  dnnl::convolution_backward_weights::primitive_desc pd;  // one slice, planned for one thread
  dnnl::convolution_backward_weights primitive;
  std::vector<dnnl::stream> streams;
  std::vector<memory> scratch, diffWeights, diffBias;  // per slice; slice 0 writes the whole gradient's outputs
};

struct ConvBackwardFilterEntry {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights primitive;
  std::unique_ptr<FilterSlot> filter;
  std::unique_ptr<Bf16Input> src, diffDst;
  std::unique_ptr<SplitFilterGradient> split;  // null: the primitive above runs on the whole batch
  ConvGeometry geometry;
  bool ownBf16 = false;  // bf16 inputs and a geometry bf16FilterGradient computes: it runs instead of the primitive
};

struct MatMulEntry {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul primitive;
  memory::desc aUser, bUser;  // the float32 operands as the caller holds them
  std::unique_ptr<Bf16Input> a, b;
};

template <typename Entry>
using Cache = std::unordered_map<std::string, std::unique_ptr<Entry>>;

Cache<ConvBackwardDataEntry> backwardDataCache;
Cache<ConvBackwardFilterEntry> backwardFilterCache;
Cache<MatMulEntry> matMulCache;

struct ConvForwardCached {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward primitive;
  std::unique_ptr<FilterSlot> filter;
  std::unique_ptr<Bf16Input> src;
};
Cache<ConvForwardCached> forwardCache;

// A primitive descriptor, or an error that says which bf16 primitive this oneDNN build or CPU cannot run.
template <typename Make>
auto describe(const char* what, Precision precision, Make make) -> decltype(make()) {
  try {
    return make();
  } catch (const dnnl::error& error) {
    if (precision != Precision::Bf16) throw;
    throw std::runtime_error(std::string("no bf16 implementation of ") + what + " in this oneDNN on this CPU (" + error.what() + ")");
  }
}

std::string precisionKey(Precision precision) { return precision == Precision::Bf16 ? "bf16," : "f32,"; }

ConvForwardCached& forwardEntry(const ConvGeometry& g, bool withBias, Activation act, float alpha, Precision precision) {
  std::ostringstream key;
  key << precisionKey(precision) << geometryKey(g) << withBias << ',' << static_cast<int>(act) << ',' << alpha;
  auto& slot = forwardCache[key.str()];
  if (!slot) {
    auto pd = describe("the forward convolution", precision, [&] { return forwardPd(g, withBias, act, alpha, precision); });
    slot.reset(new ConvForwardCached{pd, dnnl::convolution_forward(pd),
                                     std::make_unique<FilterSlot>(g, pd.weights_desc(), true),
                                     bf16Input(activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth), pd.src_desc())});
  }
  return *slot;
}

ConvBackwardDataEntry& backwardDataEntry(const ConvGeometry& g, Precision precision) {
  auto& slot = backwardDataCache[precisionKey(precision) + geometryKey(g)];
  if (!slot) {
    const dt in = inputType(precision);
    auto pd = describe("the convolution's input gradient", precision, [&] {
      auto hint = forwardPd(g, false, Activation::Linear, 0.f, precision);
      dnnl::convolution_backward_data::desc desc(
          algorithm::convolution_direct, activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth),
          filterDesc(g, tag::any, in), activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth, in), strides(g),
          dilations(g), padBefore(g), padAfter(g));
      return dnnl::convolution_backward_data::primitive_desc(desc, cpuEngine(), hint);
    });
    slot.reset(new ConvBackwardDataEntry{
        pd, dnnl::convolution_backward_data(pd), std::make_unique<FilterSlot>(g, pd.weights_desc(), true),
        bf16Input(activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth), pd.diff_dst_desc())});
  }
  return *slot;
}

dnnl::convolution_backward_weights::primitive_desc filterGradientPd(const ConvGeometry& g, Precision precision, bool withBias,
                                                                    const dnnl::primitive_attr& attr = dnnl::primitive_attr()) {
  return describe("the convolution's filter gradient", precision, [&] {
    const dt in = inputType(precision);
    auto hint = forwardPd(g, false, Activation::Linear, 0.f, precision);
    // the filter and bias gradients stay float32 (they feed the float32 master weights' optimiser)
    const auto src = activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth, in);
    const auto diffDst = activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth, in);
    auto desc = withBias
        ? dnnl::convolution_backward_weights::desc(algorithm::convolution_direct, src, filterDesc(g, tag::any),
                                                   memory::desc({g.outChannels}, dt::f32, tag::a), diffDst, strides(g),
                                                   dilations(g), padBefore(g), padAfter(g))
        : dnnl::convolution_backward_weights::desc(algorithm::convolution_direct, src, filterDesc(g, tag::any), diffDst,
                                                   strides(g), dilations(g), padBefore(g), padAfter(g));
    return dnnl::convolution_backward_weights::primitive_desc(desc, attr, cpuEngine(), hint);
  });
}

// The sliced filter gradient when there are several threads, the batch splits evenly among them and a slice reads
// plain NHWC slices and writes the whole gradient's layout; else null.
std::unique_ptr<SplitFilterGradient> splitFilterGradient(const ConvGeometry& g, Precision precision, bool withBias,
                                                         const dnnl::convolution_backward_weights::primitive_desc& whole) {
  const int parts = omp_get_max_threads();
  if (parts < 2 || g.batch % parts != 0) return nullptr;
  ConvGeometry slice = g;
  slice.batch = g.batch / parts;
  OneThreadScope oneThread(true);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto pd = filterGradientPd(slice, precision, withBias, attr);
  if (pd.diff_weights_desc() != whole.diff_weights_desc() ||
      pd.src_desc() != activationDesc(slice.batch, g.inChannels, g.inHeight, g.inWidth, inputType(precision)) ||
      pd.diff_dst_desc() != activationDesc(slice.batch, g.outChannels, g.outHeight, g.outWidth, inputType(precision))) {
    return nullptr;
  }
  auto split = std::make_unique<SplitFilterGradient>(SplitFilterGradient{parts, pd, dnnl::convolution_backward_weights(pd), {}, {}, {}, {}});
  for (int i = 0; i < parts; i++) {
    split->streams.emplace_back(cpuEngine());
    split->scratch.emplace_back(pd.scratchpad_desc(), cpuEngine());
    split->diffWeights.push_back(i == 0 ? memory() : memory(pd.diff_weights_desc(), cpuEngine()));
    split->diffBias.push_back(i == 0 || !withBias ? memory() : memory(pd.diff_bias_desc(), cpuEngine()));
  }
  return split;
}

ConvBackwardFilterEntry& backwardFilterEntry(const ConvGeometry& g, Precision precision, bool withBias) {
  auto& slot = backwardFilterCache[precisionKey(precision) + geometryKey(g) + (withBias ? ",bias" : "")];
  if (!slot) {
    auto pd = filterGradientPd(g, precision, withBias);
    slot.reset(new ConvBackwardFilterEntry{
        pd, dnnl::convolution_backward_weights(pd), std::make_unique<FilterSlot>(g, pd.diff_weights_desc(), false),
        bf16Input(activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth), pd.src_desc()),
        bf16Input(activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth), pd.diff_dst_desc()),
        splitFilterGradient(g, precision, withBias, pd), g,
        precision == Precision::Bf16 && bf16FilterGradientCompiled() && bf16FilterGradientApplies(g)});
  }
  return *slot;
}

// For each filter id with kept copies, the slots holding them (so releaseFilter touches only those).
std::unordered_map<int64_t, std::vector<FilterSlot*>> slotsById;
size_t keptFilters = 0;

// The filter memory a primitive reads: the user's buffer itself, or its reordered copy (kept per id when id > 0).
memory filterForReading(FilterSlot& slot, const float* filter, int64_t id) {
  memory user(slot.user, cpuEngine(), const_cast<float*>(filter));
  if (!slot.needsReorder) return user;
  if (id <= 0) {
    slot.toInternal.execute(cpuStream(), user, slot.buffer);
    return slot.buffer;
  }
  auto found = slot.byId.find(id);
  if (found != slot.byId.end()) return found->second;
  memory copy(slot.internal, cpuEngine());
  slot.toInternal.execute(cpuStream(), user, copy);
  slot.byId.emplace(id, copy);
  slotsById[id].push_back(&slot);
  keptFilters++;
  return copy;
}

memory wrap(const memory::desc& desc, const float* data) {
  return memory(desc, cpuEngine(), const_cast<float*>(data));
}

// A primitive's data input: the float32 array itself (no conversion), or its bf16 copy converted into `scratch`.
memory input(const memory::desc& user, const float* data, const std::unique_ptr<Bf16Input>& conversion,
             Bf16Scratch& scratch) {
  memory source = wrap(user, data);
  if (!conversion) return source;
  memory copy(conversion->wanted, cpuEngine(), scratch.reserve(conversion->wanted.get_size()));
  conversion->convert.execute(cpuStream(), source, copy);
  return copy;
}

std::string matMulKey(const MatMulGeometry& g, bool withBias, Activation act, float alpha, Precision precision) {
  std::ostringstream key;
  key << precisionKey(precision) << g.batchA << ',' << g.batchB << ',' << g.m << ',' << g.k << ',' << g.n << ','
      << g.transposeA << ',' << g.transposeB << ',' << withBias << ',' << static_cast<int>(act) << ',' << alpha;
  return key.str();
}

// Products of at most this many multiply-adds run on the calling thread alone: waking the OpenMP worker when it
// sleeps (lib/backend/onednn/thread-wait.ts) costs more than the second thread saves on them.
constexpr int64_t kOneThreadMacs = int64_t{1} << 20;

bool runsOnOneThread(const MatMulGeometry& g) {
  return std::max(g.batchA, g.batchB) * g.m * g.k * g.n <= kOneThreadMacs;
}

MatMulEntry& matMulEntry(const MatMulGeometry& g, bool withBias, Activation act, float alpha, Precision precision) {
  OneThreadScope oneThread(runsOnOneThread(g));
  auto& slot = matMulCache[matMulKey(g, withBias, act, alpha, precision)];
  if (!slot) {
    const int64_t batch = std::max(g.batchA, g.batchB);
    const dt in = inputType(precision);
    // Transposed operands are described by their strides, so no data moves (a bf16 copy keeps the strides).
    const memory::dims aStrides = g.transposeA ? memory::dims{g.m * g.k, 1, g.m} : memory::dims{g.m * g.k, g.k, 1};
    const memory::dims bStrides = g.transposeB ? memory::dims{g.k * g.n, 1, g.k} : memory::dims{g.k * g.n, g.n, 1};
    memory::desc aDesc({g.batchA, g.m, g.k}, in, aStrides), bDesc({g.batchB, g.k, g.n}, in, bStrides);
    memory::desc cDesc({batch, g.m, g.n}, dt::f32, memory::dims{g.m * g.n, g.n, 1});
    memory::desc biasDesc({1, 1, g.n}, dt::f32, memory::dims{g.n, g.n, 1});
    auto pd = describe("the matrix product", precision, [&] {
      auto desc = withBias ? dnnl::matmul::desc(aDesc, bDesc, biasDesc, cDesc) : dnnl::matmul::desc(aDesc, bDesc, cDesc);
      return dnnl::matmul::primitive_desc(desc, activationAttr(act, alpha), cpuEngine());
    });
    memory::desc aUser({g.batchA, g.m, g.k}, dt::f32, aStrides), bUser({g.batchB, g.k, g.n}, dt::f32, bStrides);
    slot.reset(new MatMulEntry{pd, dnnl::matmul(pd), aUser, bUser, bf16Input(aUser, pd.src_desc()),
                               bf16Input(bUser, pd.weights_desc())});
  }
  return *slot;
}

// Converts a float32 input into `target` (caller-owned, sized for the conversion's layout) and returns it as memory.
memory convertInto(const memory::desc& user, const float* data, const Bf16Input& conversion, void* target) {
  memory source = wrap(user, data), copy(conversion.wanted, cpuEngine(), target);
  conversion.convert.execute(cpuStream(), source, copy);
  return copy;
}

void runBackwardData(ConvBackwardDataEntry& e, const memory& dy, const float* filter, int64_t filterId, float* dx) {
  e.primitive.execute(cpuStream(), {{DNNL_ARG_DIFF_DST, dy},
                                    {DNNL_ARG_WEIGHTS, filterForReading(*e.filter, filter, filterId)},
                                    {DNNL_ARG_DIFF_SRC, wrap(e.pd.diff_src_desc(), dx)}});
  cpuStream().wait();
}

// Adds each later slice's array to slice 0's, in slice order.
void sumSlices(const memory& first, const std::vector<memory>& slices) {
  auto* total = static_cast<float*>(first.get_data_handle());
  const size_t n = first.get_desc().get_size() / sizeof(float);
  for (size_t i = 1; i < slices.size(); i++) {
    const auto* part = static_cast<const float*>(slices[i].get_data_handle());
    for (size_t k = 0; k < n; k++) total[k] += part[k];
  }
}

// The filter (and bias) gradient over the batch's slices side by side (SplitFilterGradient), summed into target.
void runSplitFilterGradient(SplitFilterGradient& s, const memory& src, const memory& dy, const memory& target, const memory& bias) {
  auto* srcBase = static_cast<char*>(src.get_data_handle());
  auto* dyBase = static_cast<char*>(dy.get_data_handle());
  const size_t srcSlice = s.pd.src_desc().get_size(), dySlice = s.pd.diff_dst_desc().get_size();
  std::vector<std::exception_ptr> failed(s.parts);  // an exception must not leave an OpenMP region
#pragma omp parallel for num_threads(s.parts) schedule(static, 1)
  for (int i = 0; i < s.parts; i++) {
    try {
      std::unordered_map<int, memory> args{
          {DNNL_ARG_SRC, memory(s.pd.src_desc(), cpuEngine(), srcBase + i * srcSlice)},
          {DNNL_ARG_DIFF_DST, memory(s.pd.diff_dst_desc(), cpuEngine(), dyBase + i * dySlice)},
          {DNNL_ARG_DIFF_WEIGHTS, i == 0 ? target : s.diffWeights[i]},
          {DNNL_ARG_SCRATCHPAD, s.scratch[i]}};
      if (bias) args.insert({DNNL_ARG_DIFF_BIAS, i == 0 ? bias : s.diffBias[i]});
      s.primitive.execute(s.streams[i], args);
      s.streams[i].wait();
    } catch (...) {
      failed[i] = std::current_exception();
    }
  }
  for (const auto& error : failed) {
    if (error) std::rethrow_exception(error);
  }
  sumSlices(target, s.diffWeights);
  if (bias) sumSlices(bias, s.diffBias);
}

// ECT_BF16_FILTER_GRADIENT=onednn runs oneDNN's bf16 filter gradient where ours would run (to compare the two).
bool onednnBf16FilterGradientAsked() {
  const char* choice = std::getenv("ECT_BF16_FILTER_GRADIENT");
  return choice && std::strcmp(choice, "onednn") == 0;
}

void runBackwardFilter(ConvBackwardFilterEntry& e, const memory& src, const memory& dy, float* dfilter, float* dbias) {
  const ConvGeometry& g = e.geometry;
  if (e.ownBf16 && !onednnBf16FilterGradientAsked() &&
      src.get_desc() == activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth, dt::bf16) &&
      dy.get_desc() == activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth, dt::bf16)) {
    // both inputs plain NHWC bf16 (the conversions and the forward pass's kept copy are): our kernel, in HWIO at once
    bf16FilterGradient(g, static_cast<const uint16_t*>(src.get_data_handle()), static_cast<const uint16_t*>(dy.get_data_handle()),
                       dfilter, dbias);
    ownFilterGradients++;
    return;
  }
  memory user = wrap(e.filter->user, dfilter);
  memory target = e.filter->needsReorder ? e.filter->buffer : user;
  memory bias = dbias ? wrap(e.pd.diff_bias_desc(), dbias) : memory();
  if (e.split) {
    runSplitFilterGradient(*e.split, src, dy, target, bias);
  } else {
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_WEIGHTS, target}};
    if (dbias) args.insert({DNNL_ARG_DIFF_BIAS, bias});
    e.primitive.execute(cpuStream(), args);
  }
  if (e.filter->needsReorder) e.filter->toUser.execute(cpuStream(), e.filter->buffer, user);
  cpuStream().wait();
}

// Counts one convolution primitive run (for tests that check which precision ran).
void counted(Precision precision) {
  convRuns++;
  if (precision == Precision::Bf16) bf16Runs++;
}

}  // namespace

void convForward(const ConvGeometry& g, const float* x, const float* filter, const float* bias, float* y,
                 Activation act, float alpha, Precision precision, int64_t filterId, uint16_t* savedBf16) {
  auto& e = forwardEntry(g, bias != nullptr, act, alpha, precision);
  const auto xDesc = activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth);
  if (savedBf16 && !e.src) throw std::invalid_argument("convForward: a bf16 copy of the input is kept only in bf16");
  if (!x && !savedBf16) throw std::invalid_argument("convForward: no input (x and its bf16 copy both null)");
  // with x null the input comes converted already, in the layout every convolution here is described with
  if (!x && e.src->wanted != activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth, dt::bf16)) {
    throw std::logic_error("convForward: the primitive reads another bf16 input layout than the one given");
  }
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, !x ? memory(e.src->wanted, cpuEngine(), savedBf16)
                        : savedBf16 ? convertInto(xDesc, x, *e.src, savedBf16) : input(xDesc, x, e.src, firstInput)},
      {DNNL_ARG_WEIGHTS, filterForReading(*e.filter, filter, filterId)},
      {DNNL_ARG_DST, wrap(e.pd.dst_desc(), y)}};
  if (bias) args.insert({DNNL_ARG_BIAS, wrap(e.pd.bias_desc(), bias)});
  e.primitive.execute(cpuStream(), args);
  cpuStream().wait();
  counted(precision);
}

void convBackwardData(const ConvGeometry& g, const float* dy, const float* filter, float* dx, Precision precision,
                      int64_t filterId) {
  auto& e = backwardDataEntry(g, precision);
  const auto dyDesc = activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth);
  runBackwardData(e, input(dyDesc, dy, e.diffDst, firstInput), filter, filterId, dx);
  counted(precision);
}

void convBackwardFilter(const ConvGeometry& g, const float* x, const float* dy, float* dfilter, Precision precision) {
  auto& e = backwardFilterEntry(g, precision, false);
  const auto xDesc = activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth);
  const auto dyDesc = activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth);
  runBackwardFilter(e, input(xDesc, x, e.src, firstInput), input(dyDesc, dy, e.diffDst, secondInput), dfilter, nullptr);
  counted(precision);
}

void convBackward(const ConvGeometry& g, const float* dy, const float* filter, int64_t filterId, const float* x,
                  const uint16_t* xBf16, float* dx, float* dfilter, float* dbias, Precision precision) {
  if ((x == nullptr) == (xBf16 == nullptr)) throw std::invalid_argument("convBackward: pass the input as float32 or as its bf16 copy, not both or neither");
  if (xBf16 && precision != Precision::Bf16) throw std::invalid_argument("convBackward: a bf16 copy of the input needs precision bf16");
  auto& w = backwardFilterEntry(g, precision, dbias != nullptr);
  const auto xDesc = activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth);
  const auto dyDesc = activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth);
  // dy once, for both primitives (in bf16, one conversion where the two separate kernels made two)
  memory dyRead = input(dyDesc, dy, w.diffDst, firstInput);
  if (dx) {
    auto& d = backwardDataEntry(g, precision);
    const bool shared = !d.diffDst || d.diffDst->wanted == w.diffDst->wanted;
    runBackwardData(d, shared ? dyRead : input(dyDesc, dy, d.diffDst, thirdInput), filter, filterId, dx);
    counted(precision);
  }
  memory src;
  if (xBf16) {
    // the forward pass's copy: converted by convertInto into activationDesc(..., bf16), the layout every
    // convolution primitive here is described with
    if (w.src->wanted != activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth, dt::bf16)) {
      throw std::logic_error("convBackward: the filter gradient's primitive reads another bf16 input layout than the forward pass kept");
    }
    src = memory(w.src->wanted, cpuEngine(), const_cast<uint16_t*>(xBf16));
  } else {
    src = input(xDesc, x, w.src, secondInput);
  }
  runBackwardFilter(w, src, dyRead, dfilter, dbias);
  counted(precision);
}

void matMul(const MatMulGeometry& g, const float* a, const float* b, const float* bias, float* c,
            Activation act, float alpha, Precision precision) {
  auto& e = matMulEntry(g, bias != nullptr, act, alpha, precision);
  OneThreadScope oneThread(runsOnOneThread(g));
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, input(e.aUser, a, e.a, firstInput)},
      {DNNL_ARG_WEIGHTS, input(e.bUser, b, e.b, secondInput)},
      {DNNL_ARG_DST, wrap(e.pd.dst_desc(), c)}};
  if (bias) args.insert({DNNL_ARG_BIAS, wrap(e.pd.bias_desc(), bias)});
  e.primitive.execute(cpuStream(), args);
  cpuStream().wait();
  if (precision == Precision::Bf16) bf16Runs++;
}

std::string convImplementation(const ConvGeometry& g, int which, Precision precision) {
  if (which == 0) return forwardEntry(g, false, Activation::Linear, 0.f, precision).pd.impl_info_str();
  if (which == 1) return backwardDataEntry(g, precision).pd.impl_info_str();
  return backwardFilterEntry(g, precision, false).pd.impl_info_str();
}

std::string matMulImplementation(const MatMulGeometry& g, Precision precision) {
  return matMulEntry(g, false, Activation::Linear, 0.f, precision).pd.impl_info_str();
}

std::string effectiveIsa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

int64_t bf16Executions() { return bf16Runs; }

int64_t convExecutions() { return convRuns; }

int64_t bf16FilterGradientRuns() { return ownFilterGradients; }

void setVerbose(int level) {
  if (dnnl::set_verbose(level) != dnnl::status::success) throw std::invalid_argument("oneDNN verbose level must be 0, 1 or 2");
}

std::string onednnVersion() {
  const dnnl_version_t* v = dnnl_version();
  std::ostringstream text;
  text << v->major << '.' << v->minor << '.' << v->patch;
  return text.str();
}

void releaseFilter(int64_t filterId) {
  auto found = slotsById.find(filterId);
  if (found == slotsById.end()) return;
  for (FilterSlot* slot : found->second) keptFilters -= slot->byId.erase(filterId);
  slotsById.erase(found);
}

size_t cachedFilterCount() { return keptFilters; }

size_t cachedPrimitiveCount() {
  return forwardCache.size() + backwardDataCache.size() + backwardFilterCache.size() + matMulCache.size();
}

}  // namespace ect
