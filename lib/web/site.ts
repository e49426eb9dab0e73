/**
 * Exports a checkpoint as a static generator site: index.html, the esbuild bundle of lib/web/page.ts, the wasm
 * backend's binaries, model.json and the packed weights. Also the same page as one self-contained HTML string.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { DatasetName } from '../config/types';
import { CIFAR10_CLASS_NAMES } from '../data/cifar10';
import { FASHION_MNIST_CLASS_NAMES } from '../data/idx';
import { SYNTHETIC_CLASS_NAMES } from '../data/synthetic';
import { generateImages, type SamplerModel } from '../sample';
import { repositoryRelativePath } from '../env';
import { namingFile, writeFileNamed } from '../write-file';
import { disposeModel, loadRunModel, samplerModelOf } from '../runs/model';
import { WEB_MODEL_FORMAT, WEB_MODEL_VERSION, webModel, type HalfPrecisionError, type WebModelManifest } from './model';
import { MODEL_FILE, PAGE_FILE, SCRIPT_FILE, WEIGHTS_FILE, webPageHtml } from './template';
import { packWeights, type HostTensor, type WebWeightDtype } from './weights';
import { chosenTwoStepMidT } from '../select/run-selection';

/**
 * The model the prebuilt site (`npm run build:web`) exports when no checkpoint is given: the Fashion-MNIST headline, the
 * shipped teacher tuned with fmnist-ect-annealed (seed 0), with the post-hoc EMA that `ect select` chose for 2 steps on
 * validation; the page starts at the t_mid chosen with it.
 */
export const SHIPPED_WEB_CHECKPOINT = 'results/long/annealed/seed0/posthoc-ema/sigma-0.1500-iter-000002500.ckpt';

/** The 2-step t_mid a selection chose for this checkpoint as a one-element list, or undefined. */
function chosenMidT(checkpoint: string): number[] | undefined {
  const midT = chosenTwoStepMidT(checkpoint);
  return midT === null ? undefined : [midT];
}
/** Where `npm run build:web` writes the site and `npm run web` serves it from (gitignored). */
export const WEB_SITE_DIR = path.join('build', 'web');

/** The wasm backend's binaries, copied beside the bundle (the page calls setWasmPaths with its own folder). */
export const WASM_BINARIES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'];

/** How the float16 error is measured at export: 1-step images of this seed, float16 against float32 weights. */
const HALF_ERROR_IMAGES = 64;
const HALF_ERROR_SEED = 0;

/** Modules the page bundle must never contain: Node-only code (training, checkpoints, native backends). */
const NODE_ONLY_INPUTS = [/lib\/train\//, /lib\/backend\//, /native\//, /tfjs-node/, /lib\/import\/(pickle|safetensors|torch-storage)/];

const CLASS_NAMES: Record<DatasetName, readonly string[]> = {
  'fashion-mnist': FASHION_MNIST_CLASS_NAMES, cifar10: CIFAR10_CLASS_NAMES, synthetic: SYNTHETIC_CLASS_NAMES,
};

export interface ExportWebOptions {
  checkpoint: string;            // a checkpoint file or run folder (its newest checkpoint); the EMA weights are exported
  out: string;                   // the site's folder: new or empty, unless force
  force?: boolean;               // write into an existing non-empty folder, replacing the site's files there
  dtype?: WebWeightDtype;        // float32 (default) or float16
  midT?: number[];               // the page's default 2-step t_mid (default: the one `ect select` chose for this checkpoint, else its config's ect.midT)
}

/** What an export wrote. */
export interface ExportedSite {
  dir: string;
  files: string[];               // relative to dir
  manifest: WebModelManifest;
  bundleBytes: number;
  weightsBytes: number;
}

/** The page's script: lib/web/page.ts (compiled beside this file) and everything it imports, for the browser. */
export async function bundleWebPage(): Promise<{ code: string; inputs: string[] }> {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: [path.join(__dirname, 'page.js')],
    bundle: true,
    platform: 'browser',         // Node built-ins do not resolve: an import of one fails the bundle
    format: 'iife',
    target: 'es2020',
    minify: true,
    legalComments: 'eof',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const inputs = Object.keys(result.metafile.inputs);
  const nodeOnly = inputs.filter((input) => NODE_ONLY_INPUTS.some((pattern) => pattern.test(input)));
  if (nodeOnly.length) throw new Error(`the web page bundle pulls in Node-only modules: ${nodeOnly.join(', ')}`);
  return { code: result.outputFiles[0].text, inputs };
}

/** The EMA weights of a model on the host. */
function hostWeights(weights: Map<string, tf.Tensor>): Map<string, HostTensor> {
  return new Map([...weights].map(([name, t]) => [name, { shape: [...t.shape], values: t.dataSync() as Float32Array }]));
}

/** Max and mean |a - b| of two equally shaped image batches. */
export function imageDifference(a: ArrayLike<number>, b: ArrayLike<number>): { maxAbs: number; meanAbs: number } {
  if (a.length !== b.length) throw new Error(`imageDifference: ${a.length} against ${b.length} values`);
  let maxAbs = 0, sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= maxAbs)) maxAbs = d;  // NaN propagates
    sum += d;
  }
  return { maxAbs, meanAbs: sum / Math.max(a.length, 1) };
}

