/**
 * Training kernels for the tfjs `wasm` backend: Conv2DBackpropFilter (missing in tfjs-backend-wasm 4.22)
 * and a faster Conv2DBackpropInput, both composed of the backend's own XNNPACK-backed kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';

const WASM = 'wasm';

/** The kernels this module registers, by tfjs kernel name. */
export const WASM_TRAINING_KERNELS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput'] as const;

type Backend = tf.KernelBackend;

/** The two BackendWasm methods that give a kernel direct access to tensor memory on the wasm heap. */
interface WasmHeapAccess {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

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

  /** Takes ownership of a tensor a kernel made itself. */
  track(info: tf.TensorInfo): tf.TensorInfo {
    this.intermediates.push(info);
    return info;
  }

  reshape(x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  /** Frees intermediates early (to bound memory inside a loop). */
  free(...infos: tf.TensorInfo[]): void {
    for (const info of infos) {
      const index = this.intermediates.indexOf(info);
      if (index >= 0) {
        this.intermediates.splice(index, 1);
        this.backend.disposeData(info.dataId);
      }
    }
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
 * The [Cin, P] matrix of one kernel tap (i, j): rows of a channels-first padded input [Cin, N, Hp, Wp]
 * copied straight between heap views (tfjs-wasm's Slice would first copy the whole input to JS).
 */
function tapWindow(backend: WasmHeapAccess, channelsFirst: tf.TensorInfo, i: number, j: number,
  outHeight: number, outWidth: number, strideHeight: number, strideWidth: number): tf.TensorInfo {
  const [channels, batch, paddedHeight, paddedWidth] = channelsFirst.shape;
  const window = backend.makeOutput([channels, batch * outHeight * outWidth], 'float32');
  // views taken after the allocation, which may have grown (and so moved) the heap
  const source = backend.typedArrayFromHeap(channelsFirst) as Float32Array;
  const target = backend.typedArrayFromHeap(window) as Float32Array;
  let to = 0;
  for (let plane = 0; plane < channels * batch; plane++) {
    for (let oh = 0; oh < outHeight; oh++) {
      const rowStart = (plane * paddedHeight + i + oh * strideHeight) * paddedWidth + j;
      if (strideWidth === 1) {
        target.set(source.subarray(rowStart, rowStart + outWidth), to);
        to += outWidth;
      } else {
        for (let ow = 0; ow < outWidth; ow++) target[to++] = source[rowStart + ow * strideWidth];
      }
    }
  }
  return window;
}

/**
 * dW[i, j, ci, co] = sum over p = (n, oh, ow) of xPadded[n, oh*s + i, ow*s + j, ci] * dy[p, co]: per kernel
 * tap, one XNNPACK matrix product window^T [Cin, P] x dy [P, Cout]. The input is transposed once to
 * channels-first so each window^T is a set of row copies, and dy, the matrix XNNPACK packs, stays
 * the same for all taps (packed once, cached by the backend). Memory: one copy of x plus one window.
 * (Strided slices of x in NHWC would give window [P, Cin], whose transposed product is XNNPACK's slow path.)
 */
function conv2dBackpropFilter(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as Backend;
  const x = args.inputs.x!, dy = args.inputs.dy!;
  const attrs = args.attrs ?? {};
  const filterShape = attrs.filterShape as number[];
  const info = convGeometry('Conv2DBackpropFilter', x.shape, filterShape, attrs);
  const { batchSize, inHeight, inWidth, outHeight, outWidth, outChannels,
    strideHeight, strideWidth, filterHeight, filterWidth, padInfo } = info;
  const scratch = new KernelScratch(backend);

  // pad once so every tap is a plain window; only the rows/columns the windows reach
  const neededHeight = (outHeight - 1) * strideHeight + filterHeight;
  const neededWidth = (outWidth - 1) * strideWidth + filterWidth;
  const padBottom = Math.max(0, neededHeight - inHeight - padInfo.top);
  const padRight = Math.max(0, neededWidth - inWidth - padInfo.left);
  const padded = padInfo.top || padInfo.left || padBottom || padRight
    ? scratch.run('PadV2', { x }, { paddings: [[0, 0], [padInfo.top, padBottom], [padInfo.left, padRight], [0, 0]], constantValue: 0 })
    : x;
  const channelsFirst = scratch.run('Transpose', { x: padded }, { perm: [3, 0, 1, 2] });  // [Cin, N, Hp, Wp]
  if (padded !== x) scratch.free(padded);
  const positions = batchSize * outHeight * outWidth;
  const dyRows = scratch.reshape(dy, [positions, outChannels]);

  const taps: tf.TensorInfo[] = [];  // [Cin, Cout] per (i, j), in filter order
  for (let i = 0; i < filterHeight; i++) {
    for (let j = 0; j < filterWidth; j++) {
      const window = scratch.track(tapWindow(args.backend as WasmHeapAccess, channelsFirst, i, j,
        outHeight, outWidth, strideHeight, strideWidth));
      taps.push(scratch.run('BatchMatMul', { a: window, b: dyRows }, { transposeA: false, transposeB: false }));
      scratch.free(window);
    }
  }
  const stacked = taps.length === 1 ? taps[0] : scratch.run('Concat', taps as unknown as tf.NamedTensorInfoMap, { axis: 0 });
  return scratch.finish(scratch.reshape(stacked, filterShape));
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
  const before = [filterHeight - 1 - padInfo.top, filterWidth - 1 - padInfo.left];
  if (before[0] < 0 || before[1] < 0) {
    // padding wider than the kernel: rare, and the original kernel handles it
    return originalBackpropInput!.kernelFunc(args as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
  }
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
  const after = [inHeight + filterHeight - 1 - before[0] - dilatedHeight, inWidth + filterWidth - 1 - before[1] - dilatedWidth];
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
