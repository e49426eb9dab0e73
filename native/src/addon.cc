// Node-API entry points of the oneDNN addon: unpack typed arrays (no copies) and call the kernels.
#include <napi.h>

#include <stdexcept>
#include <string>

#include "cpu_loops.h"
#include "group_norm.h"
#include "updates.h"
#include "onednn_ops.h"
#include "peak_probe.h"

namespace {

// Pointer to a Float32Array's elements (honours its byte offset), or null for null/undefined.
const float* floatsOrNull(const Napi::Value& value) {
  if (value.IsNull() || value.IsUndefined()) return nullptr;
  return value.As<Napi::Float32Array>().Data();
}

float* floats(const Napi::Value& value) { return value.As<Napi::Float32Array>().Data(); }

int64_t integerAt(const Napi::Array& list, uint32_t index) {
  return list.Get(index).As<Napi::Number>().Int64Value();
}

// Checks that the arguments at `positions` are Float32Arrays (or, with `orNull`, null or undefined); throws a
// JavaScript TypeError naming the first that is not.
bool checkFloatArrays(const Napi::CallbackInfo& info, std::initializer_list<int> positions, bool orNull = false) {
  for (int p : positions) {
    if (orNull && (info[p].IsNull() || info[p].IsUndefined())) continue;
    if (!info[p].IsTypedArray() || info[p].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      Napi::TypeError::New(info.Env(), "argument " + std::to_string(p) + " must be a Float32Array")
          .ThrowAsJavaScriptException();
      return false;
    }
  }
  return true;
}

// geometry: [batch, inH, inW, inC, outH, outW, outC, kH, kW, strideH, strideW, dilH, dilW, top, left, bottom, right]
ect::ConvGeometry convGeometry(const Napi::Value& value) {
  Napi::Array list = value.As<Napi::Array>();
  ect::ConvGeometry g;
  int64_t* fields[] = {&g.batch, &g.inHeight, &g.inWidth, &g.inChannels, &g.outHeight, &g.outWidth,
                       &g.outChannels, &g.filterHeight, &g.filterWidth, &g.strideHeight, &g.strideWidth,
                       &g.dilationHeight, &g.dilationWidth, &g.padTop, &g.padLeft, &g.padBottom, &g.padRight};
  for (uint32_t i = 0; i < 17; i++) *fields[i] = integerAt(list, i);
  return g;
}

// An optional trailing precision argument: 0 (or absent) float32, 1 bf16 inputs (onednn_ops.h Precision).
ect::Precision precisionAt(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return ect::Precision::Fp32;
  const int32_t code = info[index].As<Napi::Number>().Int32Value();
  if (code != 0 && code != 1) throw std::invalid_argument("precision must be 0 (float32) or 1 (bf16), got " + std::to_string(code));
  return static_cast<ect::Precision>(code);
}

// Runs a kernel, turning oneDNN / std exceptions into JavaScript errors.
template <typename Body>
Napi::Value guarded(const Napi::CallbackInfo& info, Body body) {
  try {
    body();
  } catch (const std::exception& error) {
    Napi::Error::New(info.Env(), std::string("onednn addon: ") + error.what()).ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

// convForward(geometry, x, filter, bias|null, y, activation, alpha, precision?)
// The optional filter identity at `index`: 0 (absent) means the filter is reordered afresh (onednn_ops.h).
int64_t filterIdAt(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return 0;
  const int64_t id = info[index].As<Napi::Number>().Int64Value();
  if (id < 0) throw std::invalid_argument("filter id must be 0 or positive, got " + std::to_string(id));
  return id;
}

// A bf16 copy's storage: an Int32Array holding two bfloat16 values per element, of at least `count` values; null
// for null/undefined.
uint16_t* bf16PairsOrNull(const Napi::Value& value, int64_t count) {
  if (value.IsNull() || value.IsUndefined()) return nullptr;
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw std::invalid_argument("a bf16 copy must be an Int32Array (two bfloat16 values per element)");
  }
  auto pairs = value.As<Napi::Int32Array>();
  if (static_cast<int64_t>(pairs.ElementLength()) * 2 < count) {
    throw std::invalid_argument("a bf16 copy of " + std::to_string(count) + " values needs " + std::to_string((count + 1) / 2) +
                                " Int32Array elements, got " + std::to_string(pairs.ElementLength()));
  }
  return reinterpret_cast<uint16_t*>(pairs.Data());
}

int64_t inputSize(const ect::ConvGeometry& g) { return g.batch * g.inHeight * g.inWidth * g.inChannels; }

// convForward(geometry, x|null, filter, bias|null, y, activation, alpha, precision?, filterId?, savedBf16?): with x
// null, savedBf16 already holds the input in bf16 (a kernel wrote it so) and is read, not written
Napi::Value ConvForward(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {2, 4}) || !checkFloatArrays(info, {1}, true)) return info.Env().Undefined();
  return guarded(info, [&] {
    const auto g = convGeometry(info[0]);
    ect::convForward(g, floatsOrNull(info[1]), floats(info[2]), floatsOrNull(info[3]), floats(info[4]),
                     static_cast<ect::Activation>(info[5].As<Napi::Number>().Int32Value()),
                     info[6].As<Napi::Number>().FloatValue(), precisionAt(info, 7), filterIdAt(info, 8),
                     info.Length() > 9 ? bf16PairsOrNull(info[9], inputSize(g)) : nullptr);
  });
}

