/**
 * EDM's denoising loss (docs/method.md §4; EDM Eq. 8): lambda(sigma) ||D(x0 + sigma eps, sigma) - x0||^2, per pixel,
 * a TrainingLoss (lib/training-loss.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig } from '../config/types';
import type { UNet } from '../nn/unet';
import { drawSeed, logNormalSamples } from '../random';
import { stepDropoutMasks, type LossContext, type LossStep, type TrainingLoss } from '../training-loss';
import { denoise } from './precond';

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
