/** ECT's loss metric and time weighting (docs/method.md §6.4; ECT §3, iCT's pseudo-Huber), as functions of plain numbers and tensors. */
import * as tf from '@tensorflow/tfjs-core';
import { WEIGHTINGS, type WeightingName } from '../config/types';

/** w(t, r): inv_dt 1/(t - r) (default); snr_k 1/t^2 + 1/sigma_d^2; uniform 1. */
export function timeWeight(t: number, r: number, name: WeightingName, sigmaData: number): number {
  switch (name) {
    case 'inv_dt': return 1 / (t - r);
    case 'snr_k': return 1 / (t * t) + 1 / (sigmaData * sigmaData);
    case 'uniform': return 1;
    default: throw new Error(`unknown weighting '${String(name)}'; known: ${WEIGHTINGS.join(', ')}`);
  }
}

/** rho(u) on a squared norm u: sqrt(u) when c = 0 (L2 norm), else pseudo-Huber sqrt(u + c^2) - c. */
export function pseudoHuber(squaredNorm: number, c: number): number {
  return c > 0 ? Math.sqrt(squaredNorm + c * c) - c : Math.sqrt(squaredNorm);
}

/** The same rho on a tensor of squared norms; at c = 0 its gradient is 0 where u = 0 (see normOfSquared). */
export function pseudoHuberTensor(squaredNorm: tf.Tensor, c: number): tf.Tensor {
  return c > 0 ? tf.sub(tf.sqrt(tf.add(squaredNorm, c * c)), c) : normOfSquared(squaredNorm);
}

/**
 * sqrt(u) whose gradient is 0 where u = 0, the norm's subgradient at d = 0 (torch.linalg.vector_norm's choice),
 * instead of infinity times 0 = NaN once student and target agree. Values, and gradients where u > 0, are
 * tf.sqrt's bit for bit (its gradient is dy / (2 sqrt(u))).
 */
const normOfSquared = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [squaredNorm, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const value = tf.sqrt(squaredNorm);
  save([value]);
  return {
    value,
    gradFunc: (dy: tf.Tensor, [root]: tf.Tensor[]) => tf.where(tf.greater(root, 0), tf.div(dy, tf.mul(root, 2)), tf.zerosLike(root)),
  };
}) as (squaredNorm: tf.Tensor) => tf.Tensor;