// convBackward(geometry, dy, filter, filterId, x|null, xBf16|null, dx|null, dfilter, dbias|null, precision)
Napi::Value ConvBackward(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 2, 7}) || !checkFloatArrays(info, {4, 6, 8}, true)) return info.Env().Undefined();
  return guarded(info, [&] {
    const auto g = convGeometry(info[0]);
    ect::convBackward(g, floats(info[1]), floats(info[2]), filterIdAt(info, 3), floatsOrNull(info[4]),
                      bf16PairsOrNull(info[5], inputSize(g)), const_cast<float*>(floatsOrNull(info[6])), floats(info[7]),
                      const_cast<float*>(floatsOrNull(info[8])), precisionAt(info, 9));
  });
}

// convBackwardData(geometry, dy, filter, dx, precision?, filterId?)
Napi::Value ConvBackwardData(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 2, 3})) return info.Env().Undefined();
  return guarded(info, [&] {
    ect::convBackwardData(convGeometry(info[0]), floats(info[1]), floats(info[2]), floats(info[3]), precisionAt(info, 4),
                          filterIdAt(info, 5));
  });
}

// convBackwardFilter(geometry, x, dy, dfilter, precision?)
Napi::Value ConvBackwardFilter(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 2, 3})) return info.Env().Undefined();
  return guarded(info, [&] {
    ect::convBackwardFilter(convGeometry(info[0]), floats(info[1]), floats(info[2]), floats(info[3]), precisionAt(info, 4));
  });
}

ect::MatMulGeometry matMulGeometry(const Napi::Value& value) {
  Napi::Array list = value.As<Napi::Array>();
  return {integerAt(list, 0), integerAt(list, 1), integerAt(list, 2), integerAt(list, 3),
          integerAt(list, 4), integerAt(list, 5) != 0, integerAt(list, 6) != 0};
}

// matMul([batchA, batchB, m, k, n, transposeA, transposeB], a, b, bias|null, c, activation, alpha, precision?)
Napi::Value MatMul(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 2, 4})) return info.Env().Undefined();
  return guarded(info, [&] {
    ect::matMul(matMulGeometry(info[0]), floats(info[1]), floats(info[2]), floatsOrNull(info[3]), floats(info[4]),
                static_cast<ect::Activation>(info[5].As<Napi::Number>().Int32Value()),
                info[6].As<Napi::Number>().FloatValue(), precisionAt(info, 7));
  });
}

