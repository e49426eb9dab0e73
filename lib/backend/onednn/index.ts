/** Placeholder for the oneDNN-backed TensorFlow.js backend (native addon); replaced when the addon lands. */
export interface OnednnStatus { ok: boolean; reason?: string; version?: string }

/** Registers the `onednn` backend if its native addon loads; otherwise says why not. */
export async function tryRegisterOnednn(): Promise<OnednnStatus> {
  return { ok: false, reason: 'the oneDNN addon is not part of this build yet' };
}
