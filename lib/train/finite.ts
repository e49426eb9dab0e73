/** Whether weights are finite: checked after every update and before every checkpoint is written. */
import * as tf from '@tensorflow/tfjs-core';
import { onednnAddon } from '../backend/onednn';
import { hasJsTensorStorage, peekFloat32 } from './optim';

/**
 * The first float32 tensor of `groups` holding a NaN or infinite value, as 'group/name', or null. Where tensors live
 * in JS memory, the native addon's scan of exponent bits where it is loaded, else firstNonFiniteArray's loop; on
 * tensor backends x - x (0 for a finite x, NaN otherwise) summed per tensor, the sums read back at once.
 */
export function firstNonFinite(groups: Record<string, Map<string, tf.Tensor> | undefined>): string | null {
  const entries: Array<[string, tf.Tensor]> = [];
  for (const [group, members] of Object.entries(groups)) {
    for (const [name, tensor] of members ?? []) if (tensor.dtype === 'float32') entries.push([`${group}/${name}`, tensor]);
  }
  if (entries.length === 0) return null;
  if (hasJsTensorStorage()) {
    const arrays = entries.map(([, tensor]) => peekFloat32(tensor));
    const addon = onednnAddon();
    const index = addon ? addon.firstNonFinite(arrays) : firstNonFiniteArray(arrays);
    return index < 0 ? null : entries[index][0];
  }
  const sums = entries.map(([, tensor]) => tf.tidy(() => tf.sum(tf.sub(tensor, tensor))));
  const stacked = tf.stack(sums);
  const values = stacked.dataSync();
  tf.dispose([stacked, ...sums]);
  const index = values.findIndex((v) => Number.isNaN(v));
  return index < 0 ? null : entries[index][0];
}

/** The index of the first array holding a NaN or an infinity, or -1, without the addon: x - x is NaN exactly then. */
export function firstNonFiniteArray(arrays: Float32Array[]): number {
  return arrays.findIndex((values) => {
    let sum = 0;
    for (let i = 0; i < values.length; i++) sum += values[i] - values[i];
    return Number.isNaN(sum);
  });
}
