/** Samplers: EDM's deterministic Heun sampler (the teacher) and the 1-/multi-step consistency sampler. */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig, PrecondMode, RunConfig } from './config/types';
import { denoise } from './edm/precond';
import type { ClassLabels, UNet } from './nn/unet';
import { drawSeed, hashUniform, imageNoise } from './random';

/** A denoiser D(x, sigma) at one noise level for the whole batch. */
export type Denoiser = (x: tf.Tensor4D, sigma: number) => tf.Tensor4D;

/**
 * The noise a sampler draws, by sampler step: step 0 is z ~ N(0, I) of x = sigma_max z; step k >= 1 the fresh
 * noise added before the k-th consistency step. Each call returns a new tensor, which the sampler frees.
 */
export type SampleNoise = (step: number) => tf.Tensor4D;

/** The noise seed of `ect sample`, `ect eval`, in-run evaluations and sample grids unless told otherwise. */
export const DEFAULT_SAMPLE_SEED = 0;

/** Heun time steps t_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < N, then t_N = 0. */
export function heunTimeSteps(edm: Pick<EdmConfig, 'sigmaMin' | 'sigmaMax' | 'rho' | 'heunSteps'>): number[] {
  const { sigmaMin, sigmaMax, rho, heunSteps: n } = edm;
  const steps: number[] = [];
  for (let i = 0; i < n; i++) {
    const frac = n > 1 ? i / (n - 1) : 0;
    steps.push(Math.pow(sigmaMax ** (1 / rho) + frac * (sigmaMin ** (1 / rho) - sigmaMax ** (1 / rho)), rho));
  }
  steps.push(0);
  return steps;
}

/** Deterministic Heun sampling from noise z ~ N(0, I): 2N - 1 network evaluations. */
export function sampleHeun(denoiser: Denoiser, z: tf.Tensor4D, times: number[]): tf.Tensor4D {
  let x = tf.mul(z, times[0]) as tf.Tensor4D;                             // x_0 = sigma_max z
  for (let i = 0; i < times.length - 1; i++) {
    const [tCur, tNext] = [times[i], times[i + 1]];
    const next = tf.tidy(() => {
      const slope = tf.div(tf.sub(x, denoiser(x, tCur)), tCur);          // d = (x - D(x, t)) / t
      const euler = tf.add(x, tf.mul(slope, tNext - tCur)) as tf.Tensor4D; // Euler step
      if (tNext === 0) return euler;                                      // last step: Euler only
      const slopeNext = tf.div(tf.sub(euler, denoiser(euler, tNext)), tNext);
      return tf.add(x, tf.mul(tf.add(slope, slopeNext), 0.5 * (tNext - tCur))) as tf.Tensor4D; // second-order correction
    });
    x.dispose();
    x = next;
  }
  return x;
}

/**
 * Consistency sampling at times [t_0 = sigma_max, mid..]: x = D(x, t); add fresh noise t' eps before the next
 * time, eps = freshNoise(k) for the k-th step after the first.
 */
export function sampleConsistency(denoiser: Denoiser, z: tf.Tensor4D, times: number[], freshNoise: SampleNoise): tf.Tensor4D {
  let x = tf.mul(z, times[0]) as tf.Tensor4D;
  for (let i = 0; i < times.length; i++) {
    const next = tf.tidy(() => {
      const denoised = denoiser(x, times[i]);
      const tNext = times[i + 1];
      if (tNext === undefined) return denoised;
      return tf.add(denoised, tf.mul(freshNoise(i + 1), tNext)) as tf.Tensor4D;
    });
    x.dispose();
    x = next;
  }
  return x;
}

/** How many steps: 1 or 2 (consistency) or 'heun' (the diffusion teacher's 18-step sampler). */
export type SampleSteps = 1 | 2 | 'heun';

/** Parses '1', '2' or 'heun' from a command line. */
export function parseSampleSteps(text: string): SampleSteps {
  if (text === '1' || text === '2') return Number(text) as 1 | 2;
  if (text === 'heun') return 'heun';
  throw new Error(`--steps must be 1, 2 or heun, got '${text}'`);
}

/** How a sampler names its grids and metric columns: heun, 1step, 2step. */
export function samplerLabel(steps: SampleSteps): string {
  return steps === 'heun' ? 'heun' : `${steps}step`;
}

/** The samplers a run's grids and evaluations use: Heun for a diffusion teacher, 1 and 2 steps for a consistency model. */
export function runSamplers(cfg: Pick<RunConfig, 'kind' | 'ect'>): SampleSteps[] {
  return cfg.kind === 'pretrain' ? ['heun'] : cfg.ect.midT.length ? [1, 2] : [1];
}

