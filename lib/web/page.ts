/**
 * The browser entry of the generator page (bundled by esbuild into ect-web.js, lib/web/site.ts): picks a
 * TensorFlow.js backend, loads the page's model into the library's own UNet and samples it with the library's
 * own sampler (lib/sample.ts). Imports only pure modules: no Node built-ins, no native backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import { getThreadsCount, setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { tileRgba, toUint8Images } from '../image/pixels';
import { generateImages } from '../sample';
import { checkWebManifest, webModel, type WebModel, type WebModelManifest } from './model';
import { backendOrder, EMBEDDED_MODEL_ID, EMBEDDED_WASM_ID, EMBEDDED_WEIGHTS_ID, GRID_COLUMNS, GRID_IMAGES, MODEL_FILE, T_MID_RANGE, webglKind } from './template';

/** One generated grid, as the page shows it and as tests read it (window.__lastGrid). */
export interface GridResult {
  seed: number;
  steps: 1 | 2;
  midT: number | null;          // the intermediate time of a 2-step grid
  label: number | null;         // the class asked of a conditional model (null: each image's class drawn from the seed)
  backend: string;
  ms: number;                   // time for the batch: noise, network, and reading the images back
  shape: number[];              // [n, H, W, C]
  values: number[];             // the images in [-1, 1], NHWC
  pixels: number[];             // the same as uint8 (lib/image/pixels.ts)
}

/** What the page knows about itself (window.__ect). */
export interface PageState {
  status: 'loading' | 'ready' | 'busy' | 'error';
  error?: string;
  backend?: string;
  backendDetails?: Record<string, string | number | boolean>;
  skipped: string[];            // backends tried before the one that runs, each with why it did not start
  order?: string[];             // the order backends were tried in (lib/web/template.ts backendOrder)
  orderReason?: string;         // why that order: asked for, WebGL on a GPU, or WebGL software-rendered
  download?: string;            // the file name the grid's PNG downloads as
  model?: { run: string; iteration: number; weights: string; classes: number };
  grids: number;                // grids generated so far
}

declare global {
  interface Window { __ect: PageState; __lastGrid?: GridResult }
}

const state: PageState = { status: 'loading', skipped: [], grids: 0 };
window.__ect = state;

const element = <T extends HTMLElement>(id: string): T => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no element #${id}`);
  return found as T;
};

/**
 * Where the wasm backend finds its binaries: embedded data URLs (the inline page) or the folder of the page; and its
 * threads where the page is cross-origin isolated (SharedArrayBuffer; the site's server sends the headers): ?threads=N,
 * else one per logical core. Returns that count (1 without isolation: no threads).
 */
function configureWasm(): number {
  const embedded = document.getElementById(EMBEDDED_WASM_ID);
  if (embedded?.textContent) setWasmPaths(JSON.parse(embedded.textContent) as Record<string, string>);
  else setWasmPaths(new URL('./', document.baseURI).href);
  if (!window.crossOriginIsolated) return 1;
  const asked = Number(new URLSearchParams(location.search).get('threads'));
  const threads = Number.isInteger(asked) && asked >= 1 ? asked : Math.max(1, navigator.hardwareConcurrency || 1);
  setThreadsCount(threads);
  return threads;
}

/**
 * Runs `start` (the wasm backend's start) where it can use `threads` threads. TensorFlow.js's wasm build assumes two
 * hardware threads per core and caps its pool at navigator.hardwareConcurrency / 2, one thread on a 2-vCPU machine;
 * while it starts it sees 2 * threads instead. Afterwards the browser's own value is back.
 */
async function withThreadCap<T>(threads: number, start: () => Promise<T>): Promise<T> {
  Object.defineProperty(navigator, 'hardwareConcurrency', { value: 2 * threads, configurable: true });
  try {
    return await start();
  } finally {
    delete (navigator as { hardwareConcurrency?: number }).hardwareConcurrency;  // the own property shadowed the prototype's getter
  }
}

/** The WebGL renderer string (UNMASKED_RENDERER_WEBGL where the browser gives it; 'SwiftShader' is software rendering), null without WebGL. */
function webglRenderer(): string | null {
  const gl = document.createElement('canvas').getContext('webgl2') ?? document.createElement('canvas').getContext('webgl');
  if (!gl) return null;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
}

/** Facts about the backend that runs, shown on the page. */
async function backendDetails(name: string): Promise<Record<string, string | number | boolean>> {
  if (name === 'webgl') {
    const renderer = webglRenderer() ?? 'no WebGL context';
    return {
      renderer, software: webglKind(renderer) === 'software',
      webglVersion: tf.env().getNumber('WEBGL_VERSION'), float32: tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED'),
    };
  }
  if (name === 'wasm') {
    // threads need a cross-origin isolated page (the site's server sends the headers; a plain static host may not)
    return {
      threads: getThreadsCount(), simd: Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')),
      threadSupport: Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')), crossOriginIsolated: window.crossOriginIsolated,
    };
  }
  return {};
}

