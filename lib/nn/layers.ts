/** Building blocks of the DDPM++ UNet: seeded parameter initialisation and the pure layer functions. */
import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { hashUniform, mix32 } from '../random';
import {
  fusedConv2dSame, fusedDownsample2x, fusedDropoutMask, fusedGroupNorm, fusedGroupNormConv, fusedUpsample2x, hasFusedConvSame, hasFusedGroupNorm,
  hasFusedResample, normFeedsConvInBf16, oneByOneAsConvolution,
} from './fused';

/** How a weight is initialised (EDM's xavier-uniform, scaled: 1e-5 gives EDM's "init_zero"; normal: N(0, scale^2)). */
export interface InitSpec { kind: 'xavier' | 'zeros' | 'ones' | 'normal'; scale?: number; fanIn?: number; fanOut?: number }

/** Creates named parameters deterministically from one seed (the same seed gives the same network on any backend). */
export class ParamFactory {
  readonly params = new Map<string, tf.Variable>();
  private readonly rng: seedrandom.PRNG;
  private static instance = 0;
  private readonly prefix: string;

  constructor(seed: number) {
    this.rng = seedrandom(`ect-init-${seed}`);
    // tfjs needs globally unique variable names; our stable names live in the map keys.
    this.prefix = `p${ParamFactory.instance++}_`;
  }

  /** Adds a parameter of the given shape and initialisation under a stable name. */
  add(name: string, shape: number[], init: InitSpec): tf.Variable {
    if (this.params.has(name)) throw new Error(`duplicate parameter name ${name}`);
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (init.kind === 'ones') values.fill(1);
    if (init.kind === 'xavier') {
      // xavier uniform: U(-a, a) with a = sqrt(6 / (fanIn + fanOut)), times an optional gain
      const bound = (init.scale ?? 1) * Math.sqrt(6 / ((init.fanIn ?? 1) + (init.fanOut ?? 1)));
      for (let i = 0; i < size; i++) values[i] = (this.rng() * 2 - 1) * bound;
    }
    if (init.kind === 'normal') {
      // Box-Muller from the same seeded stream
      for (let i = 0; i < size; i++) values[i] = (init.scale ?? 1) * Math.sqrt(-2 * Math.log(1 - this.rng())) * Math.cos(2 * Math.PI * this.rng());
    }
    const initial = tf.tensor(values, shape);
    const variable = tf.variable(initial, true, this.prefix + name);
    initial.dispose();  // the variable holds its own copy
    this.params.set(name, variable);
    return variable;
  }
}

/** Parameter lookup: the network's own variables, or another set of weights (for example the EMA). */
export type WeightSource = (name: string) => tf.Tensor;

/** Label dropout of a training step (EDM's label_dropout): its seed and the probability of dropping an image's label. */
export interface LabelDropout { seed: number; rate: number }

/**
 * Dropout masks cached by layer name, so the target pass and the student pass drop the same units (and the
 * same labels). One set per training step, seeded from (run seed, iteration, 'dropout') and (run seed,
 * iteration, 'label-dropout') by the loss (lib/random.ts drawSeed); each layer's mask is a function of that
 * seed and the layer's name only, and each image's label mask of the label seed and the image's index.
 */
export class DropoutMasks {
  private readonly masks = new Map<string, tf.Tensor>();
  /** The layers whose unit masks were made, in the order they were made. */
  readonly layers: string[] = [];

  /** seed: the step's dropout seed; rate: drop probability; labels: the step's label dropout (none by default). */
  constructor(private readonly seed: number, readonly rate: number, private readonly labels: LabelDropout = { seed: 1, rate: 0 }) {}

  /**
   * Which images keep their class label, [B, 1]: 1 where image i's label is kept (uniform >= rate), 0 where it is
   * dropped; not rescaled (EDM multiplies class_labels by rand >= label_dropout). Created on first use and replayed.
   */
  labelMask(batch: number): tf.Tensor {
    const name = 'map.label.dropout';
    const known = this.masks.get(name);
    if (known) {
      if (known.shape[0] !== batch) throw new Error(`label dropout mask: made for ${known.shape[0]} images, reused for ${batch}`);
      return known;
    }
    const mask = tf.keep(tf.tensor2d(this.labelKeep(batch), [batch, 1]));
    this.masks.set(name, mask);
    return mask;
  }

  /** labelMask's values on the host: 1 where image i keeps its class label, 0 where label dropout drops it. */
  labelKeep(batch: number): Float32Array {
    return Float32Array.from({ length: batch }, (_, i) => (hashUniform(this.labels.seed, i) >= this.labels.rate ? 1 : 0));
  }

