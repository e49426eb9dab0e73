/**
 * The arithmetic precision the network's convolution and matrix-product kernels run in now: fp32, or bf16 mixed
 * precision where a backend has it (the onednn backend reads it; lib/backend/onednn/precision.ts says what bf16 means
 * there and where it may run). Other backends ignore it. Kept apart from the backend so that the network's layers
 * (lib/nn/*), which the browser page bundles too, can ask for it without pulling in Node-only code.
 */
import type { Precision } from '../config/types';

let current: Precision = 'fp32';

/** Precision the convolution and matrix-product kernels run in now. */
export function currentPrecision(): Precision {
  return current;
}

/**
 * Runs fn with the kernels in `precision`, restoring the previous precision afterwards (also when fn throws). Other
 * backends ignore it; callers check availability first (lib/backend/onednn/precision.ts assertPrecisionAvailable).
 */
export function withPrecision<T>(precision: Precision | undefined, fn: () => T): T {
  const previous = current;
  current = precision ?? 'fp32';
  try {
    return fn();
  } finally {
    current = previous;
  }
}
