/**
 * Fused GroupNorm: y = act(GroupNorm(x + shift)) * mask as one kernel forward and one backward, for backends that
 * register the kernels below (the `onednn` backend does, lib/backend/onednn/kernels.ts). Elsewhere the layers
 * compose the same function from tfjs ops (lib/nn/layers.ts groupNorm), so results agree across backends.
 */
import * as tf from '@tensorflow/tfjs-core';
import { currentPrecision, withPrecision } from './precision';

/**
 * Forward kernel: inputs x [B, H, W, C], gamma [C], beta [C], optional shift [B, C] and mask like x; output y like x,
 * and with attrs.withStats also the statistics [B, 2, C] (per sample and channel: the group mean minus the shift, and
 * 1 / sqrt(variance + eps)) for the backward kernel.
 */
export const GROUP_NORM_KERNEL = 'EctGroupNorm';
/**
 * Backward kernel: inputs dy, x, gamma, beta, optional shift, mask and the forward's stats (read instead of computed
 * again); outputs dx, dgamma, dbeta (and dshift with a shift).
 */
export const GROUP_NORM_GRAD_KERNEL = 'EctGroupNormGrad';

/** Attributes of both kernels. */
export interface GroupNormAttrs {
  groups: number;     // channels split into this many equal, contiguous groups
  eps: number;        // added to each group's variance
  silu: boolean;      // SiLU after the affine map (else identity)
  withStats?: boolean; // forward: also output the statistics for the backward kernel
  bf16Output?: boolean; // forward: y as bfloat16, two values per int32 element, flat (a bf16 convolution's input; onednn)
}

/** Whether the active backend has the fused kernels (then groupNorm in layers.ts uses them). */
export function hasFusedGroupNorm(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(GROUP_NORM_KERNEL, backend) !== undefined && tf.getKernel(GROUP_NORM_GRAD_KERNEL, backend) !== undefined;
}

/** The forward kernel's output y (float32, or its bf16 pairs with attrs.bf16Output) and its statistics for backward. */
function runGroupNorm(inputs: tf.NamedTensorMap, attrs: GroupNormAttrs): [tf.Tensor, tf.Tensor] {
  return tf.engine().runKernel(GROUP_NORM_KERNEL, inputs, { ...attrs, withStats: true } as unknown as tf.NamedAttrMap) as [tf.Tensor4D, tf.Tensor];
}

function runGroupNormGrad(inputs: tf.NamedTensorMap, attrs: GroupNormAttrs): tf.Tensor[] {
  return tf.engine().runKernel(GROUP_NORM_GRAD_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
}

/**
 * act(GroupNorm(x + shift)) * mask with the fused kernels and their gradient (dx, dgamma, dbeta, dshift).
 * `shift` is one value per sample and channel, added at every pixel; `mask` (a dropout mask, shaped like x) is a
 * constant: it is not an input of the op's gradient and gets none. Call only when hasFusedGroupNorm().
 */
export function fusedGroupNorm(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, attrs: GroupNormAttrs, shift?: tf.Tensor2D,
  mask?: tf.Tensor): tf.Tensor4D {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const inputs = args as tf.Tensor[];
    const [y, stats] = runGroupNorm(named(inputs, mask), attrs);
    // the mask and the statistics are saved with the inputs (so they outlive the caller's tidy until backward) but
    // are not inputs of the op: they get no gradient
    save([...inputs, ...(mask ? [mask] : []), stats]);
    return {
      value: y,
      // one backward kernel gives every input's gradient, in input order
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        runGroupNormGrad({ dy, ...named(saved.slice(0, inputs.length), mask && saved[inputs.length]), stats: saved[saved.length - 1] }, attrs),
    };
  });
  return (shift ? op(x, gamma, beta, shift) : op(x, gamma, beta)) as tf.Tensor4D;
}

const INPUT_NAMES = ['x', 'gamma', 'beta', 'shift'];

/** GroupNorm's kernel inputs by name: x, gamma, beta and, when given, shift (in that order), and the mask. */
function named(tensors: tf.Tensor[], mask?: tf.Tensor): tf.NamedTensorMap {
  return { ...Object.fromEntries(tensors.map((t, i) => [INPUT_NAMES[i], t])), ...(mask ? { mask } : {}) };
}

