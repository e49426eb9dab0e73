/** Exponential moving average of the network weights: a fixed per-step beta (ECT) or EDM's half-life schedule. */
import * as tf from '@tensorflow/tfjs-core';
import { backendHasKernel, EMA_UPDATE_KERNEL, indexedInputs } from '../backend/update-kernels';
import type { EmaConfig } from '../config/types';
import { validateEmaConfig } from '../config/schema';
import { UpdateKernel, hasJsTensorStorage } from './optim';

/** Floor on the half-life so that beta is 0 (copy the weights) rather than NaN when no images were seen (EDM). */
const MIN_HALF_LIFE_IMAGES = 1e-8;

/**
 * The relative width of a power-function EMA of exponent gamma (Karras et al. 2024, eq. 3): the standard deviation
 * of its averaging profile over the images seen, divided by their number: sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))).
 */
export function powerEmaSigmaRel(gamma: number): number {
  return Math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)));
}

/** Bisection steps of powerEmaGamma: the bracket [0, 2^30] shrinks below 1e-9 relative. */
const GAMMA_BISECTION_STEPS = 100;

/**
 * The exponent gamma >= 0 of the power-function EMA of relative width `sigmaRel` (in (0, sqrt(1/12)), where
 * powerEmaSigmaRel falls monotonically): EDM2's sigma_rel 0.05 is gamma 16.97, 0.10 is gamma 6.94.
 */
export function powerEmaGamma(sigmaRel: number): number {
  if (!(sigmaRel > 0 && sigmaRel < powerEmaSigmaRel(0))) throw new RangeError(`sigma_rel must be in (0, ${powerEmaSigmaRel(0).toFixed(4)}), got ${sigmaRel}`);
  let low = 0;
  let high = 2 ** 30;
  for (let i = 0; i < GAMMA_BISECTION_STEPS && high - low > 1e-12 * high; i++) {
    const mid = (low + high) / 2;
    if (powerEmaSigmaRel(mid) > sigmaRel) low = mid; else high = mid;
  }
  return (low + high) / 2;
}

/**
 * The decay of a power-function EMA for a step of `batch` images after `imagesSeen`: (1 - batch / t)^(gamma + 1)
 * with t = imagesSeen + batch, the images seen after the step. After the first step it is 0 (the average is the
 * weights), so the starting weights (a teacher's) weigh nothing; after that the average weighs image tau by
 * tau^gamma, the profile post-hoc EMA reconstructs (lib/select/posthoc-ema.ts).
 */
export function powerEmaBeta(gamma: number, imagesSeen: number, batch: number): number {
  return (1 - batch / (Math.max(imagesSeen, 0) + batch)) ** (gamma + 1);
}

/**
 * EMA decay for one step of `batch` images taken after `imagesSeen` images.
 * Fixed: cfg.beta. EDM: beta = 0.5^(batch / max(halfLife, 1e-8)),
 * halfLife = min(halfLifeKimg * 1000, imagesSeen * rampupRatio) when rampupRatio is set.
 * Power function (cfg.sigmaRel): powerEmaBeta.
 */
export function emaBeta(cfg: EmaConfig, imagesSeen: number, batch: number): number {
  if (cfg.beta !== undefined) return cfg.beta;
  if (cfg.sigmaRel !== undefined) return powerEmaBeta(powerEmaGamma(cfg.sigmaRel), imagesSeen, batch);
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
    if (fused && backendHasKernel(EMA_UPDATE_KERNEL)) {
      // the backend's own loop (native, threaded, every average in one call): the same arithmetic as below
      const averages = [...this.averages.values()];
      if (!averages.length) return;
      const inputs = indexedInputs({ average: averages, param: [...this.averages.keys()].map((name) => this.params.get(name)!) });
      const nexts = tf.engine().runKernel(EMA_UPDATE_KERNEL, inputs, { beta, count: averages.length } as unknown as tf.NamedAttrMap) as tf.Tensor[];
      averages.forEach((average, i) => {
        average.assign(nexts[i]);
        nexts[i].dispose();
      });
      return;
    }
    for (const [name, average] of this.averages) {
      const param = this.params.get(name)!;
      // written as ema + (1 - beta)(param - ema): keeps precision when beta is close to 1
      if (!fused) {
        tf.tidy(() => average.assign(tf.add(average, tf.mul(tf.sub(param, average), 1 - beta))));
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

/** The checkpoint group of tracked post-hoc EMA number i (in the order of ema.posthoc.sigmaRels). */
export function posthocGroupName(index: number): string {
  return `posthoc-${index}`;
}

/**
 * The power-function EMAs a run tracks for post-hoc EMA (ema.posthoc): one Ema per relative width, updated with
 * the run's own, saved in its checkpoints (groups posthoc-<i>) and, every snapshotEvery iterations, as snapshots
 * from which lib/select/posthoc-ema.ts reconstructs the EMA of other widths.
 */
export class PosthocEmaTracker {
  readonly emas: Ema[];

  constructor(params: Map<string, tf.Variable>, readonly sigmaRels: number[], initial?: Map<string, tf.Tensor>, kernel: UpdateKernel = 'auto') {
    this.emas = [];
    try {
      for (const sigmaRel of sigmaRels) this.emas.push(new Ema(params, { sigmaRel }, initial, kernel));
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  /** Moves every tracked average (see Ema.update). */
  update(imagesSeen: number, batch: number): void {
    for (const ema of this.emas) ema.update(imagesSeen, batch);
  }

  /** The tracked averages as checkpoint groups (live variables: do not dispose). */
  groups(): Record<string, Map<string, tf.Tensor>> {
    return Object.fromEntries(this.emas.map((ema, i) => [posthocGroupName(i), ema.weights]));
  }

  /** Sets the tracked averages from checkpoint groups; names the file when one is missing. */
  restore(file: string, groups: Record<string, Map<string, tf.Tensor> | undefined>): void {
    this.emas.forEach((ema, i) => {
      const weights = groups[posthocGroupName(i)];
      if (!weights) throw new Error(`${file}: lacks the tracked post-hoc EMA group ${posthocGroupName(i)} (sigma_rel ${this.sigmaRels[i]}) that ema.posthoc asks for`);
      ema.setWeights(weights);
    });
  }

  dispose(): void {
    for (const ema of this.emas) ema.dispose();
  }
}