  /** The mask for a layer (scaled by 1/(1-rate)), created on first use and replayed afterwards. */
  mask(name: string, shape: number[]): tf.Tensor {
    const known = this.masks.get(name);
    if (known) {
      if (known.shape.join() !== shape.join()) throw new Error(`dropout mask ${name}: shape ${known.shape} reused for ${shape}`);
      return known;
    }
    const keep = 1 - this.rate, seed = layerSeed(this.seed, name);
    this.layers.push(name);
    // One counter-based hash per unit: the same mask on every backend, and about 100 times faster than
    // randomUniform + less + cast + div (whose JavaScript random generator took ~12 ms per 1.6M-unit mask, a
    // tenth of a training step). The loop below is the definition; a backend's kernel runs it natively (the
    // loop still took ~4 ns per unit, 7% of a bf16 res28-ch32 step).
    const mask = tf.keep(fusedDropoutMask({ seed, keep, shape }) ?? tf.tidy(() => {
      const values = new Float32Array(tf.util.sizeFromShape(shape));
      const scale = 1 / keep;
      for (let i = 0; i < values.length; i++) values[i] = hashUniform(seed, i) < keep ? scale : 0;
      return tf.tensor(values, shape, 'float32');
    }));
    this.masks.set(name, mask);
    return mask;
  }

  /** Frees every mask. */
  dispose(): void {
    for (const m of this.masks.values()) m.dispose();
    this.masks.clear();
  }
}

/** A layer's seed within one step: the step seed hashed with the layer's name (FNV-1a). */
export function layerSeed(stepSeed: number, name: string): number {
  let hash = mix32(stepSeed) ^ 0x811c9dc5;
  for (const ch of name) {
    hash ^= ch.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** SiLU(x) = x * sigmoid(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/** Fully connected layer: x [N, in] -> [N, out]. */
export function linear(w: WeightSource, name: string, x: tf.Tensor2D): tf.Tensor2D {
  return tf.add(tf.matMul(x, w(`${name}.weight`) as tf.Tensor2D), w(`${name}.bias`)) as tf.Tensor2D;
}

/**
 * Convolution with 'same' padding and its bias in one fused kernel, NHWC; 1x1 convolutions run as one matrix product
 * unless the backend convolves them faster (lib/nn/fused.ts oneByOneAsConvolution).
 * Where the backend has the kernels, one forward kernel and one kernel for every gradient (lib/nn/fused.ts fusedConv2dSame).
 */
export function conv2d(w: WeightSource, name: string, x: tf.Tensor4D): tf.Tensor4D {
  const weight = w(`${name}.weight`) as tf.Tensor4D;
  const bias = w(`${name}.bias`);
  const [kh, , cin, cout] = weight.shape;
  if (kh === 1 && !(x.dtype === 'float32' && oneByOneAsConvolution())) {
    const [b, h, wd] = x.shape;
    const flat = tf.fused.matMul({ a: tf.reshape(x, [b * h * wd, cin]), b: tf.reshape(weight, [cin, cout]), bias });
    return tf.reshape(flat, [b, h, wd, cout]);
  }
  if (x.dtype === 'float32' && hasFusedConvSame()) return fusedConv2dSame(x, weight, bias);
  return tf.fused.conv2d({ x, filter: weight, strides: 1, pad: 'same', bias });
}

/** Options of groupNorm: a per-sample, per-channel shift added before it, SiLU and a dropout mask after it, the variance epsilon. */
export interface GroupNormOptions {
  shift?: tf.Tensor2D;   // [B, C], added at every pixel before normalising
  silu?: boolean;        // apply SiLU to the output
  mask?: tf.Tensor;      // shaped like x, multiplied into the output last (dropout; a constant, no gradient flows to it)
  eps?: number;          // default 1e-6 (EDM)
}

/**
 * GroupNorm over NHWC with groups = min(32, C/4) (EDM), affine gamma/beta per channel, optionally with a
 * shift before and SiLU and a mask after: silu(GroupNorm(x + shift)) * mask. Backends with the fused kernels
 * (lib/nn/fused.ts) run it as one kernel each way; others compose it from tfjs ops.
 */
export function groupNorm(w: WeightSource, name: string, x: tf.Tensor4D, options: GroupNormOptions = {}): tf.Tensor4D {
  const [b, h, wd, c] = x.shape;
  const groups = groupCount(c);
  const eps = options.eps ?? 1e-6;
  const gamma = w(`${name}.weight`), beta = w(`${name}.bias`);
  if (c % groups === 0 && x.dtype === 'float32' && hasFusedGroupNorm()) {
    return fusedGroupNorm(x, gamma, beta, { groups, eps, silu: options.silu ?? false }, options.shift, options.mask);
  }
  const input = options.shift ? tf.add(x, tf.reshape(options.shift, [b, 1, 1, c])) : x;
  const grouped = tf.reshape(input, [b, h * wd, groups, c / groups]);
  const { mean, variance } = tf.moments(grouped, [1, 3], true);
  const normed = tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, eps)));
  const y = tf.add(tf.mul(tf.reshape(normed, [b, h, wd, c]), gamma), beta) as tf.Tensor4D;
  const activated = options.silu ? silu(y) as tf.Tensor4D : y;
  return options.mask ? tf.mul(activated, options.mask) as tf.Tensor4D : activated;
}