/** Whether a gradient tape records the op about to run (read before the op: inside a customGrad tfjs records nothing). */
function tapeIsRecording(): boolean {
  return (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
}

/**
 * Dropout mask kernel: no inputs; attrs seed, keep and shape; output float32 of that shape, 1 / keep where
 * hashUniform(seed, i) < keep and 0 elsewhere: DropoutMasks.mask's loop (lib/nn/layers.ts), run natively.
 */
export const DROPOUT_MASK_KERNEL = 'EctDropoutMask';
export interface DropoutMaskAttrs { seed: number; keep: number; shape: number[] }

/** The mask from the backend's kernel, or null when the backend has none (then the caller runs the loop). */
export function fusedDropoutMask(attrs: DropoutMaskAttrs): tf.Tensor | null {
  if (tf.getKernel(DROPOUT_MASK_KERNEL, tf.getBackend()) === undefined) return null;
  return tf.engine().runKernel(DROPOUT_MASK_KERNEL, {}, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/** Scaled sum, y = (a + b) * scale, for inputs of one shape (a residual connection and its scale). */
export const SCALED_SUM_KERNEL = 'EctScaledSum';

/** Whether the active backend has the scaled-sum kernel (then scaledSum uses it). */
export function hasFusedScaledSum(): boolean {
  return tf.getKernel(SCALED_SUM_KERNEL, tf.getBackend()) !== undefined;
}

/**
 * (a + b) * scale. With the kernel, one pass forward and one product backward (both inputs get dy * scale);
 * elsewhere, or when the shapes or dtypes differ, tfjs's Add and Multiply. Both round the sum to float32 before
 * the product, so the two paths give the same values.
 */
export function scaledSum<T extends tf.Tensor>(a: T, b: tf.Tensor, scale: number): T {
  if (!hasFusedScaledSum() || a.dtype !== 'float32' || b.dtype !== 'float32' || !tf.util.arraysEqual(a.shape, b.shape)) {
    return tf.mul(tf.add(a, b), scale);
  }
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.engine().runKernel(SCALED_SUM_KERNEL, { a: args[0] as tf.Tensor, b: args[1] as tf.Tensor }, { scale } as unknown as tf.NamedAttrMap) as tf.Tensor,
    // the two gradients are the same values: the second is a view (clone) so each can be disposed on its own
    gradFunc: (dy: tf.Tensor) => {
      const g = tf.mul(dy, scale);
      return [g, tf.clone(g)];
    },
  }));
  return op(a, b) as T;
}

/** 2x2 block sums times `scale` (0.25: average pooling), NHWC with even sizes: [B, H, W, C] -> [B, H/2, W/2, C]. */
export const DOWNSAMPLE_KERNEL = 'EctDownsample2x';
/** Nearest-neighbour x2 times `scale`, NHWC: [B, H, W, C] -> [B, 2H, 2W, C]. */
export const UPSAMPLE_KERNEL = 'EctUpsample2x';

/** Whether the active backend has both resampling kernels (then layers.ts uses them). */
export function hasFusedResample(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(DOWNSAMPLE_KERNEL, backend) !== undefined && tf.getKernel(UPSAMPLE_KERNEL, backend) !== undefined;
}

function resample(kernel: string, x: tf.Tensor, scale: number): tf.Tensor4D {
  return tf.engine().runKernel(kernel, { x }, { scale } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/** 2x2 average pooling with the kernels; its gradient spreads dy / 4 over each block. Call only when hasFusedResample(). */
export function fusedDownsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const op = tf.customGrad((xi: tf.Tensor | tf.GradSaveFunc) => ({
    value: resample(DOWNSAMPLE_KERNEL, xi as tf.Tensor, 0.25),
    gradFunc: (dy: tf.Tensor) => resample(UPSAMPLE_KERNEL, dy, 0.25),
  }));
  return op(x) as tf.Tensor4D;
}

/** Nearest-neighbour x2 upsampling with the kernels; its gradient sums dy over each block. Call only when hasFusedResample(). */
export function fusedUpsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const op = tf.customGrad((xi: tf.Tensor | tf.GradSaveFunc) => ({
    value: resample(UPSAMPLE_KERNEL, xi as tf.Tensor, 1),
    gradFunc: (dy: tf.Tensor) => resample(DOWNSAMPLE_KERNEL, dy, 1),
  }));
  return op(x) as tf.Tensor4D;
}

/**
 * A stride-1 'same' convolution with its bias, NHWC, HWIO filter: inputs x, filter, bias [Cout]; attrs ConvSameAttrs;
 * outputs y and what backward reads in place of x. A backend may return x itself or, when a gradient will be taken
 * (attrs.forBackward), a cheaper copy of it (the onednn backend in bf16: the bf16 copy its primitive read, two values
 * per int32 element, half the bytes of x). The onednn backend in bf16 also takes x as that bf16 copy already made
 * (int32, with attrs.inputShape), and then keeps x itself.
 */
export const CONV_SAME_KERNEL = 'EctConv2DSame';
export interface ConvSameAttrs {
  forBackward: boolean;
  inputShape?: number[];  // x's shape when x comes as int32 (its bfloat16 values, two per element: fusedGroupNormConv)
}
/**
 * Its gradient: inputs dy, filter and the forward's second output (saved); attrs inputShape; outputs dx, dfilter and
 * dbias, from one kernel.
 */
export const CONV_SAME_GRAD_KERNEL = 'EctConv2DSameGrad';
export interface ConvSameGradAttrs { inputShape: number[] }

/** Whether the active backend has both kernels (then layers.ts convolves with fusedConv2dSame). */
export function hasFusedConvSame(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(CONV_SAME_KERNEL, backend) !== undefined && tf.getKernel(CONV_SAME_GRAD_KERNEL, backend) !== undefined;
}