/** What a sampler needs of a trained model. */
export interface SamplerModel { net: UNet; weights: Map<string, tf.Tensor>; edm: EdmConfig; samplePrecond: PrecondMode; midT: number[] }

/** The sampler view of a run's network: the given weights (usually the EMA) and the run's sampling settings. */
export function samplerModelFor(net: UNet, weights: Map<string, tf.Tensor>, cfg: Pick<RunConfig, 'edm' | 'ect'>): SamplerModel {
  return { net, weights, edm: cfg.edm, samplePrecond: cfg.ect.samplePrecond, midT: cfg.ect.midT };
}

/** A sampler: noise (and, for a conditional model, each image's class id) in, images in about [-1, 1] out. */
export type Sampler = (noise: SampleNoise, labels?: ClassLabels) => tf.Tensor4D;

/**
 * The sampler of a model. Heun uses training-mode preconditioning (plain EDM); consistency sampling uses the
 * model's sampling preconditioning (eval mode by default).
 */
export function makeSampler(model: SamplerModel, steps: SampleSteps, opts: { midT?: number[] } = {}): Sampler {
  const mode: PrecondMode = steps === 'heun' ? 'train' : model.samplePrecond;
  const times = steps === 'heun' ? heunTimeSteps(model.edm) : consistencyTimes(model, steps, opts.midT ?? model.midT);
  return (noise, labels) => {
    const denoiser: Denoiser = (x, sigma) => denoise(model.net, x, sigma, { edm: model.edm, mode, weights: model.weights, labels });
    const z = noise(0);
    try {
      return steps === 'heun' ? sampleHeun(denoiser, z, times) : sampleConsistency(denoiser, z, times, noise);
    } finally {
      z.dispose();
    }
  };
}

/** Times of a `steps`-step consistency sampler: sigma_max, then the first steps - 1 intermediate times. */
function consistencyTimes(model: SamplerModel, steps: 1 | 2, midT: number[]): number[] {
  if (steps === 2 && midT.length < 1) throw new Error('2-step sampling needs one intermediate time (midT)');
  return [model.edm.sigmaMax, ...midT.slice(0, steps - 1)];
}

/**
 * The sampling noise of images start .. start+count-1 of a seed: image i's noise at every sampler step is a
 * function of (seed, i, step) only, so the images do not depend on the batch size or on where a batch starts.
 */
export function sampleNoise(seed: number, start: number, count: number, shape: [number, number, number]): SampleNoise {
  const size = shape[0] * shape[1] * shape[2];
  return (step) => tf.tensor4d(imageNoise(seed, `sample-noise-${step}`, start, count, size), [count, ...shape]);
}

/** The classes asked of a conditional model: one class for every image, or one per image (the k-th for the k-th image made). */
export type ImageLabels = number | ArrayLike<number>;

/** Options of generateImages and sampleBatches. */
export interface GenerateOptions {
  seed?: number;                 // noise seed (DEFAULT_SAMPLE_SEED)
  start?: number;                // index of the first image: images start .. start+n-1 of the seed (0)
  batch?: number;                // images per network call (64); does not change the images
  midT?: number[];               // intermediate times of multistep sampling (default: the model's)
  labels?: ImageLabels;          // classes of a conditional model (default: drawn per image from the seed, see batchLabels)
  onBatch?: (done: number, total: number) => void;
}

/**
 * The class ids of images first .. first+count-1 of a noise seed (`offset` is where they start among the images asked
 * for): undefined for an unconditional model. A conditional model takes the classes asked for, else draws image i's
 * class uniformly from (seed, i, 'sample-class'), so that evaluations, run grids and `ect sample` without --class
 * agree whatever the batches. Asking an unconditional model for classes, or for a class it lacks, is an error.
 */
export function batchLabels(model: SamplerModel, labels: ImageLabels | undefined, seed: number, first: number, count: number, offset: number): Int32Array | undefined {
  const classes = model.net.cfg.labelDim;
  if (!classes) {
    if (labels !== undefined) throw new Error('class labels asked for, but the model is unconditional (net.labelDim 0)');
    return undefined;
  }
  if (labels === undefined) {
    return Int32Array.from({ length: count }, (_, k) => Math.floor(hashUniform(drawSeed(seed, first + k, 'sample-class'), 0) * classes));
  }
  const asked = Array.from({ length: count }, (_, k) => (typeof labels === 'number' ? labels : labels[offset + k]));
  const bad = asked.find((id) => !Number.isInteger(id) || id < 0 || id >= classes);
  if (bad !== undefined) throw new Error(`class ${bad} is not a class of this model (0..${classes - 1})`);
  return Int32Array.from(asked);
}