/**
 * conv2d(w, convName, groupNorm(w, normName, x, options)): the convolution of a GroupNorm's output that nothing else
 * reads. In bf16 on a backend with the fused kernels, one op whose GroupNorm writes the convolution's bf16 input
 * directly (lib/nn/fused.ts fusedGroupNormConv; the same numbers, one conversion pass and one float32 array fewer);
 * elsewhere the two layers as they are. Parameters are read in the same order either way.
 */
export function groupNormConv(w: WeightSource, normName: string, x: tf.Tensor4D, options: GroupNormOptions, convName: string): tf.Tensor4D {
  const c = x.shape[3];
  const groups = groupCount(c);
  if (!(c % groups === 0 && x.dtype === 'float32' && normFeedsConvInBf16())) return conv2d(w, convName, groupNorm(w, normName, x, options));
  const gamma = w(`${normName}.weight`), beta = w(`${normName}.bias`);
  const filter = w(`${convName}.weight`) as tf.Tensor4D, bias = w(`${convName}.bias`);
  return fusedGroupNormConv(x, gamma, beta, { groups, eps: options.eps ?? 1e-6, silu: options.silu ?? false }, options.shift, options.mask, filter, bias);
}

/** Number of GroupNorm groups for C channels: min(32, C/4). */
export function groupCount(channels: number): number {
  return Math.max(1, Math.min(32, Math.floor(channels / 4)));
}

/** 2x2 average pooling (NHWC): one kernel each way where the backend has it (lib/nn/fused.ts), else a reshape and a mean. */
export function downsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, wd, c] = x.shape;
  if (h % 2 || wd % 2) throw new Error(`downsample2x needs even sizes, got ${h}x${wd}`);
  if (x.dtype === 'float32' && hasFusedResample()) return fusedDownsample2x(x);
  return tf.mean(tf.reshape(x, [b, h / 2, 2, wd / 2, 2, c]), [2, 4]) as tf.Tensor4D;
}

/** Nearest-neighbour x2 upsampling (NHWC): one kernel each way where the backend has it, else broadcasting against ones. */
export function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, wd, c] = x.shape;
  if (x.dtype === 'float32' && hasFusedResample()) return fusedUpsample2x(x);
  const spread = tf.mul(tf.reshape(x, [b, h, 1, wd, 1, c]), tf.ones([1, 1, 2, 1, 2, 1]));
  return tf.reshape(spread, [b, 2 * h, 2 * wd, c]);
}

/** True for a tensor (of whichever tfjs-core instance made it), false for host values. */
export function isTensor(value: unknown): value is tf.Tensor {
  return typeof (value as tf.Tensor | undefined)?.dataSync === 'function';
}

/** Frequencies of the positional embedding with `channels` features: f_i = (1/10000)^(i/(half-1)) (EDM's endpoint=True). */
export function embeddingFrequencies(channels: number): Float64Array {
  const half = channels / 2;
  return Float64Array.from({ length: half }, (_, i) => Math.pow(1 / 10000, i / Math.max(half - 1, 1)));
}

/**
 * Positional embedding of c_noise with `channels` features: emb = concat(cos(c_noise f), sin(c_noise f)). Given c_noise on
 * the host (as the preconditioning knows it), it is computed in float64 and rounded once: float32 angles would lose
 * ~1e-4 at VP's c_noise of up to ~1000 (lib/import/ imports such networks); as a tensor, in the tensor's precision.
 */
export function positionalEmbedding(cNoise: tf.Tensor1D | ArrayLike<number>, channels: number): tf.Tensor2D {
  const freqs = embeddingFrequencies(channels);
  const half = freqs.length;
  if (isTensor(cNoise)) {
    const angles = tf.mul(tf.reshape(cNoise, [-1, 1]), tf.tensor2d(Float32Array.from(freqs), [1, half]));
    return tf.concat([tf.cos(angles), tf.sin(angles)], 1) as tf.Tensor2D;
  }
  return tf.tensor2d(positionalEmbeddingValues(cNoise, channels), [cNoise.length, channels]);
}