/**
 * Whether 1x1 convolutions should run as the fused convolution kernels rather than as one matrix product: on the
 * onednn backend in bf16, where the convolution reads bf16 inputs and its backward makes dx, dfilter and dbias in one
 * call (measured on a Zen 5 with avx512_bf16, 2 threads, batch 64: fwd+bwd of a 28x28 64->64 1x1 convolution 2.7 ms
 * against 5.3 ms as float32 matrix products; docs/benchmarks.md). In float32 the products are as fast or faster
 * (4.8 against 5.9 ms there), so float32 runs keep them, and their numbers.
 */
export function oneByOneAsConvolution(): boolean {
  return currentPrecision() === 'bf16' && hasFusedConvSame();
}

/**
 * A stride-1 'same' convolution with its bias, NHWC, as two kernels: forward, and backward every gradient at once
 * (tf.fused.conv2d runs three kernels backward and a separate sum over dy for the bias, and keeps its output as well as
 * x for backward). What backward reads of x is the forward kernel's choice (CONV_SAME_KERNEL). Call only when
 * hasFusedConvSame().
 */
export function fusedConv2dSame(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor): tf.Tensor4D {
  // sampling (no tape) needs no copy of x for backward
  const forBackward = tapeIsRecording();
  // backward runs in the precision the forward ran in (a layer kept in float32 stays float32 both ways)
  const precision = currentPrecision();
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [xi, fi, bi] = args as tf.Tensor[];
    const attrs: ConvSameAttrs = { forBackward };
    const [y, input] = tf.engine().runKernel(CONV_SAME_KERNEL, { x: xi, filter: fi, bias: bi }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    save([input, fi]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => withPrecision(precision, () => runConvSameGrad(dy, saved[1], saved[0], xi.shape)),
    };
  });
  return op(x, filter, bias) as tf.Tensor4D;
}

/** The convolution's three gradients [dx, dfilter, dbias] from what its forward kernel kept of x. */
function runConvSameGrad(dy: tf.Tensor, filter: tf.Tensor, saved: tf.Tensor, inputShape: number[]): tf.Tensor[] {
  return tf.engine().runKernel(CONV_SAME_GRAD_KERNEL, { dy, filter, saved }, { inputShape } as unknown as tf.NamedAttrMap) as tf.Tensor[];
}

/**
 * Whether a GroupNorm whose output only a convolution reads should run with that convolution as one op
 * (fusedGroupNormConv): in bf16 on a backend with both fused kernels (onednn). There the convolution reads its input
 * in bf16 anyway, so GroupNorm writes it in bf16 and no float32 copy of it is made, converted, or kept.
 */
export function normFeedsConvInBf16(): boolean {
  return currentPrecision() === 'bf16' && hasFusedGroupNorm() && hasFusedConvSame();
}

/**
 * conv(act(GroupNorm(x + shift)) * mask) with bias, as fusedGroupNorm then fusedConv2dSame would compute it in bf16,
 * with GroupNorm writing its output straight in bfloat16: the values the convolution would have converted it to
 * (the same rounding), so the result is the composition's bit for bit. Backward: the convolution's gradients from
 * the kept bf16 input, then GroupNorm's from theirs. Call only when normFeedsConvInBf16().
 */
export function fusedGroupNormConv(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, attrs: GroupNormAttrs, shift: tf.Tensor2D | undefined,
  mask: tf.Tensor | undefined, filter: tf.Tensor4D, bias: tf.Tensor): tf.Tensor4D {
  const forBackward = tapeIsRecording();
  const precision = currentPrecision();
  const inputShape = x.shape.slice();
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const inputs = args as tf.Tensor[];
    const normInputs = inputs.slice(0, -2);
    const [fi, bi] = inputs.slice(-2);
    const [normed, stats] = runGroupNorm(named(normInputs, mask), { ...attrs, bf16Output: true });
    const convAttrs: ConvSameAttrs = { forBackward, inputShape };
    const [y, kept] = tf.engine().runKernel(CONV_SAME_KERNEL, { x: normed, filter: fi, bias: bi }, convAttrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    // saved: GroupNorm's inputs (and mask) and statistics, the convolution's bf16 input and filter
    save([...normInputs, ...(mask ? [mask] : []), stats, kept, fi]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => withPrecision(precision, () => {
        const [dh, dfilter, dbias] = runConvSameGrad(dy, saved[saved.length - 1], saved[saved.length - 2], inputShape);
        const normGrads = runGroupNormGrad({
          dy: dh, ...named(saved.slice(0, normInputs.length), mask && saved[normInputs.length]), stats: saved[saved.length - 3],
        }, attrs);
        dh.dispose();
        return [...normGrads, dfilter, dbias];
      }),
    };
  });
  return (shift ? op(x, gamma, beta, shift, filter, bias) : op(x, gamma, beta, filter, bias)) as tf.Tensor4D;
}
