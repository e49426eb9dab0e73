// oneDNN convolutions and matrix products on TensorFlow's NHWC / HWIO memory, with primitives cached by shape.
#include "onednn_ops.h"

#include <algorithm>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

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

// oneDNN names dimensions in logical NCHW / OIHW order whatever the memory layout.
memory::desc activationDesc(int64_t n, int64_t c, int64_t h, int64_t w) {
  return memory::desc({n, c, h, w}, dt::f32, tag::nhwc);
}
memory::desc filterDesc(const ConvGeometry& g, tag layout) {
  return memory::desc({g.outChannels, g.inChannels, g.filterHeight, g.filterWidth}, dt::f32, layout);
}
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

// Forward descriptor; also the "hint" the backward primitives are built from.
dnnl::convolution_forward::primitive_desc forwardPd(const ConvGeometry& g, bool withBias, Activation act, float alpha) {
  auto src = activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth);
  auto dst = activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth);
  auto weights = filterDesc(g, tag::any);  // let oneDNN pick its blocked filter layout; we reorder into it
  auto bias = memory::desc({g.outChannels}, dt::f32, tag::a);
  auto desc = withBias
      ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm::convolution_direct, src, weights,
                                        bias, dst, strides(g), dilations(g), padBefore(g), padAfter(g))
      : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm::convolution_direct, src, weights,
                                        dst, strides(g), dilations(g), padBefore(g), padAfter(g));
  return dnnl::convolution_forward::primitive_desc(desc, activationAttr(act, alpha), cpuEngine());
}

// A filter in TensorFlow's HWIO layout and, when the primitive wants another layout, its reordered copy.
struct FilterSlot {
  memory::desc user;
  memory::desc internal;
  bool needsReorder = false;
  dnnl::reorder toInternal, toUser;
  memory buffer;  // internal-layout storage, owned by the cache entry

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
};

struct ConvBackwardFilterEntry {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights primitive;
  std::unique_ptr<FilterSlot> filter;
};

struct MatMulEntry {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul primitive;
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
};
Cache<ConvForwardCached> forwardCache;

ConvForwardCached& forwardEntry(const ConvGeometry& g, bool withBias, Activation act, float alpha) {
  std::ostringstream key;
  key << geometryKey(g) << withBias << ',' << static_cast<int>(act) << ',' << alpha;
  auto& slot = forwardCache[key.str()];
  if (!slot) {
    auto pd = forwardPd(g, withBias, act, alpha);
    slot.reset(new ConvForwardCached{pd, dnnl::convolution_forward(pd),
                                     std::make_unique<FilterSlot>(g, pd.weights_desc(), true)});
  }
  return *slot;
}

ConvBackwardDataEntry& backwardDataEntry(const ConvGeometry& g) {
  auto& slot = backwardDataCache[geometryKey(g)];
  if (!slot) {
    auto hint = forwardPd(g, false, Activation::Linear, 0.f);
    dnnl::convolution_backward_data::desc desc(
        algorithm::convolution_direct, activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth),
        filterDesc(g, tag::any), activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth), strides(g),
        dilations(g), padBefore(g), padAfter(g));
    dnnl::convolution_backward_data::primitive_desc pd(desc, cpuEngine(), hint);
    slot.reset(new ConvBackwardDataEntry{pd, dnnl::convolution_backward_data(pd),
                                         std::make_unique<FilterSlot>(g, pd.weights_desc(), true)});
  }
  return *slot;
}

ConvBackwardFilterEntry& backwardFilterEntry(const ConvGeometry& g) {
  auto& slot = backwardFilterCache[geometryKey(g)];
  if (!slot) {
    auto hint = forwardPd(g, false, Activation::Linear, 0.f);
    dnnl::convolution_backward_weights::desc desc(
        algorithm::convolution_direct, activationDesc(g.batch, g.inChannels, g.inHeight, g.inWidth),
        filterDesc(g, tag::any), activationDesc(g.batch, g.outChannels, g.outHeight, g.outWidth), strides(g),
        dilations(g), padBefore(g), padAfter(g));
    dnnl::convolution_backward_weights::primitive_desc pd(desc, cpuEngine(), hint);
    slot.reset(new ConvBackwardFilterEntry{pd, dnnl::convolution_backward_weights(pd),
                                           std::make_unique<FilterSlot>(g, pd.diff_weights_desc(), false)});
  }
  return *slot;
}

// The filter memory a primitive reads: the user's buffer itself, or its reordered copy.
memory filterForReading(FilterSlot& slot, const float* filter) {
  memory user(slot.user, cpuEngine(), const_cast<float*>(filter));
  if (!slot.needsReorder) return user;
  slot.toInternal.execute(cpuStream(), user, slot.buffer);
  return slot.buffer;
}

