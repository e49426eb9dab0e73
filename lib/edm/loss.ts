/**
 * EDM's denoising loss (docs/method.md §4; EDM Eq. 8): lambda(sigma) ||D(x0 + sigma eps, sigma) - x0||^2, per pixel,
 * a TrainingLoss (lib/training-loss.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig } from '../config/types';
import type { UNet } from '../nn/unet';
import { drawSeed, logNormalSamples } from '../random';
import { normalNoiseValues, stepDropoutMasks, type LossContext, type LossStep, type StepHostInputs, type TrainingLoss } from '../training-loss';
import { denoise, denoiseHostInputs } from './precond';

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

/** The host arrays of one EDM step: the noise, sigma per example (as the network sees it), the weights and the coefficients. */
function edmHostInputs(net: UNet, shape: [number, number, number, number], edm: EdmConfig, ctx: LossContext) {
  const draws = edmDraws(shape[0], edm, ctx.seed, ctx.iteration);
  const sigma = Float32Array.from(draws.sigma);   // the noise levels as the network sees them
  return {
    noise: normalNoiseValues(shape, draws.noiseSeed),
    sigma,
    weights: Float32Array.from(sigma, (s) => edmLossWeight(s, edm.sigmaData)),
    precond: denoiseHostInputs(net, sigma, { edm, mode: 'train', training: true, labels: ctx.labels, dropout: stepDropoutMasks(net, ctx) }),
  };
}

/** EDM pretraining's loss. */
export class EdmLoss implements TrainingLoss {
  constructor(private readonly edm: EdmConfig) {}

  prepare(net: UNet, x0: tf.Tensor4D, ctx: LossContext): LossStep {
    const { edm } = this;
    const inputs = edmHostInputs(net, x0.shape, edm, ctx);
    const masks = stepDropoutMasks(net, ctx);
    const column = (values: Float32Array) => tf.tensor4d(values, [values.length, 1, 1, 1]);
    return {
      host: stepHostInputsOf(inputs),
      dropout: masks,
      loss: () => tf.tidy(() => {
        const noise = tf.tensor4d(inputs.noise, x0.shape);
        const noisy = tf.add(x0, tf.mul(noise, column(inputs.sigma))) as tf.Tensor4D;
        const denoised = denoise(net, noisy, inputs.sigma, { edm, mode: 'train', training: true, dropout: masks, labels: ctx.labels, host: inputs.precond });
        return tf.mean(tf.mul(tf.square(tf.sub(denoised, x0)), column(inputs.weights))) as tf.Scalar;
      }),
      dispose: () => masks.dispose(),
    };
  }

  hostInputs(net: UNet, shape: [number, number, number, number], ctx: LossContext): StepHostInputs {
    return stepHostInputsOf(edmHostInputs(net, shape, this.edm, ctx));
  }

  stage(): number {
    return 0;
  }
}

/** An EDM step's host arrays by name (every step has one structure). */
function stepHostInputsOf(inputs: ReturnType<typeof edmHostInputs>): StepHostInputs {
  const { noise, sigma, weights, precond } = inputs;
  return {
    structure: 'EDM denoising',
    arrays: new Map<string, Float32Array | Uint8Array>([['noise', noise], ['sigma', sigma], ['weights', weights], ['cIn', precond.cIn],
      ['cSkip', precond.cSkip], ['cOut', precond.cOut], ['embedding', precond.embedding.values], ...(precond.classes ? [['classes', precond.classes] as const] : [])]),
  };
}
