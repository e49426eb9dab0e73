/** Finds and loads the native oneDNN addon (native/, built by scripts/build-native.js) and types its functions. */
import * as fs from 'fs';
import * as path from 'path';
import { repositoryPath } from '../../repository';
import { applyThreadWait } from './thread-wait';

/** Activation codes shared with native/src/onednn_ops.h. */
export const ACTIVATION_CODES: Record<string, number> = { linear: 0, relu: 1, relu6: 2, leakyrelu: 3, sigmoid: 4, elu: 5 };
/** Binary op codes shared with native/src/cpu_loops.h. */
export enum BinaryCode { Add = 0, Sub = 1, Mul = 2, Div = 3, SquaredDifference = 4, Maximum = 5, Minimum = 6 }
/** Comparison codes shared with native/src/cpu_loops.h. */
export enum CompareCode { Less = 0, LessEqual = 1, Greater = 2, GreaterEqual = 3, Equal = 4, NotEqual = 5 }
/** Unary op codes shared with native/src/cpu_loops.h. */
export enum UnaryCode { Sigmoid = 0, Exp = 1, Neg = 2, Square = 3, Rsqrt = 4, Sqrt = 5, Relu = 6, Log = 7, Abs = 8, Tanh = 9, Reciprocal = 10, Scale = 11 }
/** Reduction codes shared with native/src/cpu_loops.h. */
export enum ReduceCode { Sum = 0, Mean = 1, Max = 2, Min = 3 }

/**
 * Convolution geometry as the addon reads it: [batch, inH, inW, inC, outH, outW, outC, kH, kW,
 * strideH, strideW, dilationH, dilationW, padTop, padLeft, padBottom, padRight].
 */
export type ConvGeometry = number[];

/**
 * The functions native/src/addon.cc exports. Every array argument is a Float32Array used in place. `precision`
 * (convolutions and matrix products): 0 or absent float32, 1 bf16 inputs with float32 accumulation and output.
 */
