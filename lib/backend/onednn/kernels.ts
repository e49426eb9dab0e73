/** The `onednn` backend's own kernels: oneDNN convolutions / matrix products and native loops, cpu fallback otherwise. */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  ACTIVATION_CODES, BinaryCode, CompareCode, ReduceCode, UnaryCode, type ConvGeometry, type OnednnAddon,
} from './addon';
import { FloatBufferPool } from './buffer-pool';
import { matMulPrecisionCode, precisionCode } from './precision';
import {
  CONV_SAME_GRAD_KERNEL, CONV_SAME_KERNEL, type ConvSameAttrs, type ConvSameGradAttrs, DOWNSAMPLE_KERNEL, DROPOUT_MASK_KERNEL, GROUP_NORM_GRAD_KERNEL, GROUP_NORM_KERNEL, SCALED_SUM_KERNEL, UPSAMPLE_KERNEL,
  type DropoutMaskAttrs, type GroupNormAttrs,
} from '../../nn/fused';
import { EMA_UPDATE_KERNEL, MOMENT_UPDATE_KERNEL, momentCoefficientList, type MomentUpdateAttrs } from '../update-kernels';

type KernelArgs = Parameters<tf.KernelFunc>[0];
type NativeKernel = (args: KernelArgs, backend: MathBackendCPU) => tf.TensorInfo | tf.TensorInfo[] | null;

/** How often each overridden kernel ran natively or fell back to the cpu kernel (and why, first time). */
export interface KernelCounters {
  native: Record<string, number>;
  fallback: Record<string, number>;
  fallbackReasons: Record<string, string>;
}

/** Shared counters, read by tests (the native path really ran) and the bench. */
export const kernelCounters: KernelCounters = { native: {}, fallback: {}, fallbackReasons: {} };

/** Clears the counters. */
export function resetKernelCounters(): void {
  kernelCounters.native = {};
  kernelCounters.fallback = {};
  kernelCounters.fallbackReasons = {};
}

/** Where kernel outputs come from: recycled arrays of disposed tensors (see buffer-pool.ts). */
export const outputPool = new FloatBufferPool();

/** The pools whose arrays the backend recycles when their tensor is disposed: outputPool and the scratch pools in use. */
const pools = new Set<FloatBufferPool>([outputPool]);
/** The pool kernel outputs come from now: outputPool, or a scratch pool inside withOutputPool. */
let activePool = outputPool;

/** The pool that handed out `values` and has not taken it back, if any. */
export function poolOwning(values: unknown): FloatBufferPool | undefined {
  for (const pool of pools) if (pool.owns(values)) return pool;
  return undefined;
}

/**
 * Runs fn with kernel outputs taken from `pool` (a recorded training step keeps its intermediates apart: see
 * lib/train/step-replay.ts), except the parameter updates', whose outputs outlive the step: those always come from
 * outputPool. The pool stays known to the backend (its arrays are recycled on dispose) until forgetPool.
 */
export function withOutputPool<T>(pool: FloatBufferPool, fn: () => T): T {
  const previous = activePool;
  pools.add(pool);
  activePool = pool;
  try {
    return fn();
  } finally {
    activePool = previous;
  }
}

/** Stops recycling into a scratch pool (its owner dropped it); its arrays still held by tensors are then never recycled. */
export function forgetPool(pool: FloatBufferPool): void {
  if (pool !== outputPool) pools.delete(pool);
}

/** A Float32Array for a kernel output that native code overwrites completely. */
function outputFloats(length: number): Float32Array {
  return length === 0 ? new Float32Array(0) : activePool.take(length);
}

/** An output of `count` bf16 values, two per int32 element, as outputFloats takes float32 ones (an empty one outside the pool). */
function outputBf16Pairs(count: number): Int32Array {
  return count === 0 ? new Int32Array(0) : activePool.takeInt32(Math.ceil(count / 2));
}

/** outputFloats from outputPool whatever the active pool: outputs that outlive a step (parameter updates). */
function lastingFloats(length: number): Float32Array {
  return length === 0 ? new Float32Array(0) : outputPool.take(length);
}

/**
 * Identities of filter contents for the addon's reordered-filter cache. A tfjs tensor's data never changes in
 * place (a parameter update makes new data, and a variable points to it), so a data id names one content for as
 * long as the backend holds it; the backend releases the id when the data is disposed or moved (index.ts), and
 * ids are never reused, so an updated weight is never served from a stale copy.
 */
export class FilterIdentities {
  private readonly ids = new WeakMap<object, number>();
  private next = 1;
  private addon?: OnednnAddon;

  /** The addon whose cache the ids key (set when the kernels are made). */
  attach(addon: OnednnAddon): void {
    this.addon = addon;
  }

