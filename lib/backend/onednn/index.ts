/** The `onednn` TensorFlow.js backend: the cpu backend with its heavy kernels replaced by the native oneDNN addon. */
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { loadAddon, type OnednnAddon } from './addon';
import { appliedThreadWait, type ThreadWait } from './thread-wait';
import { filterIdentities, fusedKernels, nativeKernels, outputPool, poolOwning, withCpuFallback } from './kernels';

export { filterIdentities, forgetPool, kernelCounters, outputPool, poolOwning, resetKernelCounters, withOutputPool } from './kernels';
export { addonPath, loadAddon } from './addon';
export {
  assertPrecisionAvailable, bf16Support, currentPrecision, machineCpuFlags, withPrecision, BF16_CPU_FLAGS, type CpuFlagsSource,
} from './precision';

/** Outcome of trying to register the backend: ok, or why not; the oneDNN version when loaded. */
export interface OnednnStatus { ok: boolean; reason?: string; version?: string; threads?: number; threadWait?: ThreadWait }

/** Name under which the backend registers. */
export const ONEDNN_BACKEND = 'onednn';
// Between wasm (2) and tfjs-node (3), so tfjs's own automatic choice follows the project's order too.
const ONEDNN_PRIORITY = 2.5;

/**
 * The cpu backend under another name: same tensor storage (TypedArrays), so every cpu kernel works on it.
 * Output arrays of native kernels are recycled when their tensor is disposed, so reads hand out copies.
 */
class OnednnBackend extends MathBackendCPU {
  override disposeData(dataId: object, force = false): boolean {
    const entry = this.data.get(dataId);
    const freed = super.disposeData(dataId, force);
    // only when this call removed the data: a second dispose of the same id must not release twice
    if (freed && entry && !this.data.has(dataId)) {
      filterIdentities.forget(dataId);  // before the array can be recycled under another tensor
      poolOwning(entry.values)?.release(entry.values as Float32Array | Int32Array);
    }
    return freed;
  }

  override move(dataId: object, values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    filterIdentities.forget(dataId);  // new contents under a known id: no kept filter copy may outlive the old ones
    super.move(dataId, values, shape, dtype, refCount);
  }

  override readSync(dataId: object): tf.backend_util.BackendValues {
    const values = super.readSync(dataId);
    return poolOwning(values) ? (values as Float32Array | Int32Array).slice() : values;
  }

  override dispose(): void {
    outputPool.clear();
    super.dispose();
  }
}

let registered: OnednnStatus | undefined;
let loadedAddon: OnednnAddon | undefined;

/** Registers the `onednn` backend if its native addon loads; otherwise says why not. Safe to call twice. */
export async function tryRegisterOnednn(): Promise<OnednnStatus> {
  if (registered) return registered;
  const { addon, reason } = loadAddon();
  if (!addon) {
    registered = { ok: false, reason };
    return registered;
  }
  try {
    registerBackendWith(addon);
    loadedAddon = addon;
    registered = { ok: true, version: `oneDNN ${addon.version()}`, threads: addon.threads(), threadWait: appliedThreadWait() };
  } catch (error) {
    registered = { ok: false, reason: `registering the onednn backend failed: ${(error as Error).message}` };
  }
  return registered;
}

/** The loaded addon (after a successful tryRegisterOnednn), for tests and benchmarks. */
export function onednnAddon(): OnednnAddon | undefined {
  return loadedAddon;
}

function registerBackendWith(addon: OnednnAddon): void {
  const cpuKernels = tf.getKernelsForBackend('cpu');
  if (cpuKernels.length === 0) throw new Error('the tfjs cpu kernels are not registered (import @tensorflow/tfjs-backend-cpu)');
  if (tf.findBackendFactory(ONEDNN_BACKEND)) return;
  tf.registerBackend(ONEDNN_BACKEND, () => new OnednnBackend(), ONEDNN_PRIORITY);
  const overrides = nativeKernels(addon);
  for (const config of cpuKernels) {
    const native = overrides[config.kernelName];
    const kernelFunc = native ? withCpuFallback(config.kernelName, native, config.kernelFunc) : config.kernelFunc;
    tf.registerKernel({ ...config, backendName: ONEDNN_BACKEND, kernelFunc });
  }
  // kernels of our own ops, which the cpu backend does not have (lib/nn/fused.ts)
  for (const kernel of fusedKernels(addon)) tf.registerKernel({ ...kernel, backendName: ONEDNN_BACKEND });
}