/** The pixel error of float16 weights: the same 1-step images from the float32 model and from the packed float16 one. */
function halfPrecisionError(full: SamplerModel, manifest: WebModelManifest, bytes: Uint8Array): HalfPrecisionError {
  const half = webModel(manifest, bytes);
  try {
    const options = { seed: HALF_ERROR_SEED, batch: HALF_ERROR_IMAGES };
    const reference = generateImages(full, 1, HALF_ERROR_IMAGES, options);
    const rounded = generateImages(half.sampler, 1, HALF_ERROR_IMAGES, options);
    const difference = imageDifference(reference.dataSync(), rounded.dataSync());
    reference.dispose();
    rounded.dispose();
    return { ...difference, images: HALF_ERROR_IMAGES, steps: 1, seed: HALF_ERROR_SEED };
  } finally {
    half.net.dispose();
  }
}

/**
 * Refuses a site folder that is a file, or that holds files unless `force`: an export replaces its index.html and
 * the rest. Checked before the work.
 */
function checkSiteFolder(dir: string, force: boolean): void {
  if (!fs.existsSync(dir)) return;
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir}: exists and is not a folder; choose another --out for the site`);
  const entries = fs.readdirSync(dir);
  if (entries.length === 0 || force) return;
  const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, and ${entries.length - 3} more` : '');
  throw new Error(`${dir}: the folder is not empty (${shown}); the export would overwrite its ${PAGE_FILE} and the rest. ` +
    'Choose another --out, or add --force to replace them');
}

/** Writes the generator site of a checkpoint (needs a TensorFlow.js backend: the float16 error is measured here). */
export async function exportWebSite(options: ExportWebOptions): Promise<ExportedSite> {
  const dtype = options.dtype ?? 'float32';
  const dir = path.resolve(options.out);
  checkSiteFolder(dir, options.force ?? false);
  const model = await loadRunModel(options.checkpoint);
  let manifest: WebModelManifest;
  let bytes: Uint8Array;
  try {
    const packed = packWeights(hostWeights(model.ema), dtype);
    bytes = packed.bytes;
    const { config } = model;
    manifest = {
      format: WEB_MODEL_FORMAT, version: WEB_MODEL_VERSION,
      net: config.net, edm: config.edm, samplePrecond: config.ect.samplePrecond, midT: options.midT ?? chosenMidT(model.checkpoint) ?? config.ect.midT,
      classNames: config.net.labelDim > 0 ? [...(CLASS_NAMES[config.data.name] ?? [])].slice(0, config.net.labelDim) : [],
      source: {
        run: repositoryRelativePath(model.runDir), checkpoint: path.basename(model.checkpoint),
        iteration: model.iteration, kind: config.kind, dataset: config.data.name,
      },
      weightsFile: WEIGHTS_FILE,
      weights: packed.table,
    };
    if (dtype === 'float16') manifest.halfPrecisionError = halfPrecisionError(samplerModelOf(model), manifest, bytes);
  } finally {
    disposeModel(model);
  }
  const bundle = await bundleWebPage();
  namingFile(dir, () => fs.mkdirSync(dir, { recursive: true }));
  writeFileNamed(path.join(dir, MODEL_FILE), JSON.stringify(manifest, null, 1) + '\n');
  writeFileNamed(path.join(dir, WEIGHTS_FILE), bytes);
  writeFileNamed(path.join(dir, SCRIPT_FILE), bundle.code);
  const wasmDir = wasmBinaryDir();
  for (const name of WASM_BINARIES) namingFile(path.join(dir, name), () => fs.copyFileSync(path.join(wasmDir, name), path.join(dir, name)));
  writeFileNamed(path.join(dir, PAGE_FILE), webPageHtml(pageTitle(manifest), { kind: 'files' }));
  return {
    dir, files: [PAGE_FILE, SCRIPT_FILE, MODEL_FILE, WEIGHTS_FILE, ...WASM_BINARIES], manifest,
    bundleBytes: Buffer.byteLength(bundle.code), weightsBytes: bytes.length,
  };
}


/** The page's heading. */
function pageTitle(manifest: WebModelManifest): string {
  return `ECT one-step generator: ${manifest.source.dataset}, ${manifest.source.run} (iteration ${manifest.source.iteration})`;
}

/** The folder of the installed wasm backend's binaries. */
function wasmBinaryDir(): string {
  return path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
}

/** An exported site as one self-contained HTML page: the bundle, the model and the wasm binaries inline. */
export function inlineWebPage(siteDir: string): string {
  const read = (name: string) => fs.readFileSync(path.join(siteDir, name));
  const manifestJson = read(MODEL_FILE).toString('utf8');
  const manifest = JSON.parse(manifestJson) as WebModelManifest;
  const wasmDataUrls = Object.fromEntries(WASM_BINARIES.map((name) => [name, `data:application/wasm;base64,${read(name).toString('base64')}`]));
  return webPageHtml(pageTitle(manifest), {
    kind: 'inline', script: read(SCRIPT_FILE).toString('utf8'), manifestJson,
    weightsBase64: read(manifest.weightsFile).toString('base64'), wasmDataUrls,
  });
}

/** An exported site as an <iframe> whose srcdoc is the self-contained page (for notebooks: works offline and in exported HTML). */
export function webPageIframe(siteDir: string, size: { width?: number; height?: number } = {}): string {
  const srcdoc = inlineWebPage(siteDir).replace(/&/g, '&amp;').replace(/"/g, '&quot;');
  return `<iframe srcdoc="${srcdoc}" width="${size.width ?? 560}" height="${size.height ?? 760}" style="border: 1px solid #ccc"></iframe>`;
}