// convImplementation(geometry, which: 0 forward, 1 backward data, 2 backward filter, precision?) -> oneDNN's implementation name
Napi::Value ConvImplementation(const Napi::CallbackInfo& info) {
  std::string name;
  guarded(info, [&] {
    name = ect::convImplementation(convGeometry(info[0]), info[1].As<Napi::Number>().Int32Value(), precisionAt(info, 2));
  });
  return Napi::String::New(info.Env(), name);
}

// matMulImplementation(geometry, precision?) -> oneDNN's implementation name
Napi::Value MatMulImplementation(const Napi::CallbackInfo& info) {
  std::string name;
  guarded(info, [&] { name = ect::matMulImplementation(matMulGeometry(info[0]), precisionAt(info, 1)); });
  return Napi::String::New(info.Env(), name);
}

Napi::Value EffectiveIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), ect::effectiveIsa()); }

// setVerbose(level): oneDNN's verbose log level (0, 1 or 2)
Napi::Value SetVerbose(const Napi::CallbackInfo& info) {
  return guarded(info, [&] { ect::setVerbose(info[0].As<Napi::Number>().Int32Value()); });
}

Napi::Value Bf16Executions(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ect::bf16Executions()));
}

Napi::Value ConvExecutions(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ect::convExecutions()));
}

Napi::Value Bf16FilterGradientRuns(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ect::bf16FilterGradientRuns()));
}

std::vector<int64_t> shapeOf(const Napi::Value& value) {
  Napi::Array list = value.As<Napi::Array>();
  std::vector<int64_t> shape(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) shape[i] = integerAt(list, i);
  return shape;
}

// binary(op, a, aShape, b, bShape, out, outShape): broadcasting elementwise op (cpu_loops.h BinaryOp)
Napi::Value Binary(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 3, 5})) return info.Env().Undefined();
  return guarded(info, [&] {
    ect::binary(static_cast<ect::BinaryOp>(info[0].As<Napi::Number>().Int32Value()), floats(info[1]), shapeOf(info[2]),
                floats(info[3]), shapeOf(info[4]), floats(info[5]), shapeOf(info[6]));
  });
}

// compare(op, a, aShape, b, bShape, out: Uint8Array, outShape)
Napi::Value Compare(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 3})) return info.Env().Undefined();
  return guarded(info, [&] {
    ect::compare(static_cast<ect::CompareOp>(info[0].As<Napi::Number>().Int32Value()), floats(info[1]), shapeOf(info[2]),
                 floats(info[3]), shapeOf(info[4]), info[5].As<Napi::Uint8Array>().Data(), shapeOf(info[6]));
  });
}

// unary(op, x, y, alpha): elementwise op over the whole array (cpu_loops.h UnaryOp)
Napi::Value Unary(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 2})) return info.Env().Undefined();
  return guarded(info, [&] {
    auto x = info[1].As<Napi::Float32Array>();
    ect::unary(static_cast<ect::UnaryOp>(info[0].As<Napi::Number>().Int32Value()), x.Data(), floats(info[2]),
               static_cast<int64_t>(x.ElementLength()), info[3].As<Napi::Number>().FloatValue());
  });
}

// select(condition: Uint8Array, a, b, out): out = condition ? a : b, arrays of one length
Napi::Value Select(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 2, 3})) return info.Env().Undefined();
  return guarded(info, [&] {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw std::invalid_argument("select: the condition must be a Uint8Array");
    }
    auto condition = info[0].As<Napi::Uint8Array>();
    const auto n = static_cast<int64_t>(condition.ElementLength());
    for (int p : {1, 2, 3}) {
      if (static_cast<int64_t>(info[p].As<Napi::Float32Array>().ElementLength()) != n) throw std::invalid_argument("select: arrays differ in length");
    }
    ect::select(condition.Data(), floats(info[1]), floats(info[2]), floats(info[3]), n);
  });
}

