/**
 * The ECT loss (docs/method.md §6; ECT §3), step by step as in the paper: sample t, map it to r, share one
 * noise, take the target at (x_r, r) without gradient and with the student's dropout mask, compare.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { EctConfig, EdmConfig } from '../config/types';
import { stepDropoutMasks, type LossContext, type LossStep, type TrainingLoss } from '../training-loss';
import { denoise } from '../edm/precond';
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

/** ECT tuning's loss. */
export class EctLoss implements TrainingLoss {
  constructor(private readonly ect: EctConfig, private readonly edm: EdmConfig) {}

  prepare(net: UNet, x0: tf.Tensor4D, ctx: LossContext): EctStep {
    return new EctStep(net, x0, this.ect, this.edm, ctx);
  }

  stage(iteration: number): number {
    return stageAt(iteration, this.ect.stageIters, this.ect.maxStage);
  }
}

/** One ECT step: the target is computed when the step is made (no gradient); `loss()` runs the student pass. */
export class EctStep implements LossStep {
  readonly draws: EctDraws;
  readonly target: tf.Tensor4D;
  private readonly masks: DropoutMasks;
  private readonly noise: tf.Tensor4D;

  constructor(private readonly net: UNet, private readonly x0: tf.Tensor4D, private readonly ect: EctConfig,
    private readonly edm: EdmConfig, private readonly ctx: LossContext) {
    // 1. sample t ~ LogNormal(P_mean, P_std) and map it to r < t at this iteration's stage
    this.draws = ectDraws(x0.shape[0], ect, ctx.seed, ctx.iteration);
    // 2. one dropout mask and one noise n, shared by the target and the student pass
    this.masks = stepDropoutMasks(net, ctx);
    this.noise = tf.randomNormal(x0.shape, 0, 1, 'float32', this.draws.noiseSeed);
    // 3. the target, without gradient
    this.target = this.targetPass();
  }

  /** Target D(x_r, r) with the student's dropout mask; x0 where r = 0; NaN replaced by 0. */
  private targetPass(): tf.Tensor4D {
    const r = Float32Array.from(this.draws.r);
    if (r.every((v) => v === 0)) return tf.clone(this.x0);  // pure diffusion batch: skip the target pass
    return tf.tidy(() => {
      // x_r = x0 + r n, denoised as the student is (train mode, its dropout mask)
      const xr = tf.add(this.x0, tf.mul(this.noise, tf.tensor4d(r, [r.length, 1, 1, 1]))) as tf.Tensor4D;
      const predicted = denoise(this.net, xr, r, { edm: this.edm, mode: 'train', training: true, dropout: this.masks, labels: this.ctx.labels });
      // NaN in the target becomes 0; where r = 0 the target is x0 itself (the boundary condition f(x, 0) = x)
      const finite = tf.where(tf.isNaN(predicted), tf.zerosLike(predicted), predicted);
      if (r.every((v) => v > 0)) return finite;
      // the mask at full size from the host: broadcasting a [B, 1, 1, 1] mask runs tfjs's element-by-element Tile
      const [, h, w, c] = this.x0.shape;
      const positive = new Uint8Array(this.x0.size);
      r.forEach((v, i) => { if (v > 0) positive.fill(1, i * h * w * c, (i + 1) * h * w * c); });
      return tf.where(tf.tensor4d(positive, this.x0.shape, 'bool'), finite, this.x0) as tf.Tensor4D;
    });
  }

  /** Batch mean of w(t, r) rho(||D(x_t, t) - target||^2); gradients flow through the student pass only. */
  loss(): tf.Scalar {
    return tf.tidy(() => {
      const { r } = this.draws;
      const t = Float32Array.from(this.draws.t);
      // 4. the student D(x_t, t) at x_t = x0 + t n, with the same noise and dropout mask as the target
      const xt = tf.add(this.x0, tf.mul(this.noise, tf.tensor4d(t, [t.length, 1, 1, 1]))) as tf.Tensor4D;
      const student = denoise(this.net, xt, t, { edm: this.edm, mode: 'train', training: true, dropout: this.masks, labels: this.ctx.labels });
      // 5. compare: w(t, r) rho(||D(x_t, t) - target||^2), averaged over the batch
      const squaredNorm = tf.sum(tf.square(tf.sub(student, this.target)), [1, 2, 3]);
      const weights = Float32Array.from(this.draws.t, (ti, i) => timeWeight(ti, r[i], this.ect.weighting, this.edm.sigmaData));
      return tf.mean(tf.mul(pseudoHuberTensor(squaredNorm, this.ect.huberC), tf.tensor1d(weights))) as tf.Scalar;
    });
  }

  /** Frees the shared noise, the dropout masks and the target. */
  dispose(): void {
    this.noise.dispose();
    this.masks.dispose();
    this.target.dispose();
  }
}
