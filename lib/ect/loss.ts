/**
 * The ECT loss (ect-spec.md section 6), step by step as in the paper: sample t, map it to r, share one
 * noise, take the target at (x_r, r) without gradient and with the student's dropout mask, compare.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { EctConfig, EdmConfig } from '../config/types';
import { denoise } from '../edm/precond';
import { DropoutMasks, type UNet } from '../nn/unet';
import { logNormalSamples, stepSeed } from '../random';
import { mapTimeToR, stageAt } from './mapping';
import { pseudoHuberTensor, timeWeight } from './weighting';

/** The random draws of one ECT step: t, r, and seeds for the shared noise and dropout. */
export interface EctDraws { t: Float64Array; r: Float64Array; stage: number; noiseSeed: number; dropoutSeed: number }

/** Draws ln t ~ N(P_mean, P_std) and maps each t to r at the stage of this iteration. */
export function ectDraws(batch: number, ect: EctConfig, seed: number, iteration: number): EctDraws {
  const stage = stageAt(iteration, ect.stageIters);
  const t = logNormalSamples(stepSeed(seed, iteration, 'ect-t'), batch, ect.pMean, ect.pStd);
  const r = t.map((ti) => mapTimeToR(ti, stage, ect));
  return { t, r, stage, noiseSeed: stepSeed(seed, iteration, 'ect-noise'), dropoutSeed: stepSeed(seed, iteration, 'ect-dropout') };
}

/** One ECT step's pieces: call `target()` first (no gradient), then `loss(target)` inside the gradient function. */
export class EctStep {
  readonly draws: EctDraws;
  private readonly masks: DropoutMasks;
  private readonly noise: tf.Tensor4D;

  constructor(private readonly net: UNet, private readonly x0: tf.Tensor4D, private readonly ect: EctConfig,
    private readonly edm: EdmConfig, seed: number, iteration: number) {
    this.draws = ectDraws(x0.shape[0], ect, seed, iteration);
    this.masks = new DropoutMasks(this.draws.dropoutSeed, net.cfg.dropout);
    this.noise = tf.randomNormal(x0.shape, 0, 1, 'float32', this.draws.noiseSeed);
  }

  /** Target D(x_r, r) with the student's dropout mask; x0 where r = 0; NaN replaced by 0. Caller disposes. */
  target(): tf.Tensor4D {
    const { r } = this.draws;
    if (r.every((v) => v === 0)) return tf.clone(this.x0);  // pure diffusion batch: skip the target pass
    return tf.tidy(() => {
      const rT = tf.tensor1d(Float32Array.from(r));
      const xr = tf.add(this.x0, tf.mul(this.noise, tf.reshape(rT, [-1, 1, 1, 1]))) as tf.Tensor4D;
      const predicted = denoise(this.net, xr, rT, { edm: this.edm, mode: 'train', training: true, dropout: this.masks });
      const finite = tf.where(tf.isNaN(predicted), tf.zerosLike(predicted), predicted);
      const positive = tf.reshape(tf.greater(rT, 0), [-1, 1, 1, 1]);
      return tf.where(tf.broadcastTo(positive, this.x0.shape), finite, this.x0) as tf.Tensor4D;
    });
  }

  /** Batch mean of w(t, r) rho(||D(x_t, t) - target||^2); gradients flow through the student pass only. */
  loss(target: tf.Tensor4D): tf.Scalar {
    const { t, r } = this.draws;
    const tT = tf.tensor1d(Float32Array.from(t));
    const xt = tf.add(this.x0, tf.mul(this.noise, tf.reshape(tT, [-1, 1, 1, 1]))) as tf.Tensor4D;
    const student = denoise(this.net, xt, tT, { edm: this.edm, mode: 'train', training: true, dropout: this.masks });
    const squaredNorm = tf.sum(tf.square(tf.sub(student, target)), [1, 2, 3]);
    const weights = Float32Array.from(t, (ti, i) => timeWeight(ti, r[i], this.ect.weighting, this.edm.sigmaData));
    return tf.mean(tf.mul(pseudoHuberTensor(squaredNorm, this.ect.huberC), tf.tensor1d(weights))) as tf.Scalar;
  }

  /** Frees the shared noise and dropout masks. */
  dispose(): void {
    this.noise.dispose();
    this.masks.dispose();
  }
}