// scaledSum(a, b, scale, out): out = (a + b) * scale, arrays of one length
Napi::Value ScaledSum(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {0, 1, 3})) return info.Env().Undefined();
  return guarded(info, [&] {
    const auto n = static_cast<int64_t>(info[0].As<Napi::Float32Array>().ElementLength());
    if (static_cast<int64_t>(info[1].As<Napi::Float32Array>().ElementLength()) != n ||
        static_cast<int64_t>(info[3].As<Napi::Float32Array>().ElementLength()) != n) {
      throw std::invalid_argument("scaledSum: arrays differ in length");
    }
    ect::scaledSum(floats(info[0]), floats(info[1]), info[2].As<Napi::Number>().FloatValue(), floats(info[3]), n);
  });
}

// dropoutMask(seed, keep, scale, out): out[i] = scale where hashUniform(seed, i) < keep, else 0 (cpu_loops.h)
Napi::Value DropoutMask(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {3})) return info.Env().Undefined();
  return guarded(info, [&] {
    auto out = info[3].As<Napi::Float32Array>();
    ect::dropoutMask(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().DoubleValue(),
                     info[2].As<Napi::Number>().FloatValue(), out.Data(), static_cast<int64_t>(out.ElementLength()));
  });
}

// reduce(op, x, shape, axes, out): sum / mean / max / min over the given axes (cpu_loops.h ReduceOp)
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 4})) return info.Env().Undefined();
  return guarded(info, [&] {
    ect::reduce(static_cast<ect::ReduceOp>(info[0].As<Napi::Number>().Int32Value()), floats(info[1]), shapeOf(info[2]),
                shapeOf(info[3]), floats(info[4]));
  });
}

// transpose(x, shape, perm, out)
Napi::Value Transpose(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {0, 3})) return info.Env().Undefined();
  return guarded(info, [&] { ect::transpose(floats(info[0]), shapeOf(info[1]), shapeOf(info[2]), floats(info[3])); });
}

// slice(x, shape, begin, size, out)
Napi::Value Slice(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {0, 4})) return info.Env().Undefined();
  return guarded(info, [&] { ect::slice(floats(info[0]), shapeOf(info[1]), shapeOf(info[2]), shapeOf(info[3]), floats(info[4])); });
}

// insert(out, outShape, begin, x, size)
Napi::Value Insert(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {0, 3})) return info.Env().Undefined();
  return guarded(info, [&] { ect::insert(floats(info[0]), shapeOf(info[1]), shapeOf(info[2]), floats(info[3]), shapeOf(info[4])); });
}

// softmax(x, rows, cols, out): softmax over the last axis
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {0, 3})) return info.Env().Undefined();
  return guarded(info, [&] {
    ect::softmax(floats(info[0]), info[1].As<Napi::Number>().Int64Value(), info[2].As<Napi::Number>().Int64Value(),
                 floats(info[3]));
  });
}

// [batch, pixels, channels, groups] of a fused GroupNorm
ect::GroupNormShape groupNormShape(const Napi::Value& value) {
  Napi::Array list = value.As<Napi::Array>();
  return {integerAt(list, 0), integerAt(list, 1), integerAt(list, 2), integerAt(list, 3)};
}

// groupNormForward(shape, x, shift|null, mask|null, gamma, beta, eps, silu, y, stats|null): y a Float32Array, or an
// Int32Array for y in bfloat16 (two values per element)
Napi::Value GroupNormForward(const Napi::CallbackInfo& info) {
  const bool bf16Output = info[8].IsTypedArray() && info[8].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array;
  if (!checkFloatArrays(info, {1, 4, 5}) || (!bf16Output && !checkFloatArrays(info, {8}))) return info.Env().Undefined();
  return guarded(info, [&] {
    const auto shape = groupNormShape(info[0]);
    ect::groupNormForward(shape, floats(info[1]), floatsOrNull(info[2]), floatsOrNull(info[3]),
                          floats(info[4]), floats(info[5]), info[6].As<Napi::Number>().FloatValue(),
                          info[7].As<Napi::Boolean>().Value(), bf16Output ? nullptr : floats(info[8]),
                          const_cast<float*>(floatsOrNull(info[9])),
                          bf16Output ? bf16PairsOrNull(info[8], shape.batch * shape.pixels * shape.channels) : nullptr);
  });
}