/**
 * Starts the first backend that initialises, in the order backendOrder gives for this browser (a software-rendered
 * WebGL after wasm); records the order, why, and why the backends before the one that runs did not start.
 */
async function startBackend(): Promise<string> {
  const threads = configureWasm();
  const { order, why } = backendOrder(new URLSearchParams(location.search).get('backend'), webglKind(webglRenderer()));
  state.order = order;
  state.orderReason = why;
  for (const name of order) {
    try {
      const started = name === 'wasm' && threads > 1 ? await withThreadCap(threads, () => tf.setBackend(name)) : await tf.setBackend(name);
      if (started) {
        await tf.ready();
        return name;
      }
      state.skipped.push(`${name}: did not initialise`);
    } catch (err) {
      state.skipped.push(`${name}: ${(err as Error).message}`);
    }
  }
  throw new Error(`no TensorFlow.js backend started (${state.skipped.join('; ')})`);
}

/** The page's model: embedded in the page (the inline page), else model.json and its weight file beside the page. */
async function loadModel(): Promise<WebModel> {
  const embedded = document.getElementById(EMBEDDED_MODEL_ID);
  if (embedded?.textContent) {
    const manifest = checkWebManifest(JSON.parse(embedded.textContent), 'the embedded model');
    const base64 = element(EMBEDDED_WEIGHTS_ID).textContent ?? '';
    return webModel(manifest, Uint8Array.from(atob(base64.trim()), (c) => c.charCodeAt(0)));
  }
  const manifestResponse = await fetch(MODEL_FILE);
  if (!manifestResponse.ok) throw new Error(`${MODEL_FILE}: HTTP ${manifestResponse.status}`);
  const manifest: WebModelManifest = checkWebManifest(await manifestResponse.json(), MODEL_FILE);
  const weightsResponse = await fetch(manifest.weightsFile);
  if (!weightsResponse.ok) throw new Error(`${manifest.weightsFile}: HTTP ${weightsResponse.status}`);
  return webModel(manifest, new Uint8Array(await weightsResponse.arrayBuffer()));
}

/** t_mid from the slider's position in [0, 1]: log-spaced over T_MID_RANGE. */
function sliderToTime(position: number): number {
  const [low, high] = T_MID_RANGE.map(Math.log);
  return Math.exp(low + position * (high - low));
}

function timeToSlider(t: number): number {
  const [low, high] = T_MID_RANGE.map(Math.log);
  return Math.min(1, Math.max(0, (Math.log(t) - low) / (high - low)));
}

/** Draws uint8 NHWC images as a grid on the canvas, GRID_COLUMNS per row, 2 black pixels between them. */
function drawGrid(canvas: HTMLCanvasElement, pixels: Uint8Array, shape: number[]): void {
  const grid = tileRgba(pixels, shape, GRID_COLUMNS, 2);
  canvas.width = grid.width;
  canvas.height = grid.height;
  const context = canvas.getContext('2d') as CanvasRenderingContext2D;
  const image = context.createImageData(grid.width, grid.height);
  image.data.set(grid.data);
  context.putImageData(image, 0, 0);
}

