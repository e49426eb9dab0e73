/**
 * Names and attributes of our own kernels for the per-step parameter updates (a leaf: the trainer's optimiser and EMA
 * and the backends that implement them import it), which a backend may implement natively (the `onednn`
 * backend does, lib/backend/onednn/kernels.ts). Without them the optimiser and the EMA run their JavaScript
 * loops (or tfjs kernels): the same arithmetic, in double precision, rounded to float32 once per value.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * Adam/RAdam over `count` parameters in one call: inputs param<i>, grad<i>, m<i>, v<i> (each i's of one shape);
 * outputs the new params, then the new m's, then the new v's, each in i order.
 */
export const MOMENT_UPDATE_KERNEL = 'EctMomentUpdate';
/** EMA over `count` averages in one call: inputs average<i>, param<i>; outputs average + (param - average)(1 - beta) per i. */
export const EMA_UPDATE_KERNEL = 'EctEmaUpdate';

/** The kernels' named inputs: for each list of tensors (one tensor per parameter) and its name, name<i> -> list[i]. */
export function indexedInputs(lists: Record<string, tf.Tensor[]>): tf.NamedTensorMap {
  const named: tf.NamedTensorMap = {};
  for (const [name, list] of Object.entries(lists)) list.forEach((t, i) => { named[`${name}${i}`] = t; });
  return named;
}

/** Attributes of the moment update (lib/train/optim.ts StepCoefficients and the optimiser's settings). */
export interface MomentUpdateAttrs {
  beta1: number;
  beta2: number;
  eps: number;
  momentumScale: number;
  sqrtVScale: number;
  adaptive: boolean;
  infReplacement: number;   // +-infinity in a gradient becomes +-this (NaN becomes 0)
  count: number;            // parameters updated by the call
}

/** The coefficient list a backend's moment update kernel passes to native code: [beta1, beta2, eps, momentumScale, sqrtVScale, adaptive (0/1), infReplacement]. */
export function momentCoefficientList(a: Omit<MomentUpdateAttrs, 'count'>): number[] {
  return [a.beta1, a.beta2, a.eps, a.momentumScale, a.sqrtVScale, a.adaptive ? 1 : 0, a.infReplacement];
}

/** Whether the active backend implements `kernel` itself. */
export function backendHasKernel(kernel: string): boolean {
  return tf.getKernel(kernel, tf.getBackend()) !== undefined;
}