// groupNormBackward(shape, dy, x, shift|null, mask|null, gamma, beta, eps, silu, dx, dgamma, dbeta, dshift|null, stats|null)
Napi::Value GroupNormBackward(const Napi::CallbackInfo& info) {
  if (!checkFloatArrays(info, {1, 2, 5, 6, 9, 10, 11})) return info.Env().Undefined();
  return guarded(info, [&] {
    ect::groupNormBackward(groupNormShape(info[0]), floats(info[1]), floats(info[2]), floatsOrNull(info[3]),
                           floatsOrNull(info[4]), floats(info[5]), floats(info[6]), info[7].As<Napi::Number>().FloatValue(),
                           info[8].As<Napi::Boolean>().Value(), floats(info[9]), floats(info[10]), floats(info[11]),
                           const_cast<float*>(floatsOrNull(info[12])), floatsOrNull(info[13]));
  });
}

// The Float32Arrays of a JavaScript array argument (checkSameLengths compares the lists with each other).
std::vector<Napi::Float32Array> floatList(const Napi::CallbackInfo& info, size_t index, const char* kernel, const char* what) {
  if (!info[index].IsArray()) throw std::invalid_argument(std::string(kernel) + ": " + what + " must be an array of Float32Arrays");
  Napi::Array list = info[index].As<Napi::Array>();
  std::vector<Napi::Float32Array> arrays;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value item = list.Get(i);
    if (!item.IsTypedArray() || item.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw std::invalid_argument(std::string(kernel) + ": " + what + "[" + std::to_string(i) + "] is not a Float32Array");
    }
    arrays.push_back(item.As<Napi::Float32Array>());
  }
  return arrays;
}

// Checks that every list has as many arrays as `first` and each array the length of its counterpart there.
void checkSameLengths(const char* kernel, const std::vector<Napi::Float32Array>& first,
                      std::initializer_list<const std::vector<Napi::Float32Array>*> others) {
  for (const auto* list : others) {
    if (list->size() != first.size()) throw std::invalid_argument(std::string(kernel) + ": argument lists differ in length");
    for (size_t i = 0; i < first.size(); i++) {
      if ((*list)[i].ElementLength() != first[i].ElementLength()) {
        throw std::invalid_argument(std::string(kernel) + ": arrays of parameter " + std::to_string(i) + " differ in length");
      }
    }
  }
}

// momentUpdate([beta1, beta2, eps, momentumScale, sqrtVScale, adaptive, infReplacement], thetas, gs, ms, vs,
//              newThetas, newMs, newVs): one Float32Array per parameter in each list
Napi::Value MomentUpdate(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    Napi::Array k = info[0].As<Napi::Array>();
    auto at = [&](uint32_t i) { return k.Get(i).As<Napi::Number>().DoubleValue(); };
    const ect::MomentCoefficients c{at(0), at(1), at(2), at(3), at(4), at(5) != 0};
    const char* names[] = {"thetas", "gs", "ms", "vs", "newThetas", "newMs", "newVs"};
    std::vector<std::vector<Napi::Float32Array>> lists;
    for (size_t p = 0; p < 7; p++) lists.push_back(floatList(info, p + 1, "momentUpdate", names[p]));
    checkSameLengths("momentUpdate", lists[0], {&lists[1], &lists[2], &lists[3], &lists[4], &lists[5], &lists[6]});
    std::vector<ect::MomentSlot> slots;
    for (size_t i = 0; i < lists[0].size(); i++) {
      slots.push_back({static_cast<int64_t>(lists[0][i].ElementLength()), lists[0][i].Data(), lists[1][i].Data(),
                       lists[2][i].Data(), lists[3][i].Data(), lists[4][i].Data(), lists[5][i].Data(), lists[6][i].Data()});
    }
    ect::momentUpdate(c, at(6), slots);
  });
}

