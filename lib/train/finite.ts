/** Whether weights are finite: checked after every update and before every checkpoint is written. */
import * as tf from '@tensorflow/tfjs-core';
import { hasJsTensorStorage, peekFloat32 } from './optim';

/**
 * The first float32 tensor of `groups` holding a NaN or infinite value, as 'group/name', or null. x - x is 0 for
 * a finite x and NaN otherwise, so one sum per tensor tells; on tensor backends the sums come back in one read.
 */
export function firstNonFinite(groups: Record<string, Map<string, tf.Tensor> | undefined>): string | null {
  const entries: Array<[string, tf.Tensor]> = [];
  for (const [group, members] of Object.entries(groups)) {
    for (const [name, tensor] of members ?? []) if (tensor.dtype === 'float32') entries.push([`${group}/${name}`, tensor]);
  }
  if (entries.length === 0) return null;
  if (hasJsTensorStorage()) {
    for (const [label, tensor] of entries) {
      const values = peekFloat32(tensor);
      let sum = 0;
      for (let i = 0; i < values.length; i++) sum += values[i] - values[i];
      if (Number.isNaN(sum)) return label;
    }
    return null;
  }
  const sums = entries.map(([, tensor]) => tf.tidy(() => tf.sum(tf.sub(tensor, tensor))));
  const stacked = tf.stack(sums);
  const values = stacked.dataSync();
  tf.dispose([stacked, ...sums]);
  const index = values.findIndex((v) => Number.isNaN(v));
  return index < 0 ? null : entries[index][0];
}
