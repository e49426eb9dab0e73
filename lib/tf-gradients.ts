/**
 * Registers every tfjs gradient. tfjs-core's CommonJS bundle registers none, and its own
 * `dist/register_all_gradients` is ESM with extensionless imports that Node cannot load, so we take them
 * from the union package's Node bundle, which registers them on the same (deduplicated) tfjs-core.
 * Import this module once before computing any gradient.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('@tensorflow/tfjs');
export {};
