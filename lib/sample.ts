/** Samplers: EDM's deterministic Heun sampler (the teacher) and the 1-/multi-step consistency sampler. */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig, PrecondMode, RunConfig } from './config/types';
import { denoise } from './edm/precond';
import type { UNet } from './nn/unet';

/** A denoiser D(x, sigma) at one noise level for the whole batch. */
export type Denoiser = (x: tf.Tensor4D, sigma: number) => tf.Tensor4D;

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

/** Consistency sampling at times [t_0 = sigma_max, mid..]: x = D(x, t); add fresh noise t' eps before the next time. */
export function sampleConsistency(denoiser: Denoiser, z: tf.Tensor4D, times: number[], noiseSeed: number): tf.Tensor4D {
  let x = tf.mul(z, times[0]) as tf.Tensor4D;
  for (let i = 0; i < times.length; i++) {
    const next = tf.tidy(() => {
      const denoised = denoiser(x, times[i]);
      const tNext = times[i + 1];
      if (tNext === undefined) return denoised;
      const fresh = tf.randomNormal(z.shape, 0, 1, 'float32', noiseSeed + i);
      return tf.add(denoised, tf.mul(fresh, tNext)) as tf.Tensor4D;
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

/** What a sampler needs of a trained model. */
export interface SamplerModel { net: UNet; weights: Map<string, tf.Tensor>; edm: EdmConfig; samplePrecond: PrecondMode; midT: number[] }

/** The sampler view of a run's network: the given weights (usually the EMA) and the run's sampling settings. */
export function samplerModelFor(net: UNet, weights: Map<string, tf.Tensor>, cfg: Pick<RunConfig, 'edm' | 'ect'>): SamplerModel {
  return { net, weights, edm: cfg.edm, samplePrecond: cfg.ect.samplePrecond, midT: cfg.ect.midT };
}

/**
 * A sampler function: (z, seed) -> images in about [-1, 1]. Heun uses training-mode preconditioning
 * (plain EDM); consistency sampling uses the model's sampling preconditioning (eval mode by default).
 */
export function makeSampler(model: SamplerModel, steps: SampleSteps, opts: { midT?: number[] } = {}): (z: tf.Tensor4D, seed: number) => tf.Tensor4D {
  const mode: PrecondMode = steps === 'heun' ? 'train' : model.samplePrecond;
  const denoiser: Denoiser = (x, sigma) => tf.tidy(() =>
    denoise(model.net, x, tf.fill([x.shape[0]], sigma) as tf.Tensor1D, { edm: model.edm, mode, weights: model.weights }));
  if (steps === 'heun') {
    const times = heunTimeSteps(model.edm);
    return (z) => sampleHeun(denoiser, z, times);
  }
  const midT = opts.midT ?? model.midT;
  if (steps === 2 && midT.length < 1) throw new Error('2-step sampling needs one intermediate time (midT)');
  const times = [model.edm.sigmaMax, ...midT.slice(0, steps - 1)];
  return (z, seed) => sampleConsistency(denoiser, z, times, seed);
}

/** Generates n images in batches from a seeded noise stream; returns [n, H, W, C]. */
export function generateImages(model: SamplerModel, steps: SampleSteps, n: number,
  opts: { batch?: number; seed?: number; midT?: number[]; onBatch?: (done: number, total: number) => void } = {}): tf.Tensor4D {
  const sampler = makeSampler(model, steps, { midT: opts.midT });
  const { resolution, imageChannels } = model.net.cfg;
  const batch = opts.batch ?? 64;
  const seed = opts.seed ?? 0;
  const parts: tf.Tensor4D[] = [];
  for (let done = 0; done < n; done += batch) {
    const count = Math.min(batch, n - done);
    const z = tf.randomNormal([count, resolution, resolution, imageChannels], 0, 1, 'float32', seed * 100003 + done) as tf.Tensor4D;
    parts.push(sampler(z, seed * 7 + done + 1));
    z.dispose();
    opts.onBatch?.(done + count, n);
  }
  const all = tf.concat(parts, 0) as tf.Tensor4D;
  parts.forEach((p) => p.dispose());
  return all;
}