/** positionalEmbedding of host values, as the host array [B * channels] (float64 angles, rounded once). */
export function positionalEmbeddingValues(cNoise: ArrayLike<number>, channels: number): Float32Array {
  const freqs = embeddingFrequencies(channels);
  const half = freqs.length;
  const values = new Float32Array(cNoise.length * channels);
  for (let b = 0; b < cNoise.length; b++) {
    for (let i = 0; i < half; i++) {
      const angle = cNoise[b] * freqs[i];
      values[b * channels + i] = Math.cos(angle);
      values[b * channels + half + i] = Math.sin(angle);
    }
  }
  return values;
}

/**
 * Fourier embedding of c_noise (EDM's NCSN++): emb = concat(cos(2 pi f c_noise), sin(2 pi f c_noise)) with the network's
 * stored frequencies f. Given c_noise on the host, in float64 and rounded once (the angles reach ~1000), as positionalEmbedding.
 */
export function fourierEmbedding(cNoise: tf.Tensor1D | ArrayLike<number>, freqs: tf.Tensor): tf.Tensor2D {
  const half = freqs.size;
  if (isTensor(cNoise)) {
    const angles = tf.mul(tf.reshape(cNoise, [-1, 1]), tf.reshape(tf.mul(freqs, 2 * Math.PI), [1, half]));
    return tf.concat([tf.cos(angles), tf.sin(angles)], 1) as tf.Tensor2D;
  }
  return tf.tensor2d(fourierEmbeddingValues(cNoise, freqs.dataSync()), [cNoise.length, 2 * half]);
}

/** fourierEmbedding of host values with the frequencies' values, as the host array [B * 2 * freqs] (float64 angles, rounded once). */
export function fourierEmbeddingValues(cNoise: ArrayLike<number>, freqs: ArrayLike<number>): Float32Array {
  const half = freqs.length;
  const values = new Float32Array(cNoise.length * 2 * half);
  for (let b = 0; b < cNoise.length; b++) {
    for (let i = 0; i < half; i++) {
      const angle = cNoise[b] * (2 * Math.PI * freqs[i]);
      values[b * 2 * half + i] = Math.cos(angle);
      values[b * 2 * half + half + i] = Math.sin(angle);
    }
  }
  return values;
}

/** Every second element along axis 1 (H) or 2 (W) of an NHWC tensor whose size there is even, starting at the first. */
function everySecond(x: tf.Tensor4D, axis: 1 | 2): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const paired = axis === 1 ? tf.reshape(x, [b, h / 2, 2, w, c]) : tf.reshape(x, [b, h, w / 2, 2, c]);
  const size = axis === 1 ? [b, h / 2, 1, w, c] : [b, h, w / 2, 1, c];
  return tf.reshape(tf.slice(paired, [0, 0, 0, 0, 0], size), axis === 1 ? [b, h / 2, w, c] : [b, h, w / 2, c]) as tf.Tensor4D;
}

/**
 * Filtered 2x downsampling along one axis of an input already padded by (taps - 2) / 2: out[i] = sum_k t_k x[2i + k] / sum t
 * (EDM's depthwise resample_filter convolution with stride 2).
 */
function filterDownAxis(x: tf.Tensor4D, taps: number[], axis: 1 | 2): tf.Tensor4D {
  const outputs = (x.shape[axis] - (taps.length - 2)) / 2;
  const total = taps.reduce((a, t) => a + t, 0);
  let out: tf.Tensor4D | null = null;
  taps.forEach((tap, k) => {
    const begin = [0, 0, 0, 0];
    const size = [...x.shape];
    begin[axis] = k;
    size[axis] = 2 * outputs;
    const term = tf.mul(everySecond(tf.slice(x, begin, size), axis), tap / total) as tf.Tensor4D;
    out = out ? tf.add(out, term) as tf.Tensor4D : term;
  });
  return out as unknown as tf.Tensor4D;
}

/** x shifted by d along an axis with zeros shifted in: out[m] = x[m + d]. */
function shifted(x: tf.Tensor4D, d: number, axis: 1 | 2): tf.Tensor4D {
  if (d === 0) return x;
  const padding: Array<[number, number]> = [[0, 0], [0, 0], [0, 0], [0, 0]];
  padding[axis] = d > 0 ? [0, d] : [-d, 0];
  const begin = [0, 0, 0, 0];
  begin[axis] = d > 0 ? d : 0;
  return tf.slice(tf.pad(x, padding), begin, x.shape);
}

