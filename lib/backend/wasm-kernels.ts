/**
 * Training kernels for the tfjs `wasm` backend: Conv2DBackpropFilter (missing in tfjs-backend-wasm 4.22)
 * and a faster Conv2DBackpropInput, both composed of the backend's own XNNPACK-backed kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';

const WASM = 'wasm';

// Upper bound on the im2col buffer of one batch chunk, in float32 elements (default 2^24 = 64 MiB), so a
// large batch is processed in slices of images instead of one huge column matrix.
let maxColumnElements = 1 << 24;

/** Sets the im2col memory budget of the wasm Conv2DBackpropFilter (float32 elements); returns the old one. */
export function setIm2colBudget(elements: number): number {
  if (!(elements >= 1)) throw new Error(`im2col budget must be at least 1 element, got ${elements}`);
  const previous = maxColumnElements;
  maxColumnElements = elements;
  return previous;
}

/** The kernels this module registers, by tfjs kernel name. */
export const WASM_TRAINING_KERNELS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput'] as const;

type Backend = tf.KernelBackend;

/**
 * Runs wasm kernels by name and remembers every intermediate they return, so one call can free them all;
 * the wasm backend reference-counts data ids (Reshape shares its input's), so each result is freed once.
 */
class KernelScratch {
  private readonly intermediates: tf.TensorInfo[] = [];

  constructor(private readonly backend: Backend) {}

  run(kernelName: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): tf.TensorInfo {
    const kernel = tf.getKernel(kernelName, WASM);
    if (!kernel) throw new Error(`wasm kernel ${kernelName} is not registered (import @tensorflow/tfjs-backend-wasm)`);
    const result = kernel.kernelFunc({ inputs, backend: this.backend, attrs }) as tf.TensorInfo;
    this.intermediates.push(result);
    return result;
  }

  reshape(x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  /** Frees every intermediate except `keep`, which becomes the kernel's output. */
  finish(keep: tf.TensorInfo): tf.TensorInfo {
    for (const info of this.intermediates) if (info !== keep) this.backend.disposeData(info.dataId);
    return keep;
  }
}

/** Reads a kernel's 4-D NHWC convolution geometry, rejecting what these kernels do not implement. */
function convGeometry(kernelName: string, inShape: number[], filterShape: number[], attrs: tf.NamedAttrMap) {
  const dataFormat = attrs.dataFormat as string | undefined;
  if (dataFormat && dataFormat !== 'NHWC') throw new Error(`wasm ${kernelName}: only NHWC is supported, got ${dataFormat}`);
  const strides = attrs.strides as number | [number, number];
  const pad = attrs.pad as 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
  const rounding = attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined;
  return tf.backend_util.computeConv2DInfo(
    inShape as [number, number, number, number], filterShape as [number, number, number, number],
    strides, 1, pad, rounding, false, 'channelsLast');
}

/**
 * dW[i, j, ci, co] = sum over (n, oh, ow) of xPadded[n, oh*s + i, ow*s + j, ci] * dy[n, oh, ow, co]:
 * im2col of the padded input (one strided slice per kernel offset, concatenated along channels) and
 * one matrix product dy^T [Cout, P] x columns [P, kh*kw*Cin] per chunk of images.
 */
function conv2dBackpropFilter(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as Backend;
  const x = args.inputs.x!, dy = args.inputs.dy!;
  const attrs = args.attrs ?? {};
  const filterShape = attrs.filterShape as number[];
  const info = convGeometry('Conv2DBackpropFilter', x.shape, filterShape, attrs);
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels,
    strideHeight, strideWidth, filterHeight, filterWidth, padInfo } = info;
  const scratch = new KernelScratch(backend);

  // pad once so every kernel offset is a plain (strided) window; only the rows/cols the windows reach
  const neededHeight = (outHeight - 1) * strideHeight + filterHeight;
  const neededWidth = (outWidth - 1) * strideWidth + filterWidth;
  const padBottom = Math.max(0, neededHeight - inHeight - padInfo.top);
  const padRight = Math.max(0, neededWidth - inWidth - padInfo.left);
  const padded = padInfo.top || padInfo.left || padBottom || padRight
    ? scratch.run('PadV2', { x }, { paddings: [[0, 0], [padInfo.top, padBottom], [padInfo.left, padRight], [0, 0]], constantValue: 0 })
    : x;

  const columnsPerImage = outHeight * outWidth * filterHeight * filterWidth * inChannels;
  const imagesPerChunk = Math.max(1, Math.min(batchSize, Math.floor(maxColumnElements / columnsPerImage)));
  let gradient: tf.TensorInfo | undefined;  // [Cout, kh*kw*Cin], summed over chunks
  for (let first = 0; first < batchSize; first += imagesPerChunk) {
    const images = Math.min(imagesPerChunk, batchSize - first);
    const rows = images * outHeight * outWidth;
    const windows: tf.TensorInfo[] = [];
    for (let i = 0; i < filterHeight; i++) {
      for (let j = 0; j < filterWidth; j++) {
        const window = strideHeight === 1 && strideWidth === 1
          ? scratch.run('Slice', { x: padded }, { begin: [first, i, j, 0], size: [images, outHeight, outWidth, inChannels] })
          : scratch.run('StridedSlice', { x: padded }, {
            begin: [first, i, j, 0],
            end: [first + images, i + (outHeight - 1) * strideHeight + 1, j + (outWidth - 1) * strideWidth + 1, inChannels],
            strides: [1, strideHeight, strideWidth, 1],
            beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0,
          });
        windows.push(scratch.reshape(window, [rows, inChannels]));
      }
    }
    const columns = windows.length === 1 ? windows[0] : scratch.run('Concat', windows as unknown as tf.NamedTensorInfoMap, { axis: 1 });
    const dyChunk = images === batchSize
      ? dy : scratch.run('Slice', { x: dy }, { begin: [first, 0, 0, 0], size: [images, outHeight, outWidth, outChannels] });
    // the contraction runs over P, the leading axis of both; XNNPACK's fast path wants it inner on the left
    const dyTransposed = scratch.run('Transpose', { x: scratch.reshape(dyChunk, [rows, outChannels]) }, { perm: [1, 0] });
    const part = scratch.run('BatchMatMul', { a: dyTransposed, b: columns }, { transposeA: false, transposeB: false });
    gradient = gradient ? scratch.run('Add', { a: gradient, b: part }) : part;
  }
  const perTap = scratch.run('Transpose', { x: gradient! }, { perm: [1, 0] });  // [kh*kw*Cin, Cout]
  return scratch.finish(scratch.reshape(perTap, filterShape));
}