  /** The id of a filter's data, made on first use. */
  idOf(dataId: object): number {
    let id = this.ids.get(dataId);
    if (id === undefined) {
      id = this.next++;
      this.ids.set(dataId, id);
    }
    return id;
  }

  /** Forgets a data id and drops the addon's copies kept under it (the data is gone or about to change). */
  forget(dataId: object): void {
    const id = this.ids.get(dataId);
    if (id === undefined) return;
    this.ids.delete(dataId);
    this.addon?.releaseFilter(id);
  }
}

/** The backend's filter identities (one backend instance per process). */
export const filterIdentities = new FilterIdentities();

function floatValues(backend: MathBackendCPU, t: tf.TensorInfo): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const values = backend.data.get(t.dataId).values;
  return values instanceof Float32Array ? values : null;
}

function output(backend: MathBackendCPU, shape: number[], values: Float32Array): tf.TensorInfo {
  return backend.makeTensorInfo(shape, 'float32', values);
}

function convGeometry(info: tf.backend_util.Conv2DInfo): ConvGeometry {
  const p = info.padInfo;
  return [info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.outChannels,
    info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth,
    p.top, p.left, p.bottom, p.right];
}

type ConvAttrs = {
  strides: number | [number, number]; pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW'; dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
};

function conv2dNative(addon: OnednnAddon, fused: boolean): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const a = attrs as unknown as ConvAttrs & { activation?: string; leakyreluAlpha?: number };
    const { x, filter, bias } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo; bias?: tf.TensorInfo };
    if (a.dataFormat === 'NCHW') return null;
    const activation = fused ? ACTIVATION_CODES[a.activation ?? 'linear'] : 0;
    if (activation === undefined) return null;  // prelu: the cpu kernel handles it
    const xs = floatValues(backend, x), ws = floatValues(backend, filter);
    const bs = bias ? floatValues(backend, bias) : null;
    if (!xs || !ws || (bias && (!bs || bs.length !== filter.shape[3]))) return null;
    const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number], a.strides, a.dilations ?? 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
    const y = outputFloats(tf.util.sizeFromShape(info.outShape));
    addon.convForward(convGeometry(info), xs, ws, bs, y, activation, a.leakyreluAlpha ?? 0.2, precisionCode(), filterIdentities.idOf(filter.dataId));
    return output(backend, info.outShape, y);
  };
}

function conv2dBackpropInputNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const a = attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    if (a.dataFormat === 'NCHW') return null;
    const dys = floatValues(backend, dy), ws = floatValues(backend, filter);
    if (!dys || !ws) return null;
    const info = tf.backend_util.computeConv2DInfo(a.inputShape, filter.shape as [number, number, number, number],
      a.strides, 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
    const dx = outputFloats(tf.util.sizeFromShape(a.inputShape));
    addon.convBackwardData(convGeometry(info), dys, ws, dx, precisionCode(), filterIdentities.idOf(filter.dataId));
    return output(backend, a.inputShape.slice(), dx);
  };
}

/** The filter gradient of an NHWC convolution; null for NCHW or non-float32. */
function conv2dBackpropFilterNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const a = attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    if (a.dataFormat === 'NCHW') return null;
    const xs = floatValues(backend, x), dys = floatValues(backend, dy);
    if (!xs || !dys) return null;
    const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], a.filterShape,
      a.strides, 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
    const dw = outputFloats(tf.util.sizeFromShape(a.filterShape));
    addon.convBackwardFilter(convGeometry(info), xs, dys, dw, precisionCode());
    return output(backend, a.filterShape.slice(), dw);
  };
}

function matMulNative(addon: OnednnAddon, fused: boolean): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const { transposeA, transposeB, activation: act, leakyreluAlpha } =
      attrs as unknown as { transposeA: boolean; transposeB: boolean; activation?: string; leakyreluAlpha?: number };
    const { a, b, bias } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo; bias?: tf.TensorInfo };
    const activation = fused ? ACTIVATION_CODES[act ?? 'linear'] : 0;
    if (activation === undefined) return null;
    const as = floatValues(backend, a), bs = floatValues(backend, b);
    const biasValues = bias ? floatValues(backend, bias) : null;
    if (!as || !bs || a.shape.length < 2 || b.shape.length < 2) return null;
    const ra = a.shape.length, rb = b.shape.length;
    const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
    const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
    if (k !== kB) return null;  // the cpu kernel raises tfjs's own error message
    // The bias must broadcast along the last axis only (one value per output column).
    if (bias && (!biasValues || biasValues.length !== n || bias.shape[bias.shape.length - 1] !== n)) return null;
    const batchShape = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2)), batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
    const batch = tf.util.sizeFromShape(batchShape);
    if (!(batchA === batchB || batchA === 1 || batchB === 1) || batch !== Math.max(batchA, batchB)) return null;
    const c = k > 0 ? outputFloats(batch * m * n) : new Float32Array(batch * m * n);
    if (c.length > 0 && k > 0) {
      addon.matMul([batchA, batchB, m, k, n, transposeA ? 1 : 0, transposeB ? 1 : 0], as, bs, biasValues, c, activation, leakyreluAlpha ?? 0.2,
        matMulPrecisionCode());
    } else if (c.length > 0 && biasValues) {
      return null;  // empty inner dimension: leave it to the cpu kernel
    }
    return output(backend, [...batchShape, m, n], c);
  };
}

