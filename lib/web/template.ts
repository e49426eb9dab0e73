/**
 * The generator page's HTML and the names the page, the exporter and the tests share: files of the site, ids of
 * embedded data, the backends in fallback order, the grid's size and the t_mid slider's range.
 */

/** The backends the page knows, fastest first on a machine with a GPU: WebGL, then wasm, then plain JavaScript. */
export const WEB_BACKENDS = ['webgl', 'wasm', 'cpu'] as const;
export type WebBackend = (typeof WEB_BACKENDS)[number];

/** What WebGL runs on here: a GPU, a software renderer (SwiftShader, llvmpipe), or nothing. */
export type WebglKind = 'hardware' | 'software' | 'none';

/** A WebGL renderer string's kind: SwiftShader, llvmpipe and other software renderers compute on the CPU. */
export function webglKind(renderer: string | null): WebglKind {
  if (renderer === null) return 'none';
  return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(renderer) ? 'software' : 'hardware';
}

/**
 * The order the page tries backends in, and why: ?backend=NAME first when given (then the others as fallbacks); else
 * WebGL on a GPU, wasm, cpu, with a software-rendered WebGL after wasm (it runs the shaders on the CPU, tens of times
 * slower than wasm: 77-187 s against 2.4-6.3 s for 64 images on one machine).
 */
export function backendOrder(asked: string | null, webgl: WebglKind): { order: WebBackend[]; why: string } {
  if (asked && (WEB_BACKENDS as readonly string[]).includes(asked)) {
    return { order: [asked as WebBackend, ...WEB_BACKENDS.filter((b) => b !== asked)], why: `?backend=${asked}` };
  }
  if (webgl === 'hardware') return { order: ['webgl', 'wasm', 'cpu'], why: 'WebGL runs on a GPU' };
  if (webgl === 'software') return { order: ['wasm', 'webgl', 'cpu'], why: 'WebGL is software-rendered here, slower than wasm' };
  return { order: ['wasm', 'cpu'], why: 'no WebGL here' };
}

export const MODEL_FILE = 'model.json';          // the manifest (lib/web/model.ts)
export const WEIGHTS_FILE = 'weights.bin';       // the packed weights (lib/web/weights.ts)
export const SCRIPT_FILE = 'ect-web.js';         // the bundle of lib/web/page.ts
export const PAGE_FILE = 'index.html';

/** Ids of the script elements that carry the model and the wasm binaries inside a self-contained page. */
export const EMBEDDED_MODEL_ID = 'ect-model';
export const EMBEDDED_WEIGHTS_ID = 'ect-weights';
export const EMBEDDED_WASM_ID = 'ect-wasm';

export const GRID_COLUMNS = 8;                   // images per row of the grid
export const GRID_IMAGES = 64;                   // images per click: one batch
export const T_MID_RANGE: [number, number] = [0.02, 20];   // the t_mid slider, log-spaced (the paper's 0.821 near the middle)

/** Where the page's script and data come from: files beside it, or everything inline (one HTML file, e.g. an iframe's srcdoc). */
export type PageSource =
  | { kind: 'files' }
  | { kind: 'inline'; script: string; manifestJson: string; weightsBase64: string; wasmDataUrls: Record<string, string> };

/** JSON safe inside a <script> element: no '<' that could close it. */
function scriptJson(json: string): string {
  return json.replace(/</g, '\\u003c');
}

/** A script's source safe inside a <script> element (esbuild's output already escapes '</script' in strings). */
function inlineScript(source: string): string {
  return source.replace(/<\/script/gi, '<\\/script');
}

/** The generator page. */
export function webPageHtml(title: string, source: PageSource): string {
  const data = source.kind === 'inline' ? [
    `<script type="application/json" id="${EMBEDDED_MODEL_ID}">${scriptJson(source.manifestJson)}</script>`,
    `<script type="text/plain" id="${EMBEDDED_WEIGHTS_ID}">${source.weightsBase64}</script>`,
    `<script type="application/json" id="${EMBEDDED_WASM_ID}">${scriptJson(JSON.stringify(source.wasmDataUrls))}</script>`,
    `<script>${inlineScript(source.script)}</script>`,
  ].join('\n') : `<script src="${SCRIPT_FILE}"></script>`;
  const backendLinks = WEB_BACKENDS.map((b) => `<a href="?backend=${b}">${b}</a>`).join(' · ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${escapeHtml(title)}</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 1rem; color: #222; }
  h1 { font-size: 1.2rem; margin: 0 0 0.3rem; }
  form { display: flex; flex-wrap: wrap; gap: 0.6rem 1.2rem; align-items: center; margin: 0.8rem 0; }
  label { display: inline-flex; gap: 0.4rem; align-items: center; }
  input[type=number] { width: 6rem; }
  #grid { image-rendering: pixelated; width: min(100%, 480px); background: #000; display: block; }
  .small { color: #666; font-size: 0.85rem; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<div class="small" id="model-info">loading the model...</div>
<form onsubmit="return false">
  <label>seed <input type="number" id="seed" value="0" min="0" step="1"></label>
  <label>steps <select id="steps"><option value="1">1</option><option value="2">2</option></select></label>
  <label>t_mid <input type="range" id="tmid" min="0" max="1" step="any"> <output id="tmid-value"></output></label>
  <label id="label-control" hidden>class <select id="label"><option value="">each image's own (from the seed)</option></select></label>
  <button type="button" id="generate" disabled>Generate ${GRID_IMAGES}</button>
  <a id="download" hidden>download PNG</a>
</form>
<canvas id="grid" width="${GRID_COLUMNS * 30 + 2}" height="${GRID_COLUMNS * 30 + 2}"></canvas>
<p id="status">starting...</p>
<p class="small" id="backend">backend: starting...</p>
<p class="small">Enter generates. Backend order: WebGL on a GPU, then wasm (with threads where the page is cross-origin isolated), then cpu;
a software-rendered WebGL comes after wasm. Force one with ${backendLinks}; ?threads=N sets wasm's threads (default one per core).
The network and sampler are the ect-workbench library's own (lib/nn/unet.ts, lib/sample.ts), bundled with esbuild.</p>
${data}
</body>
</html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
