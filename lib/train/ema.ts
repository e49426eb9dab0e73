/** Exponential moving average of the network weights: a fixed per-step beta (ECT) or EDM's half-life schedule. */
import * as tf from '@tensorflow/tfjs-core';
import { backendHasKernel, EMA_UPDATE_KERNEL } from './update-kernels';
import type { EmaConfig } from '../config/types';
import { validateEmaConfig } from '../config/schema';
import { UpdateKernel, hasJsTensorStorage } from './optim';

/** Floor on the half-life so that beta is 0 (copy the weights) rather than NaN when no images were seen (EDM). */
const MIN_HALF_LIFE_IMAGES = 1e-8;

/**
 * EMA decay for one step of `batch` images taken after `imagesSeen` images.
 * Fixed: cfg.beta. EDM: beta = 0.5^(batch / max(halfLife, 1e-8)),
 * halfLife = min(halfLifeKimg * 1000, imagesSeen * rampupRatio) when rampupRatio is set.
 */
export function emaBeta(cfg: EmaConfig, imagesSeen: number, batch: number): number {
  if (cfg.beta !== undefined) return cfg.beta;
  let halfLifeImages = cfg.halfLifeKimg! * 1000;
  if (cfg.rampupRatio !== undefined) halfLifeImages = Math.min(halfLifeImages, imagesSeen * cfg.rampupRatio);
  return 0.5 ** (batch / Math.max(halfLifeImages, MIN_HALF_LIFE_IMAGES));
}

/** Lists names missing from, unexpected in, or with a different shape in `weights` compared with `params`. */
function describeMismatch(params: Map<string, tf.Variable>, weights: Map<string, tf.Tensor>): string[] {
  const problems: string[] = [];
  for (const [name, param] of params) {
    const weight = weights.get(name);
    if (weight === undefined) problems.push(`missing ${name}`);
    else if (!tf.util.arraysEqual(weight.shape, param.shape)) problems.push(`${name} has shape [${weight.shape}], parameter has [${param.shape}]`);
  }
  for (const name of weights.keys()) if (!params.has(name)) problems.push(`unexpected ${name}`);
  return problems;
}

/** Moving average of a set of named parameters; the averaged weights are non-trainable variables updated in place. */
export class Ema {
  private readonly averages = new Map<string, tf.Variable>();

  /**
   * Starts the average from `initial` (same names and shapes as `params`) or, without it, from a copy of `params`.
   * The caller keeps ownership of `initial`. `kernel` chooses how updates are computed (see createOptimizer).
   */
  constructor(private readonly params: Map<string, tf.Variable>, private readonly cfg: EmaConfig, initial?: Map<string, tf.Tensor>,
              private readonly kernel: UpdateKernel = 'auto') {
    validateEmaConfig(cfg);  // the same check as config resolution: a resolved config never fails here
    const start: Map<string, tf.Tensor> = initial ?? params;
    const problems = describeMismatch(params, start);
    if (problems.length > 0) throw new Error(`ema: initial weights do not match the parameters: ${problems.join('; ')}`);
    for (const [name, param] of params) {
      if (param.dtype !== 'float32') throw new Error(`ema: parameter '${name}' has dtype ${param.dtype}; only float32 is supported`);
      this.averages.set(name, tf.variable(start.get(name)!, false));
    }
  }

  /** The averaged weights by parameter name (live variables: they change on update; do not dispose them). */
  get weights(): Map<string, tf.Tensor> {
    return this.averages;
  }

  /** The decay used for a step of `batch` images taken after `imagesSeen` images. */
  beta(imagesSeen: number, batch: number): number {
    return emaBeta(this.cfg, imagesSeen, batch);
  }

  /** Moves the average towards the current parameters: ema = beta * ema + (1 - beta) * param. */
  update(imagesSeen: number, batch: number): void {
    const beta = this.beta(imagesSeen, batch);
    const fused = this.kernel === 'fused' || (this.kernel === 'auto' && hasJsTensorStorage());
    const native = fused && backendHasKernel(EMA_UPDATE_KERNEL);
    for (const [name, average] of this.averages) {
      const param = this.params.get(name)!;
      // written as ema + (1 - beta)(param - ema): keeps precision when beta is close to 1
      if (!fused) {
        tf.tidy(() => average.assign(tf.add(average, tf.mul(tf.sub(param, average), 1 - beta))));
        continue;
      }
      if (native) {
        // the backend's own loop (native, threaded): the same arithmetic as below
        const next = tf.engine().runKernel(EMA_UPDATE_KERNEL, { average, param }, { beta } as unknown as tf.NamedAttrMap) as tf.Tensor;
        average.assign(next);
        next.dispose();
        continue;
      }
      // one loop instead of three kernels; dataSync may return the backend's own arrays, so write a fresh one
      const current = average.dataSync() as Float32Array;
      const target = param.dataSync() as Float32Array;
      const next = new Float32Array(current.length);
      for (let i = 0; i < next.length; i++) next[i] = current[i] + (target[i] - current[i]) * (1 - beta);
      tf.tidy(() => average.assign(tf.tensor(next, average.shape, 'float32')));
    }
  }

  /** Overwrites the averaged weights (e.g. from a checkpoint); the caller keeps ownership of `weights`. */
  setWeights(weights: Map<string, tf.Tensor>): void {
    const problems = describeMismatch(this.params, weights);
    if (problems.length > 0) throw new Error(`ema: weights do not match the parameters: ${problems.join('; ')}`);
    for (const [name, average] of this.averages) average.assign(weights.get(name)!);
  }

  /** Frees the averaged weights (not the parameters). */
  dispose(): void {
    for (const average of this.averages.values()) average.dispose();
    this.averages.clear();
  }
}