function binaryNative(addon: OnednnAddon, op: BinaryCode): NativeKernel {
  return ({ inputs }, backend) => {
    const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const as = floatValues(backend, a), bs = floatValues(backend, b);
    if (!as || !bs) return null;
    const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const out = outputFloats(tf.util.sizeFromShape(shape));
    if (out.length > 0) addon.binary(op, as, a.shape, bs, b.shape, out, shape);
    return output(backend, shape, out);
  };
}

function compareNative(addon: OnednnAddon, op: CompareCode): NativeKernel {
  return ({ inputs }, backend) => {
    const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const as = floatValues(backend, a), bs = floatValues(backend, b);
    if (!as || !bs) return null;
    const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const out = new Uint8Array(tf.util.sizeFromShape(shape));
    if (out.length > 0) addon.compare(op, as, a.shape, bs, b.shape, out, shape);
    return backend.makeTensorInfo(shape, 'bool', out);
  };
}

/** tf.where(condition, t, e) where all three have one shape (other shapes: the cpu kernel). */
function selectNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs }, backend) => {
    const { condition, t, e } = inputs as { condition: tf.TensorInfo; t: tf.TensorInfo; e: tf.TensorInfo };
    const ts = floatValues(backend, t), es = floatValues(backend, e);
    const cs = condition.dtype === 'bool' ? backend.data.get(condition.dataId).values : null;
    if (!ts || !es || !(cs instanceof Uint8Array) || !tf.util.arraysEqual(condition.shape, t.shape) || !tf.util.arraysEqual(t.shape, e.shape)) return null;
    const out = outputFloats(ts.length);
    if (out.length > 0) addon.select(cs, ts, es, out);
    return output(backend, t.shape.slice(), out);
  };
}

/** isNaN(x) as x != x (true only for NaN). */
function isNanNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs }, backend) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const xs = floatValues(backend, x);
    if (!xs) return null;
    const out = new Uint8Array(xs.length);
    if (out.length > 0) addon.compare(CompareCode.NotEqual, xs, [xs.length], xs, [xs.length], out, [xs.length]);
    return backend.makeTensorInfo(x.shape.slice(), 'bool', out);
  };
}

function unaryNative(addon: OnednnAddon, op: UnaryCode): NativeKernel {
  return ({ inputs }, backend) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const xs = floatValues(backend, x);
    if (!xs) return null;
    const out = outputFloats(xs.length);
    addon.unary(op, xs, out, 0);
    return output(backend, x.shape.slice(), out);
  };
}

function reduceNative(addon: OnednnAddon, op: ReduceCode, axisAttr: 'axis' | 'reductionIndices'): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const xs = floatValues(backend, x);
    if (!xs) return null;
    const a = attrs as unknown as Record<string, number | number[] | boolean>;
    const axes = tf.util.parseAxisParam(a[axisAttr] as number | number[], x.shape);
    if ((op === ReduceCode.Max || op === ReduceCode.Min) && xs.length === 0) return null;
    const keptShape = x.shape.filter((_, i) => !axes.includes(i));
    const outShape = a.keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : keptShape;
    const out = outputFloats(tf.util.sizeFromShape(keptShape));
    addon.reduce(op, xs, x.shape, axes, out);
    return output(backend, outShape, out);
  };
}

function transposeNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const { perm } = attrs as unknown as { perm: number[] };
    const xs = floatValues(backend, x);
    if (!xs) return null;
    const out = outputFloats(xs.length);
    addon.transpose(xs, x.shape, perm, out);
    return output(backend, perm.map((p) => x.shape[p]), out);
  };
}

/** Copies the box [begin, begin + size) of x into a new tensor of shape `size`. */
function sliceBox(addon: OnednnAddon, backend: MathBackendCPU, x: tf.TensorInfo, xs: Float32Array, begin: number[], size: number[]): tf.TensorInfo {
  const out = outputFloats(tf.util.sizeFromShape(size));
  if (out.length > 0) addon.slice(xs, x.shape, begin, size, out);
  return output(backend, size, out);
}

function sliceNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const { begin, size } = attrs as unknown as { begin: number | number[]; size: number | number[] };
    const xs = floatValues(backend, x);
    if (!xs) return null;
    const [from, extent] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
    return sliceBox(addon, backend, x, xs, from, extent);
  };
}

function splitNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const { numOrSizeSplits, axis } = attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
    const xs = floatValues(backend, x);
    if (!xs) return null;
    const $axis = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, $axis);
    const begin = new Array(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = x.shape.slice();
      size[$axis] = s;
      const piece = sliceBox(addon, backend, x, xs, begin.slice(), size);
      begin[$axis] += s;
      return piece;
    });
  };
}

function unpackNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const { value } = inputs as { value: tf.TensorInfo };
    const { axis } = attrs as unknown as { axis: number };
    const xs = floatValues(backend, value);
    if (!xs) return null;
    const $axis = axis < 0 ? axis + value.shape.length : axis;
    const size = value.shape.slice();
    size[$axis] = 1;
    const outShape = value.shape.filter((_, i) => i !== $axis);
    const begin = new Array(value.shape.length).fill(0);
    return Array.from({ length: value.shape[$axis] }, (_, i) => {
      begin[$axis] = i;
      const out = outputFloats(tf.util.sizeFromShape(outShape));
      if (out.length > 0) addon.slice(xs, value.shape, begin, size, out);
      return output(backend, outShape, out);
    });
  };
}

/** Writes each input into its box of a new tensor: concat (stack = false) or stack (stack = true) along `axis`. */
function joinNative(addon: OnednnAddon, stack: boolean): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const parts = inputs as unknown as tf.TensorInfo[];
    const values = parts.map((t) => floatValues(backend, t));
    if (parts.length === 0 || values.some((v) => !v)) return null;
    const rank = parts[0].shape.length;
    const { axis } = attrs as unknown as { axis: number | number[] };
    const first = Array.isArray(axis) ? axis[0] : axis;
    const $axis = stack ? (first < 0 ? first + rank + 1 : first) : tf.util.parseAxisParam(first, parts[0].shape)[0];
    const boxes = parts.map((t) => (stack ? [...t.shape.slice(0, $axis), 1, ...t.shape.slice($axis)] : t.shape.slice()));
    if (boxes.some((box) => box.length !== boxes[0].length || box.some((d, i) => i !== $axis && d !== boxes[0][i]))) return null;
    const outShape = boxes[0].slice();
    outShape[$axis] = boxes.reduce((sum, box) => sum + box[$axis], 0);
    const out = outputFloats(tf.util.sizeFromShape(outShape));
    const begin = new Array(outShape.length).fill(0);
    boxes.forEach((box, i) => {
      if (tf.util.sizeFromShape(box) > 0) addon.insert(out, outShape, begin, values[i] as Float32Array, box);
      begin[$axis] += box[$axis];
    });
    return output(backend, outShape, out);
  };
}

function softmaxNative(addon: OnednnAddon): NativeKernel {
  return ({ inputs, attrs }, backend) => {
    const { logits } = inputs as { logits: tf.TensorInfo };
    const { dim } = attrs as unknown as { dim: number };
    const xs = floatValues(backend, logits);
    const rank = logits.shape.length;
    if (!xs || rank === 0 || (dim !== -1 && dim !== rank - 1)) return null;
    const cols = logits.shape[rank - 1];
    const out = outputFloats(xs.length);
    if (xs.length > 0) addon.softmax(xs, xs.length / cols, cols, out);
    return output(backend, logits.shape.slice(), out);
  };
}

/** The Float32Array values of each input of one of our own kernels, or an error naming the kernel. */
function floatInputs(backend: MathBackendCPU, kernel: string, tensors: tf.TensorInfo[]): Float32Array[] {
  const values = tensors.map((t) => floatValues(backend, t));
  if (values.some((v) => !v)) throw new Error(`${kernel}: float32 inputs only`);
  return values as Float32Array[];
}

/**
 * The inputs name<i> (i < count) of a kernel over many parameters, per name: the tensors and their float32 values,
 * each i's of one shape across the names (lib/backend/update-kernels.ts indexedInputs), or an error naming the kernel.
 */
