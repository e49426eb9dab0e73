/**
 * Registers all of tfjs-core's gradients under Node/CommonJS. tfjs-core's node bundle ships none, and its
 * `dist/register_all_gradients.js` is ESM with extension-less imports that Node's resolver refuses; a
 * resolve hook adds the `.js` (or `/index.js`) and the gradients land in tfjs's global registry.
 */
import * as tf from '@tensorflow/tfjs-core';
import { register } from 'node:module';

// Retries a failed relative import with `.js`, then `/index.js` (how bundlers resolve tfjs's ESM files).
const RESOLVE_HOOK = `export async function resolve(specifier, context, next) {
  try { return await next(specifier, context); } catch (error) {
    const relative = specifier.startsWith('./') || specifier.startsWith('../');
    if (!relative || !error || (error.code !== 'ERR_MODULE_NOT_FOUND' && error.code !== 'ERR_UNSUPPORTED_DIR_IMPORT')) throw error;
    try { return await next(specifier + '.js', context); } catch { return next(specifier + '/index.js', context); }
  }
}`;

let loading: Promise<void> | undefined;

/** Loads and registers every tfjs-core gradient once (no-op when Conv2D's gradient is already there). */
export function registerAllGradients(): Promise<void> {
  if (tf.getGradient(tf.Conv2D)) return Promise.resolve();
  loading ??= (async () => {
    register(`data:text/javascript,${encodeURIComponent(RESOLVE_HOOK)}`);
    // A computed specifier keeps TypeScript's CommonJS output from turning this import() into require().
    const file = require.resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js');
    const dynamicImport = new Function('file', 'return import(file)') as (file: string) => Promise<unknown>;
    await dynamicImport(`file://${file}`);
    if (!tf.getGradient(tf.Conv2D)) throw new Error(`loading ${file} registered no gradients`);
  })();
  return loading;
}
