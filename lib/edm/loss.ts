/**
 * EDM's denoising loss (docs/method.md §4; EDM Eq. 8): lambda(sigma) ||D(x0 + sigma eps, sigma) - x0||^2, per pixel;
 * and the interface every training loss implements, so the trainer calls EDM's and ECT's losses the same way.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig } from '../config/types';
import { DropoutMasks, type ClassLabels, type UNet } from '../nn/unet';
import { drawSeed, logNormalSamples } from '../random';
import { denoise } from './precond';

/** What a loss needs to know of a training step besides the network and the images. */
export interface LossContext {
  seed: number;            // run seed
  iteration: number;       // the step: with the seed, it fixes every random draw of the step
  labels?: ClassLabels;    // class ids of the batch, passed to every forward pass (undefined: unconditional network)
}

/** One step of a loss, prepared outside the gradient; `loss()` runs inside it. */
export interface LossStep {
  /** The batch-mean loss as a scalar; call inside tf.variableGrads. */
  loss(): tf.Scalar;
  /** Frees what the step holds (noise, dropout masks, the target). */
  dispose(): void;
}

/**
 * A training loss, as EDM's training loop sees one: `prepare(net, images, ctx)` draws the step's noise and
 * masks and does any work without gradient (ECT's target pass); the trainer then differentiates `loss()`.
 */
export interface TrainingLoss {
  prepare(net: UNet, x0: tf.Tensor4D, ctx: LossContext): LossStep;
  /** The schedule's stage at an iteration, logged in metrics.csv (0 when the loss has no stages). */
  stage(iteration: number): number;
}

/**
 * The dropout masks of one training step, the same in every loss and shared by its passes: units seeded from
 * (run seed, iteration, 'dropout'), labels from (run seed, iteration, 'label-dropout').
 */
export function stepDropoutMasks(net: UNet, ctx: LossContext): DropoutMasks {
  return new DropoutMasks(drawSeed(ctx.seed, ctx.iteration, 'dropout'), net.cfg.dropout,
    { seed: drawSeed(ctx.seed, ctx.iteration, 'label-dropout'), rate: net.cfg.labelDropout });
}

/** lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2. */
export function edmLossWeight(sigma: number, sigmaData: number): number {
  return (sigma * sigma + sigmaData * sigmaData) / (sigma * sigmaData) ** 2;
}

/** Draws sigma ~ LogNormal(P_mean, P_std) and the noise seed for one step. */
export function edmDraws(batch: number, edm: EdmConfig, seed: number, iteration: number): { sigma: Float64Array; noiseSeed: number } {
  return {
    sigma: logNormalSamples(drawSeed(seed, iteration, 'edm-sigma'), batch, edm.pMean, edm.pStd),
    noiseSeed: drawSeed(seed, iteration, 'edm-noise'),
  };
}

/** EDM pretraining's loss. */
export class EdmLoss implements TrainingLoss {
  constructor(private readonly edm: EdmConfig) {}

  prepare(net: UNet, x0: tf.Tensor4D, ctx: LossContext): LossStep {
    const { edm } = this;
    const draws = edmDraws(x0.shape[0], edm, ctx.seed, ctx.iteration);
    const sigma = Float32Array.from(draws.sigma);   // the noise levels as the network sees them
    const masks = stepDropoutMasks(net, ctx);
    return {
      loss: () => tf.tidy(() => {
        const noise = tf.randomNormal(x0.shape, 0, 1, 'float32', draws.noiseSeed);
        const sigmaColumn = tf.tensor4d(sigma, [sigma.length, 1, 1, 1]);
        const noisy = tf.add(x0, tf.mul(noise, sigmaColumn)) as tf.Tensor4D;
        const denoised = denoise(net, noisy, sigma, { edm, mode: 'train', training: true, dropout: masks, labels: ctx.labels });
        const weights = tf.tensor4d(Float32Array.from(sigma, (s) => edmLossWeight(s, edm.sigmaData)), [sigma.length, 1, 1, 1]);
        return tf.mean(tf.mul(tf.square(tf.sub(denoised, x0)), weights)) as tf.Scalar;
      }),
      dispose: () => masks.dispose(),
    };
  }

  stage(): number {
    return 0;
  }
}