memory wrap(const memory::desc& desc, const float* data) {
  return memory(desc, cpuEngine(), const_cast<float*>(data));
}

}  // namespace

void convForward(const ConvGeometry& g, const float* x, const float* filter, const float* bias, float* y,
                 Activation act, float alpha) {
  auto& e = forwardEntry(g, bias != nullptr, act, alpha);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, wrap(e.pd.src_desc(), x)},
      {DNNL_ARG_WEIGHTS, filterForReading(*e.filter, filter)},
      {DNNL_ARG_DST, wrap(e.pd.dst_desc(), y)}};
  if (bias) args.insert({DNNL_ARG_BIAS, wrap(e.pd.bias_desc(), bias)});
  e.primitive.execute(cpuStream(), args);
  cpuStream().wait();
}

void convBackwardData(const ConvGeometry& g, const float* dy, const float* filter, float* dx) {
  auto& e = backwardDataEntry(g);
  e.primitive.execute(cpuStream(), {{DNNL_ARG_DIFF_DST, wrap(e.pd.diff_dst_desc(), dy)},
                                    {DNNL_ARG_WEIGHTS, filterForReading(*e.filter, filter)},
                                    {DNNL_ARG_DIFF_SRC, wrap(e.pd.diff_src_desc(), dx)}});
  cpuStream().wait();
}

void convBackwardFilter(const ConvGeometry& g, const float* x, const float* dy, float* dfilter) {
  auto& e = backwardFilterEntry(g);
  memory user = wrap(e.filter->user, dfilter);
  memory target = e.filter->needsReorder ? e.filter->buffer : user;
  e.primitive.execute(cpuStream(), {{DNNL_ARG_SRC, wrap(e.pd.src_desc(), x)},
                                    {DNNL_ARG_DIFF_DST, wrap(e.pd.diff_dst_desc(), dy)},
                                    {DNNL_ARG_DIFF_WEIGHTS, target}});
  if (e.filter->needsReorder) e.filter->toUser.execute(cpuStream(), e.filter->buffer, user);
  cpuStream().wait();
}

void matMul(const MatMulGeometry& g, const float* a, const float* b, const float* bias, float* c,
            Activation act, float alpha) {
  std::ostringstream key;
  key << g.batchA << ',' << g.batchB << ',' << g.m << ',' << g.k << ',' << g.n << ',' << g.transposeA << ','
      << g.transposeB << ',' << (bias != nullptr) << ',' << static_cast<int>(act) << ',' << alpha;
  auto& slot = matMulCache[key.str()];
  const int64_t batch = std::max(g.batchA, g.batchB);
  if (!slot) {
    // Transposed operands are described by their strides, so no data moves.
    memory::desc aDesc({g.batchA, g.m, g.k}, dt::f32,
                       g.transposeA ? memory::dims{g.m * g.k, 1, g.m} : memory::dims{g.m * g.k, g.k, 1});
    memory::desc bDesc({g.batchB, g.k, g.n}, dt::f32,
                       g.transposeB ? memory::dims{g.k * g.n, 1, g.k} : memory::dims{g.k * g.n, g.n, 1});
    memory::desc cDesc({batch, g.m, g.n}, dt::f32, memory::dims{g.m * g.n, g.n, 1});
    memory::desc biasDesc({1, 1, g.n}, dt::f32, memory::dims{g.n, g.n, 1});
    auto desc = bias ? dnnl::matmul::desc(aDesc, bDesc, biasDesc, cDesc) : dnnl::matmul::desc(aDesc, bDesc, cDesc);
    dnnl::matmul::primitive_desc pd(desc, activationAttr(act, alpha), cpuEngine());
    slot.reset(new MatMulEntry{pd, dnnl::matmul(pd)});
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, wrap(slot->pd.src_desc(), a)},
                                       {DNNL_ARG_WEIGHTS, wrap(slot->pd.weights_desc(), b)},
                                       {DNNL_ARG_DST, wrap(slot->pd.dst_desc(), c)}};
  if (bias) args.insert({DNNL_ARG_BIAS, wrap(slot->pd.bias_desc(), bias)});
  slot->primitive.execute(cpuStream(), args);
  cpuStream().wait();
}

std::string convImplementation(const ConvGeometry& g, int which) {
  if (which == 0) return forwardEntry(g, false, Activation::Linear, 0.f).pd.impl_info_str();
  if (which == 1) return backwardDataEntry(g).pd.impl_info_str();
  return backwardFilterEntry(g).pd.impl_info_str();
}

std::string onednnVersion() {
  const dnnl_version_t* v = dnnl_version();
  std::ostringstream text;
  text << v->major << '.' << v->minor << '.' << v->patch;
  return text.str();
}

size_t cachedPrimitiveCount() {
  return forwardCache.size() + backwardDataCache.size() + backwardFilterCache.size() + matMulCache.size();
}

}  // namespace ect