/** Offers the canvas as a PNG download named after the grid's settings. */
function offerDownload(canvas: HTMLCanvasElement, grid: Pick<GridResult, 'seed' | 'steps' | 'midT' | 'label'>): void {
  const link = element<HTMLAnchorElement>('download');
  const name = `ect-seed${grid.seed}-${grid.steps}step${grid.midT === null ? '' : `-tmid${grid.midT.toFixed(3)}`}${grid.label === null ? '' : `-class${grid.label}`}.png`;
  canvas.toBlob((blob) => {
    if (!blob) return;
    if (link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.hidden = false;
    state.download = name;
  }, 'image/png');
}

/** One grid from the controls' settings, with the library's sampler. */
async function generate(model: WebModel): Promise<GridResult> {
  const seed = Number(element<HTMLInputElement>('seed').value);
  if (!(Number.isInteger(seed) && seed >= 0)) throw new Error(`the seed must be an integer >= 0, got '${element<HTMLInputElement>('seed').value}'`);
  const steps = Number(element<HTMLSelectElement>('steps').value) as 1 | 2;
  const midT = steps === 2 ? sliderToTime(Number(element<HTMLInputElement>('tmid').value)) : null;
  const classValue = element<HTMLSelectElement>('label').value;
  const label = model.manifest.net.labelDim > 0 && classValue !== '' ? Number(classValue) : null;
  const started = performance.now();
  const images = generateImages(model.sampler, steps, GRID_IMAGES, {
    seed, batch: GRID_IMAGES, midT: midT === null ? undefined : [midT], labels: label === null ? undefined : label,
  });
  try {
    const values = await images.data();   // waits for the backend to finish the batch
    const ms = performance.now() - started;
    const pixels = toUint8Images(images);
    drawGrid(element<HTMLCanvasElement>('grid'), pixels, images.shape);
    return {
      seed, steps, midT, label, backend: tf.getBackend(), ms, shape: [...images.shape],
      values: Array.from(values), pixels: Array.from(pixels),
    };
  } finally {
    images.dispose();
  }
}

/** Fills the controls from the model: the default t_mid, and the class picker of a conditional model. */
function setUpControls(model: WebModel): void {
  const { manifest } = model;
  const tmid = element<HTMLInputElement>('tmid');
  const tmidValue = element<HTMLOutputElement>('tmid-value');
  const showTime = () => { tmidValue.textContent = sliderToTime(Number(tmid.value)).toFixed(3); };
  tmid.value = String(timeToSlider(manifest.midT[0] ?? T_MID_RANGE[0]));
  tmid.addEventListener('input', showTime);
  showTime();
  const steps = element<HTMLSelectElement>('steps');
  const syncSteps = () => { tmid.disabled = steps.value !== '2'; };
  steps.addEventListener('change', syncSteps);
  syncSteps();
  if (manifest.net.labelDim > 0) {
    const picker = element<HTMLSelectElement>('label');
    const names = manifest.classNames.length ? manifest.classNames : Array.from({ length: manifest.net.labelDim }, (_, i) => `class ${i}`);
    names.forEach((name, id) => picker.add(new Option(`${id}: ${name}`, String(id))));
    element('label-control').hidden = false;
  }
  const weights = manifest.weights.dtype === 'float16' && manifest.halfPrecisionError
    ? `float16 weights (max pixel error against float32: ${manifest.halfPrecisionError.maxAbs.toExponential(2)} on [-1, 1])`
    : `${manifest.weights.dtype} weights`;
  element('model-info').textContent = `${manifest.source.kind} run ${manifest.source.run}, iteration ${manifest.source.iteration}, `
    + `${manifest.net.resolution}x${manifest.net.resolution}x${manifest.net.imageChannels}, ${model.net.paramCount().toLocaleString('en')} parameters, ${weights}`;
  state.model = { run: manifest.source.run, iteration: manifest.source.iteration, weights: manifest.weights.dtype, classes: manifest.net.labelDim };
}

function describeBackendLine(name: string, details: Record<string, string | number | boolean>): string {
  const facts = Object.entries(details).map(([key, value]) => `${key}: ${value}`).join(', ');
  const skipped = state.skipped.length ? ` (not started: ${state.skipped.join('; ')})` : '';
  return `backend: ${name}${facts ? ` (${facts})` : ''}${skipped}; order ${state.order?.join(', ')} (${state.orderReason})`;
}

async function main(): Promise<void> {
  const status = element('status');
  const button = element<HTMLButtonElement>('generate');
  try {
    const backend = await startBackend();
    state.backendDetails = await backendDetails(backend);
    state.backend = backend;
    element('backend').textContent = describeBackendLine(backend, state.backendDetails);
    const model = await loadModel();
    setUpControls(model);
    button.addEventListener('click', async () => {
      button.disabled = true;
      state.status = 'busy';
      status.textContent = 'generating...';
      try {
        // let the browser paint the status (and finish the click) first: on cpu and wasm the batch blocks the page
        await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
        const grid = await generate(model);
        offerDownload(element<HTMLCanvasElement>('grid'), grid);
        window.__lastGrid = grid;
        state.grids++;
        status.textContent = `${grid.shape[0]} images in ${grid.ms.toFixed(0)} ms on ${grid.backend}, `
          + `${grid.steps} step${grid.steps === 2 ? `s (t_mid ${grid.midT?.toFixed(3)})` : ''}, seed ${grid.seed}${grid.label === null ? '' : `, class ${grid.label}`}`
          + (state.grids === 1 ? ' (the first grid includes warm-up: kernel compilation and uploads)' : '');
        state.status = 'ready';
      } catch (err) {
        state.status = 'error';
        state.error = (err as Error).message;
        status.textContent = `error: ${state.error}`;
      } finally {
        button.disabled = false;
      }
    });
    // Enter anywhere generates (except on the buttons and links, where it already clicks them)
    document.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter' || button.disabled || event.target instanceof HTMLButtonElement || event.target instanceof HTMLAnchorElement) return;
      event.preventDefault();
      button.click();
    });
    button.disabled = false;
    state.status = 'ready';
    status.textContent = 'ready';
  } catch (err) {
    state.status = 'error';
    state.error = (err as Error).message;
    status.textContent = `error: ${state.error}`;
  }
}

void main();