function indexedLists(backend: MathBackendCPU, kernel: string, inputs: KernelArgs['inputs'], names: string[], count: number) {
  const named = inputs as Record<string, tf.TensorInfo | undefined>;
  if (!Number.isInteger(count) || count < 0) throw new Error(`${kernel}: count must be an integer >= 0, got ${count}`);
  return names.map((name) => {
    const tensors = Array.from({ length: count }, (_, i) => {
      const t = named[`${name}${i}`];
      if (!t) throw new Error(`${kernel}: missing input ${name}${i} of ${count}`);
      if (!tf.util.arraysEqual(t.shape, named[`${names[0]}${i}`]!.shape)) {
        throw new Error(`${kernel}: ${name}${i} has shape [${t.shape}], ${names[0]}${i} has [${named[`${names[0]}${i}`]!.shape}]`);
      }
      return t;
    });
    return { tensors, values: floatInputs(backend, kernel, tensors) };
  });
}

/** One of our own kernels: the backend as the cpu backend it is, and each native run counted. */
function ownKernel(kernelName: string, body: (args: KernelArgs, backend: MathBackendCPU) => tf.TensorInfo | tf.TensorInfo[]) {
  const kernelFunc: tf.KernelFunc = (args) => {
    const result = body(args, args.backend as MathBackendCPU);
    kernelCounters.native[kernelName] = (kernelCounters.native[kernelName] ?? 0) + 1;
    return result;
  };
  return { kernelName, kernelFunc };
}

/** The inputs of the fused GroupNorm kernels, checked: float32 NHWC x, [C] gamma/beta, optional [B, C] shift and mask like x. */
function groupNormInputs(backend: MathBackendCPU, inputs: KernelArgs['inputs'], attrs: GroupNormAttrs) {
  const { x, gamma, beta, shift, mask } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo; shift?: tf.TensorInfo; mask?: tf.TensorInfo };
  if (x.shape.length !== 4) throw new Error(`${GROUP_NORM_KERNEL}: x must be [B, H, W, C], got [${x.shape}]`);
  const [b, h, w, c] = x.shape;
  if (gamma.shape.join() !== `${c}` || beta.shape.join() !== `${c}`) {
    throw new Error(`${GROUP_NORM_KERNEL}: gamma and beta must be [${c}], got [${gamma.shape}] and [${beta.shape}]`);
  }
  if (shift && shift.shape.join() !== `${b},${c}`) throw new Error(`${GROUP_NORM_KERNEL}: shift must be [${b}, ${c}], got [${shift.shape}]`);
  if (mask && !tf.util.arraysEqual(mask.shape, x.shape)) throw new Error(`${GROUP_NORM_KERNEL}: mask must be shaped like x [${x.shape}], got [${mask.shape}]`);
  const [xs, gs, bs] = floatInputs(backend, GROUP_NORM_KERNEL, [x, gamma, beta]);
  const [ss, ms] = [shift, mask].map((t) => (t ? floatInputs(backend, GROUP_NORM_KERNEL, [t])[0] : null));
  return { shape: [b, h * w, c, attrs.groups], x, xs, gs, bs, ss, ms, b, c };
}

/** The values of an int32 tensor holding the bf16 values of `shape`, two per element, their count checked. */
function bf16Pairs(backend: MathBackendCPU, kernel: string, t: tf.TensorInfo, shape: number[] | undefined): Int32Array {
  if (!shape) throw new Error(`${kernel}: an int32 (bf16) input needs attrs.inputShape`);
  const pairs = backend.data.get(t.dataId).values as Int32Array;
  const count = tf.util.sizeFromShape(shape);
  if (pairs.length !== Math.ceil(count / 2)) throw new Error(`${kernel}: the bf16 input holds ${pairs.length * 2} values, want ${count} ([${shape}])`);
  return pairs;
}

/** The geometry of a stride-1 'same' NHWC convolution with an HWIO filter and a [Cout] bias, the shapes checked. */
function convSameInfo(xShape: number[], filterShape: number[], biasShape: number[]): tf.backend_util.Conv2DInfo {
  if (xShape.length !== 4 || filterShape.length !== 4 || xShape[3] !== filterShape[2] || biasShape.join() !== `${filterShape[3]}`) {
    throw new Error(`${CONV_SAME_KERNEL}: x [B, H, W, Cin], filter [kH, kW, Cin, Cout] and bias [Cout] expected, got [${xShape}], [${filterShape}], [${biasShape}]`);
  }
  return tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number], filterShape as [number, number, number, number],
    1, 1, 'same', undefined, false, 'channelsLast');
}

