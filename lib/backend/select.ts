/** Chooses and initialises the TensorFlow.js backend, and records what was chosen and what was skipped and why. */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import '../tf-gradients';
import * as tfjsCpu from '@tensorflow/tfjs-backend-cpu';
import * as tfjsWasm from '@tensorflow/tfjs-backend-wasm';
import { tryRegisterOnednn } from './onednn';
import { describeThreadWait } from './onednn/thread-wait';
import { registerWasmTrainingKernels } from './wasm-kernels';

// Silences tfjs's console notices (tfjs-core's log.ts prints only when neither PROD nor IS_TEST is set), among them
// the CPU kernels' "Hi, looks like you are running TensorFlow.js in Node.js" banner, which our oneDNN and wasm
// backends also trigger. PROD changes nothing else in tfjs 4.22 (IS_TEST would add per-kernel leak checks).
tf.enableProdMode();

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

/**
 * The shared libraries libtensorflow 2.9 (inside @tensorflow/tfjs-node-gpu 4.22) opens to use a GPU: CUDA 11.2 and
 * cuDNN 8.1, as tfjs's maintainers state (tensorflow/tfjs issues 8362 and 8047; docs/gpu.md). It opens them at run
 * time and, when one is missing, quietly runs on the CPU.
 */
export const GPU_LIBRARIES = [
  'libcuda.so.1', 'libcudart.so.11.0', 'libcublas.so.11', 'libcublasLt.so.11', 'libcufft.so.10', 'libcurand.so.10',
  'libcusolver.so.11', 'libcusparse.so.11', 'libcudnn.so.8',
] as const;

/**
 * Which of `libraries` the dynamic loader would not find: neither in the `ldconfig -p` listing nor in a folder of
 * LD_LIBRARY_PATH. Pure on its inputs, so tests hand in their own listing and folders.
 */
export function missingSharedLibraries(libraries: readonly string[], ldconfigListing: string, searchDirs: string[]): string[] {
  const cached = new Set(ldconfigListing.split('\n').map((line) => line.trim().split(/\s+/)[0]).filter(Boolean));
  return libraries.filter((name) => !cached.has(name) && !searchDirs.some((dir) => fs.existsSync(path.join(dir, name))));
}

/** The GPU libraries this machine lacks (ldconfig's cache and LD_LIBRARY_PATH). */
function missingGpuLibraries(): string[] {
  let listing = '';
  try {
    listing = execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 });
  } catch {
    // no ldconfig on PATH (it lives in /sbin on Debian): LD_LIBRARY_PATH alone decides
    try {
      listing = execFileSync('/sbin/ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 });
    } catch { /* listing stays empty */ }
  }
  const dirs = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  return missingSharedLibraries(GPU_LIBRARIES, listing, dirs);
}

/** A load error's first line, naming the shared library the loader could not open when that is the cause. */
export function describeLoadError(error: unknown): string {
  const line = firstLine(error);
  const missing = /([\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(String((error as Error)?.message ?? error));
  return missing ? `missing shared library ${missing[1]} (${line})` : line;
}

/** Loads @tensorflow/tfjs-node or -gpu (both register backend 'tensorflow'). */
function nodeBindingLoader(packageName: string, gpu = false): Loader {
  return async () => {
    const problem = nodeBindingProblem(packageName);
    if (problem) throw new Error(problem);
    if (gpu) {
      // checked before loading: libtensorflow would otherwise fall back to its CPU kernels without telling us
      const missing = missingGpuLibraries();
      if (missing.length) {
        throw new Error(`${packageName} needs CUDA 11.2 and cuDNN 8.1; missing ${missing.join(', ')} (see docs/gpu.md)`);
      }
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require(packageName);
    } catch (error) {
      throw new Error(`${packageName} failed to load: ${describeLoadError(error)}`);
    }
    await activate('tensorflow');
    return { name: tf.getBackend(), package: packageName, version: packageVersion(packageName) };
  };
}

const LOADERS: Record<Exclude<BackendChoice, 'auto'>, Loader> = {
  'tensorflow-gpu': nodeBindingLoader('@tensorflow/tfjs-node-gpu', true),
  tensorflow: nodeBindingLoader('@tensorflow/tfjs-node'),
  onednn: async () => {
    const status = await tryRegisterOnednn();
    if (!status.ok) throw new Error(status.reason ?? 'the oneDNN backend did not register');
    await activate('onednn');
    const details: Record<string, string | number> = {};
    if (status.threads !== undefined) details.threads = status.threads;
    if (status.threadWait) details.threadWait = describeThreadWait(status.threadWait);
    return { name: tf.getBackend(), package: 'ect-workbench/native', version: status.version ?? 'unknown', details };
  },
  wasm: async () => {
    // Node cannot run the threaded build (tensorflow/tfjs#3830); pin the single-threaded (SIMD) binary.
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

/**
 * Initialises the backend (choice, else $ECT_BACKEND, else the fastest that loads) and says which one runs: how every
 * command and the launcher start one.
 */
export async function startBackend(choice: string | undefined, log: (line: string) => void): Promise<BackendInfo> {
  const info = await initBackend(choice as BackendChoice | undefined);
  log(describeBackend(info));
  return info;
}