// emaUpdate(beta, currents, targets, nexts): one Float32Array per average in each list
Napi::Value EmaUpdate(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    auto currents = floatList(info, 1, "emaUpdate", "currents");
    auto targets = floatList(info, 2, "emaUpdate", "targets");
    auto nexts = floatList(info, 3, "emaUpdate", "nexts");
    checkSameLengths("emaUpdate", currents, {&targets, &nexts});
    std::vector<ect::EmaSlot> slots;
    for (size_t i = 0; i < currents.size(); i++) {
      slots.push_back({static_cast<int64_t>(currents[i].ElementLength()), currents[i].Data(), targets[i].Data(), nexts[i].Data()});
    }
    ect::emaUpdate(info[0].As<Napi::Number>().DoubleValue(), slots);
  });
}

// The arrays of a list argument as spans.
std::vector<ect::FloatSpan> floatSpans(const Napi::CallbackInfo& info, const char* kernel) {
  std::vector<ect::FloatSpan> spans;
  for (const auto& a : floatList(info, 0, kernel, "arrays")) spans.push_back({a.Data(), static_cast<int64_t>(a.ElementLength())});
  return spans;
}

// sumOfSquares(arrays) -> the sum of the squares of their elements, in double
Napi::Value SumOfSquares(const Napi::CallbackInfo& info) {
  double sum = 0;
  guarded(info, [&] { sum = ect::sumOfSquares(floatSpans(info, "sumOfSquares")); });
  return Napi::Number::New(info.Env(), sum);
}

// firstNonFinite(arrays) -> the index of the first array holding a NaN or an infinity, or -1
Napi::Value FirstNonFinite(const Napi::CallbackInfo& info) {
  int64_t index = -1;
  guarded(info, [&] { index = ect::firstNonFinite(floatSpans(info, "firstNonFinite")); });
  return Napi::Number::New(info.Env(), static_cast<double>(index));
}

// downsample2x / upsample2x(x, [batch, height, width, channels] of x, scale, out)
Napi::Value Resample(const Napi::CallbackInfo& info, bool down) {
  if (!checkFloatArrays(info, {0, 3})) return info.Env().Undefined();
  return guarded(info, [&] {
    const std::vector<int64_t> s = shapeOf(info[1]);
    if (s.size() != 4) throw std::invalid_argument("resample: shape must be [batch, height, width, channels]");
    const int64_t size = s[0] * s[1] * s[2] * s[3];
    const int64_t outSize = down ? size / 4 : size * 4;
    if (static_cast<int64_t>(info[0].As<Napi::Float32Array>().ElementLength()) != size ||
        static_cast<int64_t>(info[3].As<Napi::Float32Array>().ElementLength()) != outSize) {
      throw std::invalid_argument("resample: array lengths do not match the shape");
    }
    const float scale = info[2].As<Napi::Number>().FloatValue();
    if (down) ect::downsample2x(floats(info[0]), s[0], s[1], s[2], s[3], scale, floats(info[3]));
    else ect::upsample2x(floats(info[0]), s[0], s[1], s[2], s[3], scale, floats(info[3]));
  });
}
Napi::Value Downsample2x(const Napi::CallbackInfo& info) { return Resample(info, true); }
Napi::Value Upsample2x(const Napi::CallbackInfo& info) { return Resample(info, false); }

Napi::Value Version(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), ect::onednnVersion()); }

// releaseFilter(id): drops the reordered copies of a filter whose tensor is gone
Napi::Value ReleaseFilter(const Napi::CallbackInfo& info) {
  return guarded(info, [&] { ect::releaseFilter(filterIdAt(info, 0)); });
}

Napi::Value CachedFilters(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ect::cachedFilterCount()));
}

Napi::Value CachedPrimitives(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ect::cachedPrimitiveCount()));
}

Napi::Value Threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ect::threadCount()); }