export interface OnednnAddon {
  /**
   * filterId (optional, 0 = none) names the filter's contents: its reordered copy is kept and reused until
   * releaseFilter(filterId); one id must never stand for two different contents. In bf16, savedBf16 receives the input's
   * bf16 copy the primitive read; with x null it holds that copy already and is read instead.
   */
  convForward(g: ConvGeometry, x: Float32Array | null, filter: Float32Array, bias: Float32Array | null, y: Float32Array, activation: number, alpha: number,
    precision?: number, filterId?: number, savedBf16?: Int32Array | null): void;
  /**
   * Every gradient of a convolution from one call: dx (skipped when null), dfilter and dbias (skipped when null). The input
   * is float32 x, or in bf16 (precision 1) the forward's savedBf16 copy xBf16 (two bfloat16 values per Int32Array element):
   * exactly one of the two. In bf16 dy is converted once for both primitives.
   */
  convBackward(g: ConvGeometry, dy: Float32Array, filter: Float32Array, filterId: number, x: Float32Array | null, xBf16: Int32Array | null,
    dx: Float32Array | null, dfilter: Float32Array, dbias: Float32Array | null, precision: number): void;
  convBackwardData(g: ConvGeometry, dy: Float32Array, filter: Float32Array, dx: Float32Array, precision?: number, filterId?: number): void;
  /** Drops the reordered copies kept for a filter id. */
  releaseFilter(filterId: number): void;
  /** Reordered filter copies kept now. */
  cachedFilters(): number;
  convBackwardFilter(g: ConvGeometry, x: Float32Array, dy: Float32Array, dfilter: Float32Array, precision?: number): void;
  /** geometry: [batchA, batchB, m, k, n, transposeA, transposeB]. */
  matMul(g: number[], a: Float32Array, b: Float32Array, bias: Float32Array | null, c: Float32Array, activation: number, alpha: number, precision?: number): void;
  /** oneDNN's implementation name for a convolution (which: 0 forward, 1 backward data, 2 backward filter). */
  convImplementation(g: ConvGeometry, which: number, precision?: number): string;
  /** oneDNN's implementation name for a matrix product of this geometry (no bias or activation). */
  matMulImplementation(g: number[], precision?: number): string;
  /** The instruction set oneDNN dispatches to on this CPU, e.g. 'avx512_core_bf16'. */
  effectiveIsa(): string;
  /** Convolutions and matrix products run with bf16 inputs since the addon loaded. */
  bf16Executions(): number;
  /** Convolution primitives run since the addon loaded, in either precision. */
  convExecutions(): number;
  /** bf16 filter gradients computed by the addon's own kernel (native/src/filter_grad_bf16.h) instead of oneDNN's. */
  bf16FilterGradientRuns(): number;
  /** oneDNN's verbose level from now on: 0 off, 1 a stdout line per primitive execution (ONEDNN_VERBOSE's format). */
  setVerbose(level: number): void;
  binary(op: BinaryCode, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], out: Float32Array, outShape: number[]): void;
  compare(op: CompareCode, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], out: Uint8Array, outShape: number[]): void;
  unary(op: UnaryCode, x: Float32Array, y: Float32Array, alpha: number): void;
  /** out = condition ? a : b elementwise over arrays of one length (condition: 0/1 bytes). */
  select(condition: Uint8Array, a: Float32Array, b: Float32Array, out: Float32Array): void;
  /** out = (a + b) * scale, elementwise over arrays of one length. */
  scaledSum(a: Float32Array, b: Float32Array, scale: number, out: Float32Array): void;
  /** out[i] = scale where hashUniform(seed, i) < keep, else 0: a dropout mask (lib/nn/layers.ts DropoutMasks). */
  dropoutMask(seed: number, keep: number, scale: number, out: Float32Array): void;
  reduce(op: ReduceCode, x: Float32Array, shape: number[], axes: number[], out: Float32Array): void;
  transpose(x: Float32Array, shape: number[], perm: number[], out: Float32Array): void;
  slice(x: Float32Array, shape: number[], begin: number[], size: number[], out: Float32Array): void;
  insert(out: Float32Array, outShape: number[], begin: number[], x: Float32Array, size: number[]): void;
  softmax(x: Float32Array, rows: number, cols: number, out: Float32Array): void;
  /**
   * Fused act(GroupNorm(x + shift)) * mask; shape: [batch, pixels, channels, groups] (native/src/group_norm.h). y an
   * Int32Array: y in bfloat16, two values per element, rounded as oneDNN's bf16 conversion rounds.
   */
  groupNormForward(shape: number[], x: Float32Array, shift: Float32Array | null, mask: Float32Array | null, gamma: Float32Array,
    beta: Float32Array, eps: number, silu: boolean, y: Float32Array | Int32Array, stats?: Float32Array | null): void;
  /** Its gradients: dx, dgamma, dbeta and (when given) dshift; the mask is a constant. */
  groupNormBackward(shape: number[], dy: Float32Array, x: Float32Array, shift: Float32Array | null, mask: Float32Array | null,
    gamma: Float32Array, beta: Float32Array, eps: number, silu: boolean, dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array,
    dshift: Float32Array | null, stats?: Float32Array | null): void;
  /** Adam/RAdam over every parameter at once (one array per parameter in each list); coefficients [beta1, beta2, eps,
   * momentumScale, sqrtVScale, adaptive (0/1), infReplacement]. */
  momentUpdate(coefficients: number[], thetas: Float32Array[], gs: Float32Array[], ms: Float32Array[], vs: Float32Array[],
    newThetas: Float32Array[], newMs: Float32Array[], newVs: Float32Array[]): void;
  /** next = current + (target - current)(1 - beta), over every average at once. */
  emaUpdate(beta: number, currents: Float32Array[], targets: Float32Array[], nexts: Float32Array[]): void;
  /** scale * 2x2 block sums; shape is x's [batch, height, width, channels]. */
  downsample2x(x: Float32Array, shape: number[], scale: number, out: Float32Array): void;
  /** scale * nearest-neighbour x2; shape is x's [batch, height, width, channels]. */
  upsample2x(x: Float32Array, shape: number[], scale: number, out: Float32Array): void;
  version(): string;
  cachedPrimitives(): number;
  threads(): number;
  /** The address of the array's first element modulo `alignment` (a power of two): where its memory really lies. */
  addressOffset(array: Float32Array | Int32Array | Uint8Array, alignment: number): number;
  /**
   * The multiply-add rate of `threads` copies of a register-only FMA loop (fp32: VFMADD231PS on the widest
   * vectors; bf16: VDPBF16PS), best of `repeats` runs of about `seconds` each (native/src/peak_probe.h).
   * gflops is 0 and kernel says why when the CPU lacks the instructions.
   */
  measureFmaRate(precision: 'fp32' | 'bf16', threads: number, seconds: number, repeats: number): { gflops: number; seconds: number; kernel: string; threads: number };
  /** The sum of the squares of every element of the arrays, in float64 (NaN or infinite when an element is). */
  sumOfSquares(arrays: Float32Array[]): number;
  /** The index of the first array holding a NaN or an infinity, or -1. */
  firstNonFinite(arrays: Float32Array[]): number;
}