/** Kernels of our own ops on the addon: fused GroupNorm, scaled sum, dropout mask and resampling (lib/nn/fused.ts), the parameter updates (lib/backend/update-kernels.ts). */
export function fusedKernels(addon: OnednnAddon): Array<{ kernelName: string; kernelFunc: tf.KernelFunc }> {
  const resample = (kernelName: string, down: boolean) => ownKernel(kernelName, ({ inputs, attrs }, cpu) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const xs = floatValues(cpu, x);
    if (!xs || x.shape.length !== 4) throw new Error(`${kernelName}: float32 [B, H, W, C] input only, got ${x.dtype} [${x.shape}]`);
    const [b, h, w, c] = x.shape;
    if (down && (h % 2 || w % 2)) throw new Error(`${kernelName}: height and width must be even, got ${h}x${w}`);
    const outShape = down ? [b, h / 2, w / 2, c] : [b, 2 * h, 2 * w, c];
    const out = outputFloats(tf.util.sizeFromShape(outShape));
    const scale = (attrs as unknown as { scale: number }).scale;
    if (out.length > 0) (down ? addon.downsample2x : addon.upsample2x)(xs, x.shape, scale, out);
    return output(cpu, outShape, out);
  });
  return [
    ownKernel(GROUP_NORM_KERNEL, ({ inputs, attrs }, cpu) => {
      const a = attrs as unknown as GroupNormAttrs;
      const { shape, x, xs, gs, bs, ss, ms, b, c } = groupNormInputs(cpu, inputs, a);
      // y as float32 shaped like x, or (bf16Output) its bfloat16 values, two per int32 element, flat
      const y = a.bf16Output ? outputBf16Pairs(xs.length) : outputFloats(xs.length);
      const stats = a.withStats ? new Float32Array(b * 2 * c) : null;
      if (xs.length > 0) addon.groupNormForward(shape, xs, ss, ms, gs, bs, a.eps, a.silu, y, stats);
      const out = y instanceof Int32Array ? cpu.makeTensorInfo([y.length], 'int32', y) : output(cpu, x.shape.slice(), y);
      return stats ? [out, output(cpu, [b, 2, c], stats)] : out;
    }),
    ownKernel(GROUP_NORM_GRAD_KERNEL, ({ inputs, attrs }, cpu) => {
      const a = attrs as unknown as GroupNormAttrs;
      const { shape, x, xs, gs, bs, ss, ms, b, c } = groupNormInputs(cpu, inputs, a);
      const dy = floatValues(cpu, (inputs as { dy: tf.TensorInfo }).dy);
      if (!dy || dy.length !== xs.length) throw new Error(`${GROUP_NORM_GRAD_KERNEL}: dy must be float32 and shaped like x`);
      const dx = outputFloats(xs.length);
      // dgamma / dbeta / dshift are fully written by the addon even for an empty batch
      const dgamma = new Float32Array(c), dbeta = new Float32Array(c);
      const dshift = ss ? new Float32Array(b * c) : null;
      const { stats } = inputs as { stats?: tf.TensorInfo };
      if (stats && stats.shape.join() !== `${b},2,${c}`) throw new Error(`${GROUP_NORM_GRAD_KERNEL}: stats must be [${b}, 2, ${c}], got [${stats.shape}]`);
      const statValues = stats ? floatInputs(cpu, GROUP_NORM_GRAD_KERNEL, [stats])[0] : null;
      addon.groupNormBackward(shape, dy, xs, ss, ms, gs, bs, a.eps, a.silu, dx, dgamma, dbeta, dshift, statValues);
      const grads = [output(cpu, x.shape.slice(), dx), output(cpu, [c], dgamma), output(cpu, [c], dbeta)];
      if (dshift) grads.push(output(cpu, [b, c], dshift));
      return grads;
    }),
    ownKernel(CONV_SAME_KERNEL, ({ inputs, attrs }, cpu) => {
      const { x, filter, bias } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo; bias: tf.TensorInfo };
      const { forBackward, inputShape } = attrs as unknown as ConvSameAttrs;
      // x as float32, or (int32) its bf16 values already made by GroupNorm's bf16Output, inputShape's values two per element
      const given = x.dtype === 'int32' ? bf16Pairs(cpu, CONV_SAME_KERNEL, x, inputShape) : null;
      if (given && precisionCode() !== 1) throw new Error(`${CONV_SAME_KERNEL}: an int32 (bf16) input needs precision bf16`);
      const info = convSameInfo(given ? inputShape! : x.shape, filter.shape, bias.shape);
      const [ws, bs] = floatInputs(cpu, CONV_SAME_KERNEL, [filter, bias]);
      const xs = given ? null : floatInputs(cpu, CONV_SAME_KERNEL, [x])[0];
      const y = outputFloats(tf.util.sizeFromShape(info.outShape));
      // in bf16 under a tape, a float32 x is kept as the bf16 copy the primitive reads (half the bytes of x); else x itself
      const copy = xs && precisionCode() === 1 && forBackward ? outputBf16Pairs(xs.length) : null;
      if (y.length > 0) addon.convForward(convGeometry(info), xs, ws, bs, y, 0, 0, precisionCode(), filterIdentities.idOf(filter.dataId), given ?? copy);
      if (copy) return [output(cpu, info.outShape, y), cpu.makeTensorInfo([copy.length], 'int32', copy)];
      cpu.incRef(x.dataId);
      return [output(cpu, info.outShape, y), { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype }];
    }),
    ownKernel(CONV_SAME_GRAD_KERNEL, ({ inputs, attrs }, cpu) => {
      const { dy, filter, saved } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo; saved: tf.TensorInfo };
      const { inputShape } = attrs as unknown as ConvSameGradAttrs;
      const cout = filter.shape[3];
      const info = convSameInfo(inputShape, filter.shape, [cout]);
      if (!tf.util.arraysEqual(dy.shape, info.outShape)) throw new Error(`${CONV_SAME_GRAD_KERNEL}: dy must be [${info.outShape}], got [${dy.shape}]`);
      const [dys, ws] = floatInputs(cpu, CONV_SAME_GRAD_KERNEL, [dy, filter]);
      const inputSize = tf.util.sizeFromShape(inputShape);
      const dx = outputFloats(inputSize), dfilter = outputFloats(ws.length), dbias = outputFloats(cout);
      // the forward kept either x itself or, in bf16, its bf16 copy (two values per int32 element)
      const pairs = saved.dtype === 'int32' ? bf16Pairs(cpu, CONV_SAME_GRAD_KERNEL, saved, inputShape) : null;
      if (!pairs && !tf.util.arraysEqual(saved.shape, inputShape)) throw new Error(`${CONV_SAME_GRAD_KERNEL}: the saved input must be [${inputShape}], got [${saved.shape}]`);
      const xs = pairs ? null : floatInputs(cpu, CONV_SAME_GRAD_KERNEL, [saved])[0];
      if (inputSize > 0) {
        addon.convBackward(convGeometry(info), dys, ws, filterIdentities.idOf(filter.dataId), xs, pairs, dx, dfilter, dbias, pairs ? 1 : precisionCode());
      } else {
        dfilter.fill(0);
        dbias.fill(0);
      }
      return [output(cpu, inputShape.slice(), dx), output(cpu, filter.shape.slice(), dfilter), output(cpu, [cout], dbias)];
    }),
    ownKernel(SCALED_SUM_KERNEL, ({ inputs, attrs }, cpu) => {
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      if (!tf.util.arraysEqual(a.shape, b.shape)) throw new Error(`${SCALED_SUM_KERNEL}: inputs must have one shape, got [${a.shape}] and [${b.shape}]`);
      const [as, bs] = floatInputs(cpu, SCALED_SUM_KERNEL, [a, b]);
      const out = outputFloats(as.length);
      if (out.length > 0) addon.scaledSum(as, bs, (attrs as unknown as { scale: number }).scale, out);
      return output(cpu, a.shape.slice(), out);
    }),
    ownKernel(DROPOUT_MASK_KERNEL, ({ attrs }, cpu) => {
      const { seed, keep, shape } = attrs as unknown as DropoutMaskAttrs;
      const out = outputFloats(tf.util.sizeFromShape(shape));
      if (out.length > 0) addon.dropoutMask(seed, keep, 1 / keep, out);
      return output(cpu, shape.slice(), out);
    }),
    resample(DOWNSAMPLE_KERNEL, true),
    resample(UPSAMPLE_KERNEL, false),
    ownKernel(MOMENT_UPDATE_KERNEL, ({ inputs, attrs }, cpu) => {
      const a = attrs as unknown as MomentUpdateAttrs;
      const [params, ...rest] = indexedLists(cpu, MOMENT_UPDATE_KERNEL, inputs, ['param', 'grad', 'm', 'v'], a.count);
      const outs = [0, 1, 2].map(() => params.values.map((theta) => lastingFloats(theta.length)));
      addon.momentUpdate(momentCoefficientList(a),
        params.values, rest[0].values, rest[1].values, rest[2].values, outs[0], outs[1], outs[2]);
      return outs.flatMap((list) => list.map((values, i) => output(cpu, params.tensors[i].shape.slice(), values)));
    }),
    ownKernel(EMA_UPDATE_KERNEL, ({ inputs, attrs }, cpu) => {
      const a = attrs as unknown as { beta: number; count: number };
      const [averages, params] = indexedLists(cpu, EMA_UPDATE_KERNEL, inputs, ['average', 'param'], a.count);
      const nexts = averages.values.map((current) => lastingFloats(current.length));
      addon.emaUpdate(a.beta, averages.values, params.values, nexts);
      return nexts.map((values, i) => output(cpu, averages.tensors[i].shape.slice(), values));
    }),
  ];
}

