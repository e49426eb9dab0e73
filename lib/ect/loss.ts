/**
 * The ECT loss (docs/method.md §6; ECT §3), step by step as in the paper: sample t, map it to r, share one
 * noise, take the target at (x_r, r) without gradient and with the student's dropout mask, compare.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { EctConfig, EdmConfig } from '../config/types';
import { normalNoiseValues, stepDropoutMasks, type LossContext, type LossStep, type StepHostInputs, type TrainingLoss } from '../training-loss';
import { denoise, denoiseHostInputs, type DenoiseHostInputs } from '../edm/precond';
import type { DropoutMasks, UNet } from '../nn/unet';
import { drawSeed, logNormalSamples } from '../random';
import { mapTimeToR, stageAt } from './mapping';
import { pseudoHuberTensor, timeWeight } from './weighting';

/** The random draws of one ECT step: t, r, and the seed of the shared noise. */
export interface EctDraws { t: Float64Array; r: Float64Array; stage: number; noiseSeed: number }

/** Draws ln t ~ N(P_mean, P_std) and maps each t to r at the stage of this iteration. */
export function ectDraws(batch: number, ect: EctConfig, seed: number, iteration: number): EctDraws {
  const stage = stageAt(iteration, ect.stageIters, ect.maxStage);
  const t = logNormalSamples(drawSeed(seed, iteration, 'ect-t'), batch, ect.pMean, ect.pStd);
  const r = t.map((ti) => mapTimeToR(ti, stage, ect));
  return { t, r, stage, noiseSeed: drawSeed(seed, iteration, 'ect-noise') };
}

/** The host arrays of one ECT step (the `arrays` of its StepHostInputs, typed). */
export interface EctHostInputs {
  draws: EctDraws;
  noise: Float32Array;                // n, shared by the target and the student
  r: Float32Array;                    // r per example, as the network sees it (float32)
  t: Float32Array;                    // t per example, as the network sees it (float32)
  target: DenoiseHostInputs | null;   // the target pass's coefficients at r (null: every r is 0, no target pass)
  boundary: Uint8Array | null;        // 1 where r > 0, at full image size (null: every r > 0, or none)
  student: DenoiseHostInputs;         // the student pass's coefficients at t
  weights: Float32Array;              // w(t, r) per example
}

/** Computes every host array of an ECT step for a batch of `shape` (no tensor work but the seeded noise draw). */
export function ectHostInputs(net: UNet, shape: [number, number, number, number], ect: EctConfig, edm: EdmConfig, ctx: LossContext): EctHostInputs {
  const [batch, h, w, c] = shape;
  // 1. sample t ~ LogNormal(P_mean, P_std) and map it to r < t at this iteration's stage
  const draws = ectDraws(batch, ect, ctx.seed, ctx.iteration);
  // both passes: train mode, the step's label dropout (its unit masks are made by the passes)
  const pass = { edm, mode: 'train' as const, training: true, labels: ctx.labels, dropout: stepDropoutMasks(net, ctx) };
  // 2. one noise n, shared by the target and the student pass
  const noise = normalNoiseValues(shape, draws.noiseSeed);
  const r = Float32Array.from(draws.r), t = Float32Array.from(draws.t);
  const anyTarget = r.some((v) => v !== 0), allPositive = r.every((v) => v > 0);
  let boundary: Uint8Array | null = null;
  if (anyTarget && !allPositive) {
    // the mask at full size from the host: broadcasting a [B, 1, 1, 1] mask runs tfjs's element-by-element Tile
    boundary = new Uint8Array(batch * h * w * c);
    r.forEach((v, i) => { if (v > 0) boundary!.fill(1, i * h * w * c, (i + 1) * h * w * c); });
  }
  return {
    draws, noise, r, t, boundary,
    target: anyTarget ? denoiseHostInputs(net, r, pass) : null,
    student: denoiseHostInputs(net, t, pass),
    weights: Float32Array.from(draws.t, (ti, i) => timeWeight(ti, draws.r[i], ect.weighting, edm.sigmaData)),
  };
}

/** An ECT step's host arrays by name, and its structure: which passes it runs, at which stage. */
function ectStepHostInputs(host: EctHostInputs): StepHostInputs {
  const arrays = new Map<string, Float32Array | Uint8Array>([['noise', host.noise], ['r', host.r], ['t', host.t], ['weights', host.weights]]);
  const passes: Array<[string, DenoiseHostInputs | null]> = [['target', host.target], ['student', host.student]];
  for (const [pass, inputs] of passes) {
    if (!inputs) continue;
    arrays.set(`${pass}.cIn`, inputs.cIn).set(`${pass}.cSkip`, inputs.cSkip).set(`${pass}.cOut`, inputs.cOut).set(`${pass}.embedding`, inputs.embedding.values);
    if (inputs.classes) arrays.set(`${pass}.classes`, inputs.classes);
  }
  if (host.boundary) arrays.set('boundary', host.boundary);
  const passesRun = host.target ? (host.boundary ? 'target pass, some r = 0' : 'target pass') : 'no target pass (every r = 0)';
  return { structure: `ECT stage ${host.draws.stage}, ${passesRun}`, arrays };
}