/** Class ids of `perClass` images of each of `classes` classes, class by class (0, 0, ..., 1, 1, ...): a per-class grid's rows. */
export function perClassLabels(classes: number, perClass: number): Int32Array {
  return Int32Array.from({ length: classes * perClass }, (_, i) => Math.floor(i / perClass));
}

/** One batch of samples: images start .. start+count-1 of the seed and their class ids (conditional models). */
export interface SampleBatch { images: tf.Tensor4D; labels?: Int32Array; start: number }

/**
 * Generates images start .. start+n-1 of a noise seed batch by batch, so that any number of images streams through
 * a writer; the consumer disposes each batch's images.
 */
export function* sampleBatches(model: SamplerModel, steps: SampleSteps, n: number, opts: GenerateOptions = {}): Generator<SampleBatch> {
  const sampler = makeSampler(model, steps, { midT: opts.midT });
  const { resolution, imageChannels } = model.net.cfg;
  const batch = opts.batch ?? 64;
  const seed = opts.seed ?? DEFAULT_SAMPLE_SEED;
  const start = opts.start ?? 0;
  if (typeof opts.labels === 'object' && opts.labels.length !== n) throw new Error(`${opts.labels.length} class labels for ${n} images`);
  for (let done = 0; done < n; done += batch) {
    const count = Math.min(batch, n - done);
    const labels = batchLabels(model, opts.labels, seed, start + done, count, done);
    const images = sampler(sampleNoise(seed, start + done, count, [resolution, resolution, imageChannels]), labels);
    opts.onBatch?.(done + count, n);
    yield { images, labels, start: start + done };
  }
}

/** Generates images start .. start+n-1 of a noise seed, in batches; returns [n, H, W, C]. */
export function generateImages(model: SamplerModel, steps: SampleSteps, n: number, opts: GenerateOptions = {}): tf.Tensor4D {
  const parts = [...sampleBatches(model, steps, n, opts)].map((part) => part.images);
  if (parts.length === 1) return parts[0];
  const all = tf.concat(parts, 0) as tf.Tensor4D;
  parts.forEach((p) => p.dispose());
  return all;
}

/** A run of consecutive image indices of a noise seed: images start .. start+count-1. */
export interface SeedRange { start: number; count: number }

/**
 * EDM's `--seeds` list ('0-63,100-199', '7', '0-9999') as ranges of image indices. EDM gives each image a seed of its
 * own; here an image is (noise seed, index) and its noise depends on nothing else (sampleNoise), so image s is the same
 * whichever range draws it. Ranges may not overlap: each image is written once.
 */
export function parseSeedRanges(text: string): SeedRange[] {
  const ranges = text.split(',').map((part) => {
    const match = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!match) throw new Error(`--seeds: '${part}' is not a number or a range a-b (e.g. 0-63,100-199)`);
    const [first, last] = [Number(match[1]), Number(match[2] ?? match[1])];
    if (last < first) throw new Error(`--seeds: range ${part.trim()} ends before it starts`);
    return { start: first, count: last - first + 1 };
  });
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  sorted.slice(1).forEach((range, i) => {
    const before = sorted[i];
    if (range.start < before.start + before.count) throw new Error(`--seeds: ${range.start} is drawn twice (ranges overlap)`);
  });
  return ranges;
}

/** The image indices of seed ranges, in order. */
export function seedIndices(ranges: SeedRange[]): number[] {
  return ranges.flatMap(({ start, count }) => Array.from({ length: count }, (_, k) => start + k));
}

/**
 * Generates the images of seed ranges, range after range in batches (sampleBatches on each): the same images as
 * generating 0 .. max and keeping those indices. `labels`, one per image asked for or one for all, follow the ranges' order.
 */
export function* sampleSeedRanges(model: SamplerModel, steps: SampleSteps, ranges: SeedRange[], opts: GenerateOptions = {}): Generator<SampleBatch> {
  const total = ranges.reduce((sum, range) => sum + range.count, 0);
  if (typeof opts.labels === 'object' && opts.labels.length !== total) throw new Error(`${opts.labels.length} class labels for ${total} images`);
  let done = 0;
  for (const range of ranges) {
    const labels = typeof opts.labels === 'object' ? Array.prototype.slice.call(opts.labels, done, done + range.count) as number[] : opts.labels;
    const offset = done;
    yield* sampleBatches(model, steps, range.count, { ...opts, start: range.start, labels, onBatch: (finished) => opts.onBatch?.(offset + finished, total) });
    done += range.count;
  }
}
