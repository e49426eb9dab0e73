/**
 * Preconditioning, D(x, sigma) = c_skip x + c_out F(c_in x, c_noise): EDM's (docs/method.md §2; EDM Eq. 7), which ECT trains
 * with, and the VP and VE ones of EDM's code, which imported teachers (lib/import/) sample with.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig, PrecondMode, VpConstants } from '../config/types';
import type { ClassLabels, DropoutMasks, HostNoiseEmbedding, UNet } from '../nn/unet';

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

/** VP's inverse noise schedule: t with sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) = sigma. */
export function vpSigmaInverse(sigma: number, vp: VpConstants): number {
  return (Math.sqrt(vp.betaMin * vp.betaMin + 2 * vp.betaD * Math.log1p(sigma * sigma)) - vp.betaMin) / vp.betaD;
}

/** VPPrecond: c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1), c_noise = (M - 1) sigma^-1(sigma). */
export function vpCoefficients(sigma: number, vp: VpConstants): PrecondCoefficients {
  return { cSkip: 1, cOut: -sigma, cIn: 1 / Math.sqrt(sigma * sigma + 1), cNoise: (vp.M - 1) * vpSigmaInverse(sigma, vp) };
}

/** VEPrecond: c_skip = 1, c_out = sigma, c_in = 1, c_noise = ln(sigma / 2). */
export function veCoefficients(sigma: number): PrecondCoefficients {
  return { cSkip: 1, cOut: sigma, cIn: 1, cNoise: Math.log(0.5 * sigma) };
}

/**
 * All four coefficients at once, of the config's preconditioning (edm.precond, EDM's when absent). For EDM's, c_noise
 * is taken at max(sigma, 1e-20): sigma may be 0 in training mode, where D = x. VP and VE have no eval mode (that is
 * ECT's consistency boundary); they are what an imported teacher samples with.
 */
export function precondCoefficients(sigma: number, edm: EdmConfig, mode: PrecondMode): PrecondCoefficients {
  if (edm.precond === 'vp') {
    if (!edm.vp) throw new Error("edm.precond 'vp' needs edm.vp (betaD, betaMin, M)");
    return vpCoefficients(sigma, edm.vp);
  }
  if (edm.precond === 've') return veCoefficients(sigma);
  return {
    cSkip: cSkip(sigma, edm.sigmaData, mode, edm.evalSigmaMin),
    cOut: cOut(sigma, edm.sigmaData, mode, edm.evalSigmaMin),
    cIn: cIn(sigma, edm.sigmaData),
    cNoise: cNoise(Math.max(sigma, C_NOISE_FLOOR)),
  };
}

/**
 * The host arrays of one denoise call: the per-example coefficient columns [B], the noise embedding's features and, for
 * a class-conditional network, the class input (null otherwise).
 */
export interface DenoiseHostInputs { cIn: Float32Array; cSkip: Float32Array; cOut: Float32Array; embedding: HostNoiseEmbedding; classes: Float32Array | null }

/**
 * What denoise computes on the host for a batch's noise levels, with the options denoise would get (`weights`: where a
 * Fourier embedding's frequencies come from; `labels`, `dropout`, `training`: the class input). Given to denoise as
 * opts.host, the pass is the same.
 */
export function denoiseHostInputs(net: UNet, sigmas: ArrayLike<number>, opts: Omit<DenoiseOptions, 'host'>): DenoiseHostInputs {
  const coefficients = Array.from(sigmas, (s) => precondCoefficients(s, opts.edm, opts.mode));
  const column = (pick: (c: PrecondCoefficients) => number) => Float32Array.from(coefficients, pick);
  return {
    cIn: column((c) => c.cIn), cSkip: column((c) => c.cSkip), cOut: column((c) => c.cOut),
    // c_noise goes in as host values: the noise embedding is then exact to float32 (VP's c_noise reaches ~1000)
    embedding: net.noiseEmbeddingValues(Float64Array.from(coefficients, (c) => c.cNoise), opts.weights),
    classes: net.classInputValues(opts.labels, sigmas.length, opts.dropout, opts.training),
  };
}

export interface DenoiseOptions {
  edm: EdmConfig;
  mode: PrecondMode;
  training?: boolean;                  // dropout on (then `dropout` holds the step's masks)
  dropout?: DropoutMasks;              // the training step's dropout masks, shared by its passes
  weights?: Map<string, tf.Tensor>;    // e.g. EMA weights
  labels?: ClassLabels;                // class ids [B] of a conditional network (undefined: unconditional)
  host?: DenoiseHostInputs;            // the host arrays, computed ahead (denoiseHostInputs of these sigmas); else computed here
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
  const host = opts.host ?? denoiseHostInputs(net, sigmas, opts);
  if (host.cIn.length !== batch || host.embedding.batch !== batch) throw new Error(`denoise: host inputs for ${host.cIn.length} images, a batch of ${batch}`);
  return tf.tidy(() => {
    const perExample = (values: Float32Array) => tf.tensor4d(values, [batch, 1, 1, 1]);
    const raw = net.forward(tf.mul(x, perExample(host.cIn)) as tf.Tensor4D, host.embedding, {
      training: opts.training, dropout: opts.dropout, weights: opts.weights, labels: opts.labels, classInput: host.classes ?? undefined,
    });
    return tf.add(tf.mul(perExample(host.cSkip), x), tf.mul(perExample(host.cOut), raw)) as tf.Tensor4D;
  });
}