const ADDON_RELATIVE_PATH = path.join('native', 'build', 'Release', 'ect_onednn.node');

/** Where the addon binary should be: $ECT_ONEDNN_ADDON, else native/build/Release under the package root. */
export function addonPath(): string {
  if (process.env.ECT_ONEDNN_ADDON) return path.resolve(process.env.ECT_ONEDNN_ADDON);
  return repositoryPath(ADDON_RELATIVE_PATH);
}

/** Every function of OnednnAddon: a build that lacks one is older than this code (checked by loadAddon). */
export const ADDON_FUNCTIONS: ReadonlyArray<keyof OnednnAddon> = [
  'convForward', 'convBackward', 'convBackwardData', 'convBackwardFilter', 'releaseFilter', 'cachedFilters', 'matMul',
  'convImplementation', 'matMulImplementation', 'effectiveIsa', 'bf16Executions', 'convExecutions', 'bf16FilterGradientRuns', 'setVerbose',
  'binary', 'compare', 'select', 'unary', 'scaledSum', 'dropoutMask', 'reduce', 'transpose', 'slice', 'insert', 'softmax',
  'groupNormForward', 'groupNormBackward', 'momentUpdate', 'emaUpdate', 'downsample2x', 'upsample2x', 'version',
  'cachedPrimitives', 'threads', 'addressOffset', 'measureFmaRate', 'sumOfSquares', 'firstNonFinite',
];

/** Loads the addon, or returns the reason it cannot be used (missing build, missing libdnnl, ...). */
export function loadAddon(): { addon?: OnednnAddon; reason?: string } {
  const file = addonPath();
  if (!fs.existsSync(file)) {
    return { reason: `the oneDNN addon was not built (${file} is missing; needs libdnnl-dev and a C++ compiler, then \`npm run build:native\`)` };
  }
  // how the OpenMP workers wait between kernels: libgomp reads it from the environment when it loads (thread-wait.ts)
  applyThreadWait();
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require(file) as OnednnAddon;
    const missing = ADDON_FUNCTIONS.filter((name) => typeof addon[name] !== 'function');
    if (missing.length > 0) {
      return { reason: `the oneDNN addon ${file} is older than this code (it lacks ${missing.join(', ')}); rebuild it with \`npm run build:native\`` };
    }
    return { addon };
  } catch (error) {
    return { reason: `the oneDNN addon ${file} failed to load: ${(error as Error).message}` };
  }
}
