/** EDM preconditioning (ect-spec.md section 3): D(x, sigma) = c_skip x + c_out F(c_in x, c_noise). */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig, PrecondMode } from '../config/types';
import type { DropoutMasks, UNet } from '../nn/unet';

/** The four preconditioning coefficients for one noise level. */
export interface PrecondCoefficients { cSkip: number; cOut: number; cIn: number; cNoise: number }

/** c_in = 1 / sqrt(sigma^2 + sigma_d^2). */
export function cIn(sigma: number, sigmaData: number): number {
  return 1 / Math.sqrt(sigma * sigma + sigmaData * sigmaData);
}

/** c_noise = ln(sigma) / 4. */
export function cNoise(sigma: number): number {
  return Math.log(sigma) / 4;
}

/**
 * c_skip: training mode sigma_d^2 / (sigma^2 + sigma_d^2); eval mode sigma_d^2 / ((sigma - sigma_min)^2 + sigma_d^2).
 */
export function cSkip(sigma: number, sigmaData: number, mode: PrecondMode = 'train', sigmaMin = 0): number {
  const shifted = mode === 'eval' ? sigma - sigmaMin : sigma;
  return (sigmaData * sigmaData) / (shifted * shifted + sigmaData * sigmaData);
}

/**
 * c_out: training mode sigma sigma_d / sqrt(sigma^2 + sigma_d^2); eval mode (sigma - sigma_min) sigma_d / sqrt(sigma^2 + sigma_d^2)
 * (the public ECT code keeps sigma, not sigma - sigma_min, in the denominator).
 */
export function cOut(sigma: number, sigmaData: number, mode: PrecondMode = 'train', sigmaMin = 0): number {
  const shifted = mode === 'eval' ? sigma - sigmaMin : sigma;
  return (shifted * sigmaData) / Math.sqrt(sigma * sigma + sigmaData * sigmaData);
}

/** All four coefficients at once. */
export function precondCoefficients(sigma: number, edm: EdmConfig, mode: PrecondMode): PrecondCoefficients {
  return {
    cSkip: cSkip(sigma, edm.sigmaData, mode, edm.evalSigmaMin),
    cOut: cOut(sigma, edm.sigmaData, mode, edm.evalSigmaMin),
    cIn: cIn(sigma, edm.sigmaData),
    cNoise: cNoise(sigma),
  };
}

export interface DenoiseOptions {
  edm: EdmConfig;
  mode: PrecondMode;
  training?: boolean;                  // dropout on
  dropout?: DropoutMasks;              // shared dropout masks
  weights?: Map<string, tf.Tensor>;    // e.g. EMA weights
}

/**
 * D(x, sigma) for a batch with per-example sigma [B]. Sigma may be 0 (training mode gives D = x there);
 * c_noise uses max(sigma, tiny) so that ln(0) never reaches the network.
 */
export function denoise(net: UNet, x: tf.Tensor4D, sigma: tf.Tensor1D, opts: DenoiseOptions): tf.Tensor4D {
  return tf.tidy(() => {
    const sd2 = opts.edm.sigmaData ** 2;
    const s = tf.reshape(sigma, [-1, 1, 1, 1]);
    const shifted = opts.mode === 'eval' ? tf.sub(s, opts.edm.evalSigmaMin) : s;
    const norm = tf.sqrt(tf.add(tf.square(s), sd2));
    const skip = tf.div(sd2, tf.add(tf.square(shifted), sd2));
    const out = tf.div(tf.mul(shifted, opts.edm.sigmaData), norm);
    const inputScale = tf.div(1, norm);
    const noiseLevel = tf.div(tf.log(tf.maximum(sigma, 1e-20)), 4) as tf.Tensor1D;
    const raw = net.forward(tf.mul(x, inputScale) as tf.Tensor4D, noiseLevel, {
      training: opts.training, dropout: opts.dropout, weights: opts.weights,
    });
    return tf.add(tf.mul(skip, x), tf.mul(out, raw)) as tf.Tensor4D;
  });
}