/** ECT tuning's loss. */
export class EctLoss implements TrainingLoss {
  constructor(private readonly ect: EctConfig, private readonly edm: EdmConfig) {}

  prepare(net: UNet, x0: tf.Tensor4D, ctx: LossContext): EctStep {
    return new EctStep(net, x0, ectHostInputs(net, x0.shape, this.ect, this.edm, ctx), this.ect, this.edm, ctx);
  }

  hostInputs(net: UNet, shape: [number, number, number, number], ctx: LossContext): StepHostInputs {
    return ectStepHostInputs(ectHostInputs(net, shape, this.ect, this.edm, ctx));
  }

  stage(iteration: number): number {
    return stageAt(iteration, this.ect.stageIters, this.ect.maxStage);
  }
}

/** One ECT step: the target is computed when the step is made (no gradient); `loss()` runs the student pass. */
export class EctStep implements LossStep {
  readonly draws: EctDraws;
  readonly target: tf.Tensor4D;
  readonly host: StepHostInputs;
  readonly dropout: DropoutMasks;
  private readonly noise: tf.Tensor4D;

  constructor(private readonly net: UNet, private readonly x0: tf.Tensor4D, private readonly inputs: EctHostInputs, private readonly ect: EctConfig,
    private readonly edm: EdmConfig, private readonly ctx: LossContext) {
    this.draws = inputs.draws;
    this.host = ectStepHostInputs(inputs);
    // one dropout mask and one noise n, shared by the target and the student pass
    this.dropout = stepDropoutMasks(net, ctx);
    this.noise = tf.tensor4d(inputs.noise, x0.shape);
    // 3. the target, without gradient
    this.target = this.targetPass();
  }

  /** A per-example column [B] as a [B, 1, 1, 1] tensor. */
  private column(values: Float32Array): tf.Tensor4D {
    return tf.tensor4d(values, [values.length, 1, 1, 1]);
  }

  /** Target D(x_r, r) with the student's dropout mask; x0 where r = 0; NaN replaced by 0. */
  private targetPass(): tf.Tensor4D {
    const { target, r, boundary } = this.inputs;
    if (!target) return tf.clone(this.x0);  // pure diffusion batch: skip the target pass
    return tf.tidy(() => {
      // x_r = x0 + r n, denoised as the student is (train mode, its dropout mask)
      const xr = tf.add(this.x0, tf.mul(this.noise, this.column(r))) as tf.Tensor4D;
      const predicted = denoise(this.net, xr, r, { edm: this.edm, mode: 'train', training: true, dropout: this.dropout, labels: this.ctx.labels, host: target });
      // NaN in the target becomes 0; where r = 0 the target is x0 itself (the boundary condition f(x, 0) = x)
      const finite = tf.where(tf.isNaN(predicted), tf.zerosLike(predicted), predicted);
      if (!boundary) return finite;
      return tf.where(tf.tensor4d(boundary, this.x0.shape, 'bool'), finite, this.x0) as tf.Tensor4D;
    });
  }

  /** Batch mean of w(t, r) rho(||D(x_t, t) - target||^2); gradients flow through the student pass only. */
  loss(): tf.Scalar {
    return tf.tidy(() => {
      const { t, student, weights } = this.inputs;
      // 4. the student D(x_t, t) at x_t = x0 + t n, with the same noise and dropout mask as the target
      const xt = tf.add(this.x0, tf.mul(this.noise, this.column(t))) as tf.Tensor4D;
      const prediction = denoise(this.net, xt, t, { edm: this.edm, mode: 'train', training: true, dropout: this.dropout, labels: this.ctx.labels, host: student });
      // 5. compare: w(t, r) rho(||D(x_t, t) - target||^2), averaged over the batch
      const squaredNorm = tf.sum(tf.square(tf.sub(prediction, this.target)), [1, 2, 3]);
      return tf.mean(tf.mul(pseudoHuberTensor(squaredNorm, this.ect.huberC), tf.tensor1d(weights))) as tf.Scalar;
    });
  }

  /** Frees the shared noise, the dropout masks and the target. */
  dispose(): void {
    this.noise.dispose();
    this.dropout.dispose();
    this.target.dispose();
  }
}
