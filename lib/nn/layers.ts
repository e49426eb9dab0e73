/** Building blocks of the DDPM++ UNet: seeded parameter initialisation and the pure layer functions. */
import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { hashUniform, mix32 } from '../random';
import { fusedDownsample2x, fusedGroupNorm, fusedUpsample2x, hasFusedGroupNorm, hasFusedResample } from './fused';

/** How a weight is initialised (EDM's xavier-uniform, scaled: 1e-5 gives EDM's "init_zero"). */
export interface InitSpec { kind: 'xavier' | 'zeros' | 'ones'; scale?: number; fanIn?: number; fanOut?: number }

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
    const keep = Float32Array.from({ length: batch }, (_, i) => (hashUniform(this.labels.seed, i) >= this.labels.rate ? 1 : 0));
    const mask = tf.keep(tf.tensor2d(keep, [batch, 1]));
    this.masks.set(name, mask);
    return mask;
  }

  /** The mask for a layer (scaled by 1/(1-rate)), created on first use and replayed afterwards. */
  mask(name: string, shape: number[]): tf.Tensor {
    const known = this.masks.get(name);
    if (known) {
      if (known.shape.join() !== shape.join()) throw new Error(`dropout mask ${name}: shape ${known.shape} reused for ${shape}`);
      return known;
    }
    const keep = 1 - this.rate;
    // One counter-based hash per unit in a plain loop: the same mask on every backend, and about 100 times
    // faster than randomUniform + less + cast + div (whose JavaScript random generator took ~12 ms per
    // 1.6M-unit mask, a tenth of a training step).
    const values = new Float32Array(tf.util.sizeFromShape(shape));
    const scale = 1 / keep, seed = layerSeed(this.seed, name);
    for (let i = 0; i < values.length; i++) values[i] = hashUniform(seed, i) < keep ? scale : 0;
    const mask = tf.keep(tf.tensor(values, shape, 'float32'));
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
function layerSeed(stepSeed: number, name: string): number {
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

/** Convolution with 'same' padding and its bias in one fused kernel, NHWC; 1x1 convolutions run as one matrix product. */
export function conv2d(w: WeightSource, name: string, x: tf.Tensor4D): tf.Tensor4D {
  const weight = w(`${name}.weight`) as tf.Tensor4D;
  const bias = w(`${name}.bias`);
  const [kh, , cin, cout] = weight.shape;
  if (kh === 1) {
    const [b, h, wd] = x.shape;
    const flat = tf.fused.matMul({ a: tf.reshape(x, [b * h * wd, cin]), b: tf.reshape(weight, [cin, cout]), bias });
    return tf.reshape(flat, [b, h, wd, cout]);
  }
  return tf.fused.conv2d({ x, filter: weight, strides: 1, pad: 'same', bias });
}

/** Options of groupNorm: a per-sample, per-channel shift added before it, SiLU after it, the variance epsilon. */
export interface GroupNormOptions {
  shift?: tf.Tensor2D;   // [B, C], added at every pixel before normalising
  silu?: boolean;        // apply SiLU to the output
  eps?: number;          // default 1e-6 (EDM)
}

/**
 * GroupNorm over NHWC with groups = min(32, C/4) (EDM), affine gamma/beta per channel, optionally with a
 * shift before and SiLU after: silu(GroupNorm(x + shift)). Backends with the fused kernels (lib/nn/fused.ts)
 * run it as one kernel each way; others compose it from tfjs ops.
 */
export function groupNorm(w: WeightSource, name: string, x: tf.Tensor4D, options: GroupNormOptions = {}): tf.Tensor4D {
  const [b, h, wd, c] = x.shape;
  const groups = groupCount(c);
  const eps = options.eps ?? 1e-6;
  const gamma = w(`${name}.weight`), beta = w(`${name}.bias`);
  if (c % groups === 0 && x.dtype === 'float32' && hasFusedGroupNorm()) {
    return fusedGroupNorm(x, gamma, beta, { groups, eps, silu: options.silu ?? false }, options.shift);
  }
  const input = options.shift ? tf.add(x, tf.reshape(options.shift, [b, 1, 1, c])) : x;
  const grouped = tf.reshape(input, [b, h * wd, groups, c / groups]);
  const { mean, variance } = tf.moments(grouped, [1, 3], true);
  const normed = tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, eps)));
  const y = tf.add(tf.mul(tf.reshape(normed, [b, h, wd, c]), gamma), beta) as tf.Tensor4D;
  return options.silu ? silu(y) as tf.Tensor4D : y;
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

/**
 * Positional embedding of c_noise with `channels` features: f_i = (1/10000)^(i/(half-1)),
 * emb = concat(cos(c_noise f), sin(c_noise f)).
 */
export function positionalEmbedding(cNoise: tf.Tensor1D, channels: number): tf.Tensor2D {
  const half = channels / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.pow(1 / 10000, i / Math.max(half - 1, 1));
  const angles = tf.mul(tf.reshape(cNoise, [-1, 1]), tf.tensor2d(freqs, [1, half]));
  return tf.concat([tf.cos(angles), tf.sin(angles)], 1) as tf.Tensor2D;
}

/**
 * Single-head self-attention over the H*W positions: q, k, v from one 1x1 convolution whose output
 * channels interleave them (channel 3c+j is q, k, v for j = 0, 1, 2, as in EDM, so weights port).
 */
export function selfAttention(w: WeightSource, name: string, x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, wd, c] = x.shape;
  const flat = tf.reshape(groupNorm(w, `${name}.norm`, x), [b * h * wd, c]);
  // the interleaved qkv weight split into its three [c, c] parts (small), so the activations need no strided unstack
  const weight = tf.reshape(w(`${name}.qkv.weight`), [c, c, 3]);
  const bias = tf.reshape(w(`${name}.qkv.bias`), [c, 3]);
  // (the bias is added apart: tfjs-wasm's fused matMul reads a reshaped bias's shape from before the reshape)
  const [q, k, v] = [0, 1, 2].map((j) => tf.reshape(tf.add(
    tf.matMul(flat, tf.reshape(tf.slice(weight, [0, 0, j], [c, c, 1]), [c, c])), tf.reshape(tf.slice(bias, [0, j], [c, 1]), [c])),
  [b, h * wd, c]) as tf.Tensor3D);
  const attention = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(c)));  // [b, query, key]
  const attended = tf.reshape(tf.matMul(attention as tf.Tensor3D, v), [b, h, wd, c]) as tf.Tensor4D;
  return conv2d(w, `${name}.proj`, attended);
}
