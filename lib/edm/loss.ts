/** EDM's denoising loss (ect-spec.md section 5): lambda(sigma) ||D(x0 + sigma eps, sigma) - x0||^2, per pixel. */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig } from '../config/types';
import type { UNet } from '../nn/unet';
import { logNormalSamples, stepSeed } from '../random';
import { denoise } from './precond';

/** lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2. */
export function edmLossWeight(sigma: number, sigmaData: number): number {
  return (sigma * sigma + sigmaData * sigmaData) / (sigma * sigmaData) ** 2;
}

export interface EdmLossInputs {
  net: UNet;
  x0: tf.Tensor4D;       // clean images in [-1, 1]
  edm: EdmConfig;
  seed: number;          // run seed
  iteration: number;     // picks this step's random draws
}

/** Draws sigma ~ LogNormal(P_mean, P_std) and the noise for one step. */
export function edmDraws(batch: number, edm: EdmConfig, seed: number, iteration: number): { sigma: Float64Array; noiseSeed: number } {
  return {
    sigma: logNormalSamples(stepSeed(seed, iteration, 'edm-sigma'), batch, edm.pMean, edm.pStd),
    noiseSeed: stepSeed(seed, iteration, 'edm-noise'),
  };
}

/** The batch-mean EDM loss as a scalar (call inside a gradient function). Dropout masks are drawn per call. */
export function edmLoss({ net, x0, edm, seed, iteration }: EdmLossInputs): tf.Scalar {
  const batch = x0.shape[0];
  const { sigma, noiseSeed } = edmDraws(batch, edm, seed, iteration);
  const weights = Float32Array.from(sigma, (s) => edmLossWeight(s, edm.sigmaData));
  const sigmaT = tf.tensor1d(Float32Array.from(sigma));
  const noise = tf.randomNormal(x0.shape, 0, 1, 'float32', noiseSeed);
  const noisy = tf.add(x0, tf.mul(noise, tf.reshape(sigmaT, [-1, 1, 1, 1]))) as tf.Tensor4D;
  const denoised = denoise(net, noisy, sigmaT, { edm, mode: 'train', training: true });
  const perPixel = tf.mul(tf.square(tf.sub(denoised, x0)), tf.reshape(tf.tensor1d(weights), [-1, 1, 1, 1]));
  return tf.mean(perPixel) as tf.Scalar;
}