/**
 * Filtered 2x upsampling along one axis (EDM's transposed depthwise convolution with 2 t / sum t, stride 2, padding
 * (len - 1) // 2): out[2m + r] = sum over k = r + p (mod 2) of g_k x[m + (r + p - k) / 2].
 */
function filterUpAxis(x: tf.Tensor4D, taps: number[], axis: 1 | 2): tf.Tensor4D {
  const total = taps.reduce((a, t) => a + t, 0);
  const pad = Math.floor((taps.length - 1) / 2);
  const phases = [0, 1].map((r) => {
    let out: tf.Tensor4D | null = null;
    taps.forEach((tap, k) => {
      if ((k - r - pad) % 2 !== 0) return;
      const term = tf.mul(shifted(x, (r + pad - k) / 2, axis), (2 * tap) / total) as tf.Tensor4D;
      out = out ? tf.add(out, term) as tf.Tensor4D : term;
    });
    return out as unknown as tf.Tensor4D;
  });
  const [b, h, w, c] = x.shape;
  return tf.reshape(tf.stack(phases, axis + 1), axis === 1 ? [b, 2 * h, w, c] : [b, h, 2 * w, c]) as tf.Tensor4D;
}

/**
 * 2x resampling with a separable filter of 1-D taps (EDM's resample_filter): [1, 1] is 2x2 average pooling and
 * nearest-neighbour upsampling (the fast paths above); NCSN++'s [1, 3, 3, 1] is spelt out with pads and slices.
 * `padded`: the input of a downsampling already carries its (taps - 2) / 2 border (NCSN++'s fused residual convolution).
 */
export function resample2x(x: tf.Tensor4D, direction: 'down' | 'up', taps: number[], padded = false): tf.Tensor4D {
  if (taps.length === 2 && taps[0] === taps[1] && !padded) return direction === 'down' ? downsample2x(x) : upsample2x(x);
  if (direction === 'up') return filterUpAxis(filterUpAxis(x, taps, 1), taps, 2);
  const border = (taps.length - 2) / 2;
  const input = padded || border === 0 ? x : tf.pad(x, [[0, 0], [border, border], [border, border], [0, 0]]) as tf.Tensor4D;
  return filterDownAxis(filterDownAxis(input, taps, 1), taps, 2);
}

/**
 * NCSN++'s residual-encoder convolution (EDM's Conv2d with down and fused_resample): a 3x3 convolution with padding
 * 1 + (taps - 2) / 2, then the filter with stride 2 and no padding.
 */
export function convDownFused(w: WeightSource, name: string, x: tf.Tensor4D, taps: number[]): tf.Tensor4D {
  const border = (taps.length - 2) / 2;
  const wide = conv2d(w, name, border ? tf.pad(x, [[0, 0], [border, border], [border, border], [0, 0]]) as tf.Tensor4D : x);
  return resample2x(wide, 'down', taps, true);
}

/**
 * Single-head self-attention over the H*W positions: q, k, v from one 1x1 convolution whose output
 * channels interleave them (channel 3c+j is q, k, v for j = 0, 1, 2, as in EDM, so weights port).
 */
export function selfAttention(w: WeightSource, name: string, x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, wd, c] = x.shape;
  const flat = tf.reshape(groupNorm(w, `${name}.norm`, x), [b * h * wd, c]);
  // The interleaved qkv weight (output channel 3i + j) regrouped as [q | k | v] columns: a transpose of the small
  // weight, so the activations need one matrix product and one split, not a strided unstack. (The bias is added
  // apart: tfjs-wasm's fused matMul reads a reshaped bias's shape from before the reshape.)
  const weight = tf.reshape(tf.transpose(tf.reshape(w(`${name}.qkv.weight`), [c, c, 3]), [0, 2, 1]), [c, 3 * c]);
  const bias = tf.reshape(tf.transpose(tf.reshape(w(`${name}.qkv.bias`), [c, 3])), [3 * c]);
  const [q, k, v] = tf.split(tf.add(tf.matMul(flat, weight), bias), 3, 1).map((part) => tf.reshape(part, [b, h * wd, c]) as tf.Tensor3D);
  const attention = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(c)));  // [b, query, key]
  const attended = tf.reshape(tf.matMul(attention as tf.Tensor3D, v), [b, h, wd, c]) as tf.Tensor4D;
  return conv2d(w, `${name}.proj`, attended);
}
