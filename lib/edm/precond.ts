/** EDM preconditioning (ect-spec.md section 3): D(x, sigma) = c_skip x + c_out F(c_in x, c_noise). */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig, PrecondMode } from '../config/types';
import type { ClassLabels, DropoutMasks, UNet } from '../nn/unet';

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

/** Below this noise level c_noise is taken at the floor, so that ln(0) never reaches the network. */
const C_NOISE_FLOOR = 1e-20;

/** All four coefficients at once (c_noise at max(sigma, 1e-20): sigma may be 0 in training mode, where D = x). */
export function precondCoefficients(sigma: number, edm: EdmConfig, mode: PrecondMode): PrecondCoefficients {
  return {
    cSkip: cSkip(sigma, edm.sigmaData, mode, edm.evalSigmaMin),
    cOut: cOut(sigma, edm.sigmaData, mode, edm.evalSigmaMin),
    cIn: cIn(sigma, edm.sigmaData),
    cNoise: cNoise(Math.max(sigma, C_NOISE_FLOOR)),
  };
}

export interface DenoiseOptions {
  edm: EdmConfig;
  mode: PrecondMode;
  training?: boolean;                  // dropout on (then `dropout` holds the step's masks)
  dropout?: DropoutMasks;              // the training step's dropout masks, shared by its passes
  weights?: Map<string, tf.Tensor>;    // e.g. EMA weights
  labels?: ClassLabels;                // class ids [B] of a conditional network (undefined: unconditional)
}

/**
 * D(x, sigma) = c_skip x + c_out F(c_in x, c_noise) for a batch, with one sigma for the whole batch or one per
 * example. The sigmas are known on the host, so the coefficients are the scalar functions above, evaluated
 * per example: one formula for tests and training. Sigma may be 0 (training mode gives D = x there).
 */
export function denoise(net: UNet, x: tf.Tensor4D, sigma: number | ArrayLike<number>, opts: DenoiseOptions): tf.Tensor4D {
  const batch = x.shape[0];
  const sigmas = typeof sigma === 'number' ? new Float64Array(batch).fill(sigma) : sigma;
  if (sigmas.length !== batch) throw new Error(`denoise: ${sigmas.length} noise levels for a batch of ${batch}`);
  const coefficients = Array.from(sigmas, (s) => precondCoefficients(s, opts.edm, opts.mode));
  const column = (pick: (c: PrecondCoefficients) => number) => Float32Array.from(coefficients, pick);
  return tf.tidy(() => {
    const perExample = (values: Float32Array) => tf.tensor4d(values, [batch, 1, 1, 1]);
    const raw = net.forward(tf.mul(x, perExample(column((c) => c.cIn))) as tf.Tensor4D, tf.tensor1d(column((c) => c.cNoise)), {
      training: opts.training, dropout: opts.dropout, weights: opts.weights, labels: opts.labels,
    });
    return tf.add(tf.mul(perExample(column((c) => c.cSkip)), x), tf.mul(perExample(column((c) => c.cOut)), raw)) as tf.Tensor4D;
  });
}