let originalBackpropInput: tf.KernelConfig | undefined;

/**
 * dx as a stride-1 convolution of the stride-dilated dy with the flipped, in/out-swapped filter:
 * dx[h] = sum_i dyDilated[h + top - i] W[i] = correlation of dyDilated, padded by kh-1-top, with W[kh-1-i].
 * (tfjs-backend-wasm 4.22's own kernel is a naive loop, about 10x slower than its forward Conv2D.)
 */
function conv2dBackpropInput(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as Backend;
  const dy = args.inputs.dy!, filter = args.inputs.filter!;
  const attrs = args.attrs ?? {};
  const inputShape = attrs.inputShape as number[];
  const info = convGeometry('Conv2DBackpropInput', inputShape, filter.shape, attrs);
  const { batchSize, inHeight, inWidth, outHeight, outWidth, outChannels,
    strideHeight, strideWidth, filterHeight, filterWidth, padInfo } = info;
  const scratch = new KernelScratch(backend);

  // zeros between dy's rows/columns (stride - 1 of them), via a reshape to [N, Ho, 1, Wo, 1, C] and a pad
  let dilated = dy;
  if (strideHeight > 1 || strideWidth > 1) {
    const spread = scratch.reshape(dy, [batchSize, outHeight, 1, outWidth, 1, outChannels]);
    const filled = scratch.run('PadV2', { x: spread }, {
      paddings: [[0, 0], [0, 0], [0, strideHeight - 1], [0, 0], [0, strideWidth - 1], [0, 0]], constantValue: 0,
    });
    dilated = scratch.reshape(filled, [batchSize, outHeight * strideHeight, outWidth * strideWidth, outChannels]);
  }
  const dilatedHeight = outHeight * strideHeight;
  const dilatedWidth = outWidth * strideWidth;
  const before = [filterHeight - 1 - padInfo.top, filterWidth - 1 - padInfo.left];
  const after = [inHeight + filterHeight - 1 - before[0] - dilatedHeight, inWidth + filterWidth - 1 - before[1] - dilatedWidth];
  if (before[0] < 0 || before[1] < 0) {
    // padding wider than the kernel: rare, and the original kernel handles it
    return originalBackpropInput!.kernelFunc(args as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
  }
  if (after[0] < 0 || after[1] < 0) {  // trailing zeros of the dilation that the output never reads
    dilated = scratch.run('Slice', { x: dilated }, {
      begin: [0, 0, 0, 0],
      size: [batchSize, dilatedHeight + Math.min(0, after[0]), dilatedWidth + Math.min(0, after[1]), outChannels],
    });
  }
  const flipped = scratch.run('Reverse', { x: filter }, { dims: [0, 1] });
  const swapped = scratch.run('Transpose', { x: flipped }, { perm: [0, 1, 3, 2] });  // [kh, kw, Cout, Cin]
  const dx = scratch.run('Conv2D', { x: dilated, filter: swapped }, {
    strides: [1, 1], dilations: [1, 1], dataFormat: 'NHWC', dimRoundingMode: undefined as unknown as string,
    pad: [[0, 0], [before[0], Math.max(0, after[0])], [before[1], Math.max(0, after[1])], [0, 0]],
  });
  return scratch.finish(dx);
}

/** Replaces a registered wasm kernel's function, keeping its setupFunc (which binds the C++ code). */
function replaceKernel(kernelName: string, kernelFunc: tf.KernelFunc): tf.KernelConfig | undefined {
  const existing = tf.getKernel(kernelName, WASM);
  if (existing?.kernelFunc === kernelFunc) return undefined;
  if (existing) tf.unregisterKernel(kernelName, WASM);
  tf.registerKernel({ ...(existing ?? { kernelName, backendName: WASM }), kernelFunc });
  return existing;
}

/**
 * Registers, for backend 'wasm', the kernels training needs that tfjs-backend-wasm 4.22 lacks
 * (Conv2DBackpropFilter) or runs slowly (Conv2DBackpropInput). Safe to call more than once.
 * (Every other op the UNet trains through has a wasm kernel that matches cpu: test/wasm-kernels.test.ts.)
 * Returns the names of the kernels that are now ours.
 */
export function registerWasmTrainingKernels(): string[] {
  if (!tf.getKernel('Conv2DBackpropFilter', WASM)) replaceKernel('Conv2DBackpropFilter', conv2dBackpropFilter as tf.KernelFunc);
  originalBackpropInput = replaceKernel('Conv2DBackpropInput', conv2dBackpropInput as tf.KernelFunc) ?? originalBackpropInput;
  return WASM_TRAINING_KERNELS.filter(name => {
    const kernel = tf.getKernel(name, WASM);
    const ours: unknown[] = [conv2dBackpropFilter, conv2dBackpropInput];
    return ours.includes(kernel?.kernelFunc);
  });
}
