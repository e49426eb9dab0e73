/**
 * Names and attributes of our own kernels for the per-step parameter updates (a leaf: the trainer's optimiser and EMA
 * and the backends that implement them import it), which a backend may implement natively (the `onednn`
 * backend does, lib/backend/onednn/kernels.ts). Without them the optimiser and the EMA run their JavaScript
 * loops (or tfjs kernels): the same arithmetic, in double precision, rounded to float32 once per value.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Adam/RAdam: inputs param, grad, m, v (same shape); outputs the new param, m and v. */
export const MOMENT_UPDATE_KERNEL = 'EctMomentUpdate';
/** EMA: inputs average, param; output average + (param - average)(1 - beta). */
export const EMA_UPDATE_KERNEL = 'EctEmaUpdate';

/** Attributes of the moment update (lib/train/optim.ts StepCoefficients and the optimiser's settings). */
export interface MomentUpdateAttrs {
  beta1: number;
  beta2: number;
  eps: number;
  momentumScale: number;
  sqrtVScale: number;
  adaptive: boolean;
  infReplacement: number;   // +-infinity in a gradient becomes +-this (NaN becomes 0)
}

/** Whether the active backend implements `kernel` itself. */
export function backendHasKernel(kernel: string): boolean {
  return tf.getKernel(kernel, tf.getBackend()) !== undefined;
}
