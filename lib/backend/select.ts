/** Chooses and initialises the TensorFlow.js backend, and records what was chosen and what was skipped and why. */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import '../tf-gradients';
import * as tfjsCpu from '@tensorflow/tfjs-backend-cpu';
import * as tfjsWasm from '@tensorflow/tfjs-backend-wasm';
import { tryRegisterOnednn } from './onednn';
import { registerWasmTrainingKernels } from './wasm-kernels';

/** Every backend the user can ask for, best first after 'auto' (the auto order); 'auto' takes the best one that loads. */
export const BACKEND_CHOICES = ['auto', 'tensorflow-gpu', 'tensorflow', 'onednn', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

/** What backend runs, who provides it, and why better ones were skipped. */
export interface BackendInfo {
  choice: BackendChoice;   // what was asked
  name: string;            // tf.getBackend() after init
  package: string;         // npm package that provides it (or 'ect-workbench/native' for onednn)
  version: string;         // that package's version
  fallbacks: string[];     // one line per better backend that was skipped, saying why
  details?: Record<string, string | number>; // threads, simd, oneDNN version...
}

/** A backend that loaded, minus the bookkeeping initBackend adds. */
type Loaded = Omit<BackendInfo, 'choice' | 'fallbacks'>;

/** Loads one concrete backend and makes it current, or throws saying why it cannot. */
type Loader = () => Promise<Loaded>;

/** Reads an installed package's version, or 'unknown'. */
function packageVersion(name: string): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The first line of an error, so a fallback reason stays one line. */
function firstLine(error: unknown): string {
  return String((error as Error)?.message ?? error).split('\n')[0];
}

/** Switches to a registered backend, failing loudly instead of tfjs's warning-and-false. */
async function activate(name: string): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed to initialise it`);
  await tf.ready();
}

/**
 * Where an installed tfjs-node(-gpu) keeps its native addon, or undefined when the package or the addon
 * is missing. Checked before `require`, because a package without its addon registers half its kernels
 * and then throws, which would leave the other package's registration full of conflicts.
 */
export function nodeBindingProblem(packageName: string): string | undefined {
  let packageDir: string;
  try {
    packageDir = path.dirname(require.resolve(`${packageName}/package.json`));
  } catch {
    return `${packageName} is not installed (its install script downloads libtensorflow)`;
  }
  const libDir = path.join(packageDir, 'lib');
  const addons = fs.existsSync(libDir)
    ? fs.readdirSync(libDir).filter(entry => fs.existsSync(path.join(libDir, entry, 'tfjs_binding.node'))) : [];
  if (addons.length === 0) return `${packageName} is installed without its native addon (lib/napi-v*/tfjs_binding.node; its install script downloads libtensorflow)`;
  return undefined;
}

/** Loads @tensorflow/tfjs-node or -gpu (both register backend 'tensorflow'). */
function nodeBindingLoader(packageName: string): Loader {
  return async () => {
    const problem = nodeBindingProblem(packageName);
    if (problem) throw new Error(problem);
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require(packageName);
    } catch (error) {
      throw new Error(`${packageName} failed to load: ${firstLine(error)}`);
    }
    await activate('tensorflow');
    return { name: tf.getBackend(), package: packageName, version: packageVersion(packageName) };
  };
}

const LOADERS: Record<Exclude<BackendChoice, 'auto'>, Loader> = {
  'tensorflow-gpu': nodeBindingLoader('@tensorflow/tfjs-node-gpu'),
  tensorflow: nodeBindingLoader('@tensorflow/tfjs-node'),
  onednn: async () => {
    const status = await tryRegisterOnednn();
    if (!status.ok) throw new Error(status.reason ?? 'the oneDNN backend did not register');
    await activate('onednn');
    const details: Record<string, string | number> = {};
    if (status.threads !== undefined) details.threads = status.threads;
    return { name: tf.getBackend(), package: 'ect-workbench/native', version: status.version ?? 'unknown', details };
  },
  wasm: async () => {
    // Node cannot run the threaded build (tfjs issue 3830); pin the single-threaded (SIMD) binary.
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    const kernels = registerWasmTrainingKernels();
    await activate('wasm');
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    return {
      name: tf.getBackend(),
      package: '@tensorflow/tfjs-backend-wasm',
      version: tfjsWasm.version_wasm,
      details: {
        simd: String(simd),
        threads: tfjsWasm.getThreadsCount(),
        binary: simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm',
        addedKernels: kernels.join(' '),
      },
    };
  },
  cpu: async () => {
    await activate('cpu');
    return { name: tf.getBackend(), package: '@tensorflow/tfjs-backend-cpu', version: tfjsCpu.version_cpu };
  },
};

/** Checks a choice (from code or ECT_BACKEND) and says which names are valid when it is not one. */
function parseChoice(choice: string, source: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(choice)) return choice as BackendChoice;
  throw new Error(`unknown backend '${choice}' (from ${source}); valid backends: ${BACKEND_CHOICES.join(', ')}`);
}

/**
 * Initialises a backend and makes it tfjs's current one. `choice` defaults to $ECT_BACKEND, else 'auto':
 * tensorflow-gpu, tensorflow (tfjs-node), onednn, wasm (with our training kernels), then cpu, each skipped
 * backend leaving a one-line reason in `fallbacks`. A forced choice that cannot load throws why.
 * Calling it again is fine (loaded packages and registrations are reused).
 */
export async function initBackend(choice?: BackendChoice): Promise<BackendInfo> {
  const fromEnv = process.env.ECT_BACKEND;
  const asked = choice !== undefined ? parseChoice(choice, 'initBackend')
    : fromEnv ? parseChoice(fromEnv, 'the ECT_BACKEND environment variable') : 'auto';
  if (asked !== 'auto') {
    try {
      return { choice: asked, fallbacks: [], ...(await LOADERS[asked]()) };
    } catch (error) {
      throw new Error(`backend '${asked}' is not available: ${firstLine(error)}`);
    }
  }
  const fallbacks: string[] = [];
  for (const candidate of BACKEND_CHOICES.slice(1) as Exclude<BackendChoice, 'auto'>[]) {
    if (candidate === 'tensorflow' && tf.findBackend('tensorflow')) continue;  // tfjs-node-gpu already provides it
    try {
      return { choice: asked, fallbacks, ...(await LOADERS[candidate]()) };
    } catch (error) {
      fallbacks.push(`${candidate}: ${firstLine(error)}`);
    }
  }
  throw new Error(`no TensorFlow.js backend could be initialised: ${fallbacks.join('; ')}`);
}

/** One human line for logs: the backend, its package and version, details, and what was skipped. */
export function describeBackend(info: BackendInfo): string {
  const details = Object.entries(info.details ?? {}).filter(([, value]) => value !== '').map(([key, value]) => `${key}=${value}`);
  const provider = [`${info.package} ${info.version}`, ...details].join(', ');
  const skipped = info.fallbacks.length ? `; skipped ${info.fallbacks.join('; ')}` : '';
  return `backend ${info.name} (${provider}; asked for ${info.choice})${skipped}`;
}