/** Native implementations by tfjs kernel name. Each returns null when it does not handle the case. */
export function nativeKernels(addon: OnednnAddon): Record<string, NativeKernel> {
  filterIdentities.attach(addon);
  outputPool.placeWith(addon);
  return {
    [tf.Conv2D]: conv2dNative(addon, false),
    [tf.FusedConv2D]: conv2dNative(addon, true),
    [tf.Conv2DBackpropInput]: conv2dBackpropInputNative(addon),
    [tf.Conv2DBackpropFilter]: conv2dBackpropFilterNative(addon),
    [tf.BatchMatMul]: matMulNative(addon, false),
    [tf._FusedMatMul]: matMulNative(addon, true),
    [tf.Add]: binaryNative(addon, BinaryCode.Add),
    [tf.Sub]: binaryNative(addon, BinaryCode.Sub),
    [tf.Multiply]: binaryNative(addon, BinaryCode.Mul),
    [tf.RealDiv]: binaryNative(addon, BinaryCode.Div),
    [tf.SquaredDifference]: binaryNative(addon, BinaryCode.SquaredDifference),
    [tf.Maximum]: binaryNative(addon, BinaryCode.Maximum),
    [tf.Minimum]: binaryNative(addon, BinaryCode.Minimum),
    [tf.Sigmoid]: unaryNative(addon, UnaryCode.Sigmoid),
    [tf.Exp]: unaryNative(addon, UnaryCode.Exp),
    [tf.Neg]: unaryNative(addon, UnaryCode.Neg),
    [tf.Square]: unaryNative(addon, UnaryCode.Square),
    [tf.Rsqrt]: unaryNative(addon, UnaryCode.Rsqrt),
    [tf.Sqrt]: unaryNative(addon, UnaryCode.Sqrt),
    [tf.Relu]: unaryNative(addon, UnaryCode.Relu),
    [tf.Log]: unaryNative(addon, UnaryCode.Log),
    [tf.Abs]: unaryNative(addon, UnaryCode.Abs),
    [tf.Tanh]: unaryNative(addon, UnaryCode.Tanh),
    [tf.Reciprocal]: unaryNative(addon, UnaryCode.Reciprocal),
    [tf.Sum]: reduceNative(addon, ReduceCode.Sum, 'axis'),
    [tf.Mean]: reduceNative(addon, ReduceCode.Mean, 'axis'),
    [tf.Max]: reduceNative(addon, ReduceCode.Max, 'reductionIndices'),
    [tf.Min]: reduceNative(addon, ReduceCode.Min, 'axis'),
    [tf.Transpose]: transposeNative(addon),
    [tf.Softmax]: softmaxNative(addon),
    [tf.Slice]: sliceNative(addon),
    [tf.Concat]: joinNative(addon, false),
    [tf.Pack]: joinNative(addon, true),
    [tf.Less]: compareNative(addon, CompareCode.Less),
    [tf.LessEqual]: compareNative(addon, CompareCode.LessEqual),
    [tf.Greater]: compareNative(addon, CompareCode.Greater),
    [tf.GreaterEqual]: compareNative(addon, CompareCode.GreaterEqual),
    [tf.Equal]: compareNative(addon, CompareCode.Equal),
    [tf.NotEqual]: compareNative(addon, CompareCode.NotEqual),
    [tf.Select]: selectNative(addon),
    [tf.IsNan]: isNanNative(addon),
    [tf.SplitV]: splitNative(addon),
    [tf.Unpack]: unpackNative(addon),
  };
}

/**
 * Wraps a native kernel so that unhandled cases (other dtypes, NCHW, prelu, ...) and native errors run
 * the cpu kernel instead, counting both paths.
 */
export function withCpuFallback(name: string, native: NativeKernel, cpuKernel: tf.KernelFunc): tf.KernelFunc {
  // tfjs types kernel results as TensorInfo | TensorInfo[], the same union native kernels return.
  return (args) => {
    const backend = args.backend as MathBackendCPU;
    let reason = 'case not handled natively (dtype, layout or activation)';
    try {
      const result = native(args, backend);
      if (result) {
        kernelCounters.native[name] = (kernelCounters.native[name] ?? 0) + 1;
        return result;
      }
    } catch (error) {
      reason = (error as Error).message;
    }
    kernelCounters.fallback[name] = (kernelCounters.fallback[name] ?? 0) + 1;
    kernelCounters.fallbackReasons[name] ??= reason;
    return cpuKernel(args);
  };
}