// addressOffset(typedArray, alignment) -> the address of its first element modulo alignment (a power of two), so that
// the output pool can place its blocks on cache-line boundaries of the real addresses
Napi::Value AddressOffset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "addressOffset(typedArray, alignment)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const auto array = info[0].As<Napi::TypedArray>();
  const auto alignment = static_cast<uintptr_t>(info[1].As<Napi::Number>().Int64Value());
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    Napi::RangeError::New(env, "addressOffset: the alignment must be a power of two").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const auto address = reinterpret_cast<uintptr_t>(array.ArrayBuffer().Data()) + array.ByteOffset();
  return Napi::Number::New(env, static_cast<double>(address & (alignment - 1)));
}

// measureFmaRate(precision, threads, seconds, repeats) -> { gflops, seconds, kernel, threads }
Napi::Value MeasureFmaRate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "measureFmaRate(precision, threads, seconds, repeats)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const ect::FmaRate rate = ect::measureFmaRate(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value(),
                                                info[2].As<Napi::Number>().DoubleValue(), info[3].As<Napi::Number>().Int32Value());
  Napi::Object out = Napi::Object::New(env);
  out.Set("gflops", rate.gflops);
  out.Set("seconds", rate.seconds);
  out.Set("kernel", rate.kernel);
  out.Set("threads", rate.threads);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("convForward", Napi::Function::New(env, ConvForward));
  exports.Set("convBackwardData", Napi::Function::New(env, ConvBackwardData));
  exports.Set("convBackwardFilter", Napi::Function::New(env, ConvBackwardFilter));
  exports.Set("convBackward", Napi::Function::New(env, ConvBackward));
  exports.Set("matMul", Napi::Function::New(env, MatMul));
  exports.Set("convImplementation", Napi::Function::New(env, ConvImplementation));
  exports.Set("matMulImplementation", Napi::Function::New(env, MatMulImplementation));
  exports.Set("effectiveIsa", Napi::Function::New(env, EffectiveIsa));
  exports.Set("bf16Executions", Napi::Function::New(env, Bf16Executions));
  exports.Set("convExecutions", Napi::Function::New(env, ConvExecutions));
  exports.Set("bf16FilterGradientRuns", Napi::Function::New(env, Bf16FilterGradientRuns));
  exports.Set("setVerbose", Napi::Function::New(env, SetVerbose));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("scaledSum", Napi::Function::New(env, ScaledSum));
  exports.Set("dropoutMask", Napi::Function::New(env, DropoutMask));
  exports.Set("reduce", Napi::Function::New(env, Reduce));
  exports.Set("transpose", Napi::Function::New(env, Transpose));
  exports.Set("slice", Napi::Function::New(env, Slice));
  exports.Set("insert", Napi::Function::New(env, Insert));
  exports.Set("compare", Napi::Function::New(env, Compare));
  exports.Set("select", Napi::Function::New(env, Select));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("groupNormForward", Napi::Function::New(env, GroupNormForward));
  exports.Set("groupNormBackward", Napi::Function::New(env, GroupNormBackward));
  exports.Set("downsample2x", Napi::Function::New(env, Downsample2x));
  exports.Set("upsample2x", Napi::Function::New(env, Upsample2x));
  exports.Set("momentUpdate", Napi::Function::New(env, MomentUpdate));
  exports.Set("emaUpdate", Napi::Function::New(env, EmaUpdate));
  exports.Set("version", Napi::Function::New(env, Version));
  exports.Set("releaseFilter", Napi::Function::New(env, ReleaseFilter));
  exports.Set("cachedFilters", Napi::Function::New(env, CachedFilters));
  exports.Set("cachedPrimitives", Napi::Function::New(env, CachedPrimitives));
  exports.Set("threads", Napi::Function::New(env, Threads));
  exports.Set("sumOfSquares", Napi::Function::New(env, SumOfSquares));
  exports.Set("firstNonFinite", Napi::Function::New(env, FirstNonFinite));
  exports.Set("addressOffset", Napi::Function::New(env, AddressOffset));
  exports.Set("measureFmaRate", Napi::Function::New(env, MeasureFmaRate));
  return exports;
}

}  // namespace

NODE_API_MODULE(ect_onednn, Init)
