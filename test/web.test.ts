/**
 * The browser generator (lib/web/, `ect export-web`): weight packing, the bundle's imports, and the page itself in
 * headless Chromium on every backend that starts there, against Node's generateImages for the same seed.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Browser, Page } from 'playwright-core';
import { PNG } from 'pngjs';
import { SYNTHETIC_CLASS_NAMES } from '../lib/data/synthetic';
import { UNet } from '../lib/nn/unet';
import { launchChromium } from '../lib/plots/render';
import { generateImages, samplerModelFor } from '../lib/sample';
import { checkpointPath, saveCheckpoint } from '../lib/train/checkpoint';
import { disposeModel, loadRunModel, samplerModelOf, type LoadedModel } from '../lib/runs/model';
import type { WebModelManifest } from '../lib/web/model';
import type { GridResult, PageState } from '../lib/web/page';
import { serveSite, type SiteServer } from '../lib/web/server';
import { bundleWebPage, exportWebSite, imageDifference, webPageIframe, type ExportedSite } from '../lib/web/site';
import { backendOrder, WEB_BACKENDS, webglKind, type WebBackend } from '../lib/web/template';
import { packWeights, unpackWeights, type HostTensor } from '../lib/web/weights';
import { TINY_NET, requireSystemPart, tinyRunConfig, useTestBackend } from './helpers';

/**
 * The committed demo ECT run (28x28 Fashion-MNIST, 180k parameters): a real model, small enough for a test.
 * ECT_WEB_TEST_CHECKPOINT runs the same checks on another one, e.g. the prebuilt site's (SHIPPED_WEB_CHECKPOINT).
 */
const ROOT = path.resolve(__dirname, '..', '..');
const CHECKPOINT = process.env.ECT_WEB_TEST_CHECKPOINT ? path.resolve(ROOT, process.env.ECT_WEB_TEST_CHECKPOINT) : path.join(ROOT, 'results', 'archive', 'demo', 'ect');
const SEED = 3;

/**
 * How far the page's images (in [-1, 1]) may be from Node's for the same seed. cpu and wasm compute in float32 like
 * Node, in another order; WebGL's shaders use the GPU's (here SwiftShader's) float32 arithmetic and transcendental
 * functions, which are less exact.
 */
const TOLERANCE: Record<WebBackend, number> = { cpu: 5e-5, wasm: 5e-5, webgl: 2e-3 };
/** float16 weights against float32, max pixel difference of 1-step images (README states the measured value). */
const FLOAT16_TOLERANCE = 5e-3;

interface BackendRun { backend: WebBackend; ran: boolean; why?: string; details?: Record<string, unknown>; firstMs?: number; ms?: number; maxAbs?: number }

describe('web: weight packing', () => {
  const weights = new Map<string, HostTensor>([
    ['a.weight', { shape: [2, 3], values: Float32Array.from([0, 1, -2.5, 1e-3, 65504, -7e-6]) }],
    ['a.bias', { shape: [3], values: Float32Array.from([0.1, -0.2, 0.3]) }],
  ]);

  it('float32 round-trips exactly; float16 to within half-precision rounding, in half the bytes', () => {
    const full = packWeights(weights, 'float32');
    assert.equal(full.bytes.length, 9 * 4);
    assert.deepEqual(unpackWeights(full.table, full.bytes), weights);
    const half = packWeights(weights, 'float16');
    assert.equal(half.bytes.length, 9 * 2);
    for (const [name, { values }] of unpackWeights(half.table, half.bytes)) {
      const original = (weights.get(name) as HostTensor).values;
      // float16 keeps 11 significant bits: relative error <= 2^-11 for normal numbers, 2^-25 absolute below 2^-14
      values.forEach((v, i) => assert.ok(Math.abs(v - original[i]) <= Math.max(Math.abs(original[i]) * 2 ** -11, 2 ** -25), `${name}[${i}]`));
    }
  });

  it('refuses a weight file that does not match its table', () => {
    const full = packWeights(weights, 'float32');
    assert.throws(() => unpackWeights(full.table, full.bytes.subarray(4)), /32 bytes, its table describes 36/);
  });
});

describe('web: the backend order', () => {
  it('puts a software-rendered WebGL after wasm, a GPU\'s first; ?backend= first of all', () => {
    assert.equal(webglKind('ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero)), SwiftShader driver)'), 'software');
    assert.equal(webglKind('llvmpipe (LLVM 15.0.6, 256 bits)'), 'software');
    assert.equal(webglKind('ANGLE (NVIDIA, NVIDIA GeForce RTX 3080 Direct3D11 vs_5_0 ps_5_0)'), 'hardware');
    assert.equal(webglKind(null), 'none');
    assert.deepEqual(backendOrder(null, 'software').order, ['wasm', 'webgl', 'cpu']);
    assert.deepEqual(backendOrder(null, 'hardware').order, ['webgl', 'wasm', 'cpu']);
    assert.deepEqual(backendOrder(null, 'none').order, ['wasm', 'cpu']);
    assert.deepEqual(backendOrder('cpu', 'hardware').order, ['cpu', 'webgl', 'wasm']);
    assert.deepEqual(backendOrder('nonsense', 'software').order, ['wasm', 'webgl', 'cpu']);
  });
});

describe('web: the page bundle', () => {
  it('bundles the library\'s own network and sampler, and nothing Node-only', async () => {
    const { inputs } = await bundleWebPage();  // throws on Node-only modules
    for (const own of ['dist/lib/sample.js', 'dist/lib/nn/unet.js', 'dist/lib/nn/layers.js', 'dist/lib/edm/precond.js', 'dist/lib/random.js']) {
      assert.ok(inputs.some((input) => input.endsWith(own)), `the bundle lacks ${own}`);
    }
    assert.ok(!inputs.some((input) => /lib\/(train|backend|data)\/|tfjs-node|native\//.test(input)), inputs.join(', '));
  });
});

describe('web: the site folder', () => {
  before(async () => { await useTestBackend(); });

  it('refuses, before the work, a folder that is not empty unless --force, and an output that is a file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-web-out-'));
    try {
      const out = path.join(dir, 'site');
      fs.mkdirSync(out);
      fs.writeFileSync(path.join(out, 'index.html'), 'my own page');
      await assert.rejects(exportWebSite({ checkpoint: path.join(dir, 'no-such-run'), out }),
        new RegExp(`^Error: ${out}: the folder is not empty \\(index\\.html\\); the export would overwrite its index\\.html and the rest\\. Choose another --out, or add --force`));
      assert.equal(fs.readFileSync(path.join(out, 'index.html'), 'utf8'), 'my own page');
      const file = path.join(dir, 'a-file');
      fs.writeFileSync(file, '');
      await assert.rejects(exportWebSite({ checkpoint: CHECKPOINT, out: file }), new RegExp(`${file}: exists and is not a folder`));
      const site = await exportWebSite({ checkpoint: CHECKPOINT, out, force: true });
      assert.ok(site.files.every((name) => fs.existsSync(path.join(out, name))));
      assert.notEqual(fs.readFileSync(path.join(out, 'index.html'), 'utf8'), 'my own page');
      await exportWebSite({ checkpoint: CHECKPOINT, out: path.join(dir, 'empty') });  // a new folder needs no --force
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('web: the page in headless Chromium', function () {
  this.timeout(600000);
  let dir: string;
  let site: ExportedSite;
  let halfManifest: WebModelManifest;
  let exportLog: string;
  let server: SiteServer;
  let browser: Browser;
  let model: LoadedModel;
  const runs: BackendRun[] = [];

  before(async function () {
    requireSystemPart(this, 'chromium');
    await useTestBackend();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-web-'));
    site = await exportWebSite({ checkpoint: CHECKPOINT, out: path.join(dir, 'float32') });
    // the float16 site through the command line, as a user makes one
    const cli = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'ect.js'), 'export-web', '--checkpoint', CHECKPOINT, '--out', path.join(dir, 'float16'), '--dtype', 'float16'], {
      encoding: 'utf8', env: { ...process.env, ECT_BACKEND: process.env.ECT_TEST_BACKEND ?? process.env.ECT_BACKEND },
    });
    assert.equal(cli.status, 0, cli.stderr);
    exportLog = cli.stdout;
    halfManifest = JSON.parse(fs.readFileSync(path.join(dir, 'float16', 'model.json'), 'utf8')) as WebModelManifest;
    server = await serveSite(dir);
    browser = await launchChromium();
    model = await loadRunModel(CHECKPOINT);
  });

  after(async () => {
    if (runs.length) {
      console.log('      time per 64-image 1-step batch in headless Chromium (webgl and wasm: after a warm-up batch), and max |page - Node|:');
      for (const run of runs) {
        console.log(run.ran
          ? `        ${run.backend}: ${(run.ms as number / 1000).toFixed(2)} s${run.firstMs === undefined ? '' : ` (first batch ${(run.firstMs / 1000).toFixed(2)} s)`}, max |diff| ${run.maxAbs?.toExponential(1)}, ${JSON.stringify(run.details)}`
          : `        ${run.backend}: did not run (${run.why})`);
      }
    }
    await browser?.close();
    await server?.close();
    if (model) disposeModel(model);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Opens the page, generates the seed's grid `batches` times (a first batch compiles WebGL's shaders and wasm's
   * kernels; the plain cpu backend has nothing to warm up) and returns the first and the last.
   */
  async function runPage(url: string, batches: number, setup?: (page: Page) => Promise<void>): Promise<{ state: PageState; first: GridResult; grid: GridResult }> {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
    try {
      await page.goto(url);
      await page.waitForFunction(() => window.__ect && window.__ect.status !== 'loading', null, { timeout: 120000 });
      const ready = await page.evaluate(() => window.__ect);
      assert.equal(ready.status, 'ready', ready.error);
      await page.fill('#seed', String(SEED));
      await setup?.(page);
      const grids: GridResult[] = [];
      for (let k = 1; k <= batches; k++) {
        await page.click('#generate', { timeout: 120000 });
        await page.waitForFunction((n) => window.__ect.grids === n || window.__ect.status === 'error', k, { timeout: 300000 });
        const state = await page.evaluate(() => window.__ect);
        assert.equal(state.status, 'ready', state.error);
        grids.push(await page.evaluate(() => window.__lastGrid as GridResult));
      }
      assert.deepEqual(errors, [], 'the page logged errors');
      return { state: await page.evaluate(() => window.__ect), first: grids[0], grid: grids[grids.length - 1] };
    } finally {
      await page.close();
    }
  }

  for (const backend of WEB_BACKENDS) {
    it(`${backend}: a 1-step grid from a fixed seed equals Node's generateImages (within ${TOLERANCE[backend]})`, async () => {
      const reference = generateImages(samplerModelOf(model), 1, 64, { seed: SEED });
      const expected = reference.dataSync();
      reference.dispose();
      const { state, first, grid } = await runPage(`${server.url}float32/?backend=${backend}`, backend === 'cpu' ? 1 : 2);
      if (state.backend !== backend) {
        // a backend this Chromium cannot start is reported, not failed; cpu and wasm always start
        assert.equal(backend, 'webgl', `the page fell back from ${backend}: ${state.skipped.join('; ')}`);
        runs.push({ backend, ran: false, why: state.skipped.join('; ') });
        return;
      }
      assert.deepEqual(grid.shape, [64, 28, 28, 1]);
      assert.equal(grid.seed, SEED);
      const { maxAbs } = imageDifference(grid.values, expected);
      runs.push({ backend, ran: true, details: state.backendDetails, firstMs: first === grid ? undefined : first.ms, ms: grid.ms, maxAbs });
      assert.ok(maxAbs <= TOLERANCE[backend], `max |page - Node| ${maxAbs} on ${backend}`);
      // the displayed uint8 pixels (truncated) differ by at most one level more than the float tolerance allows
      const expectedPixels = Array.from(expected, (x) => Math.trunc(Math.min(255, Math.max(0, x * 127.5 + 128))));
      const pixelDiff = imageDifference(grid.pixels, expectedPixels).maxAbs;
      assert.ok(pixelDiff <= Math.ceil(TOLERANCE[backend] * 127.5) + 1, `uint8 pixels differ by ${pixelDiff}`);
      if (backend === 'webgl') assert.equal(typeof state.backendDetails?.renderer, 'string');
    });
  }

  it('2 steps at the t_mid of the slider equal Node\'s 2-step sampler at that time (wasm)', async () => {
    const { grid } = await runPage(`${server.url}float32/?backend=wasm`, 1, async (page) => {
      await page.selectOption('#steps', '2');
      await page.$eval('#tmid', (slider: HTMLInputElement) => { slider.value = '0.3'; slider.dispatchEvent(new Event('input')); });
    });
    assert.equal(grid.steps, 2);
    const midT = grid.midT as number;
    assert.ok(midT > 0.02 && midT < 20 && Math.abs(midT - 0.821) > 0.1, `t_mid ${midT}`);
    const reference = generateImages(samplerModelOf(model), 2, 64, { seed: SEED, midT: [midT] });
    const { maxAbs } = imageDifference(grid.values, reference.dataSync());
    reference.dispose();
    assert.ok(maxAbs <= TOLERANCE.wasm, `max |page - Node| ${maxAbs}`);
  });

  it(`float16 weights: generated pixels within ${FLOAT16_TOLERANCE} of float32, measured at export and shown in the page`, async () => {
    const error = halfManifest.halfPrecisionError;
    assert.ok(error && error.images === 64 && error.steps === 1);
    console.log(`      float16 weights: max |pixel difference| ${error.maxAbs.toExponential(2)}, mean ${error.meanAbs.toExponential(2)} (1-step, 64 images, [-1, 1])`);
    assert.ok(error.maxAbs > 0 && error.maxAbs <= FLOAT16_TOLERANCE, `float16 max error ${error.maxAbs}`);
    assert.equal(fs.statSync(path.join(dir, 'float16', 'weights.bin')).size * 2, site.weightsBytes);
    assert.match(exportLog, /float16 weights: max \|pixel difference\| against float32 [0-9.e-]+/);
    const { grid } = await runPage(`${server.url}float16/?backend=wasm`, 1);
    const reference = generateImages(samplerModelOf(model), 1, 64, { seed: SEED });
    const { maxAbs } = imageDifference(grid.values, reference.dataSync());
    reference.dispose();
    assert.ok(maxAbs <= FLOAT16_TOLERANCE, `float16 page against float32 Node: ${maxAbs}`);
  });

  it('a class-conditional model: the class picker lists its classes and the grid is Node\'s for that class (wasm)', async () => {
    // an 8x8 conditional UNet saved as a run's checkpoint, every weight drawn from N(0, 0.2^2) (EDM's zero-initialised
    // last layers would hide the labels' effect): what matters is that the page's labels reach the network
    const cfg = tinyRunConfig('tune', { net: { ...TINY_NET, labelDim: 3 } });
    const net = new UNet(cfg.net, cfg.seed);
    [...net.params.values()].forEach((param, i) => param.assign(tf.tidy(() => tf.randomNormal(param.shape, 0, 0.2, 'float32', i + 1))));
    const runDir = path.join(dir, 'conditional-run');
    saveCheckpoint(checkpointPath(path.join(runDir, 'checkpoints'), 0), { meta: { config: cfg, iteration: 0 }, groups: { params: net.params, ema: net.params } });
    try {
      const conditional = await exportWebSite({ checkpoint: runDir, out: path.join(dir, 'conditional') });
      assert.deepEqual(conditional.manifest.classNames, SYNTHETIC_CLASS_NAMES.slice(0, 3));
      const { grid } = await runPage(`${server.url}conditional/?backend=wasm`, 1, async (page) => {
        assert.equal(await page.isVisible('#label'), true);
        assert.equal((await page.$$('#label option')).length, 4);  // each image's own class, then the three classes
        await page.selectOption('#label', '2');
      });
      assert.equal(grid.label, 2);
      const sampler = samplerModelFor(net, new Map(net.params), cfg);
      const sameClass = generateImages(sampler, 1, 64, { seed: SEED, labels: 2 });
      const otherClass = generateImages(sampler, 1, 64, { seed: SEED, labels: 0 });
      assert.ok(imageDifference(grid.values, sameClass.dataSync()).maxAbs <= TOLERANCE.wasm);
      assert.ok(imageDifference(grid.values, otherClass.dataSync()).maxAbs > 100 * TOLERANCE.wasm, 'the class made no difference');
      sameClass.dispose();
      otherClass.dispose();
    } finally {
      net.dispose();
    }
  });

  it('without ?backend= it runs wasm, not the software WebGL of headless Chromium; Enter generates; the grid downloads as a PNG; t_mid starts at the run\'s', async () => {
    const chosen = await exportWebSite({ checkpoint: CHECKPOINT, out: path.join(dir, 'chosen-tmid'), midT: [3] });
    assert.deepEqual(chosen.manifest.midT, [3]);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    try {
      await page.goto(`${server.url}chosen-tmid/`);
      await page.waitForFunction(() => window.__ect && window.__ect.status !== 'loading', null, { timeout: 120000 });
      const state = await page.evaluate(() => window.__ect);
      assert.equal(state.status, 'ready', state.error);
      assert.equal(state.backend, 'wasm', `order ${state.order?.join(', ')} (${state.orderReason}); skipped ${state.skipped.join('; ')}`);
      assert.equal(state.backendDetails?.crossOriginIsolated, true, 'the site server sends the isolation headers');
      const cores = await page.evaluate(() => navigator.hardwareConcurrency);
      assert.equal(state.backendDetails?.threads, cores, 'wasm runs a thread per logical core (tfjs alone would take half)');
      assert.equal(await page.textContent('#tmid-value'), '3.000', 'the slider starts at the exported run\'s t_mid');
      await page.selectOption('#steps', '2');
      await page.focus('#seed');
      await page.keyboard.press('Enter');
      await page.waitForFunction(() => window.__ect.grids === 1 || window.__ect.status === 'error', null, { timeout: 300000 });
      const grid = await page.evaluate(() => window.__lastGrid as GridResult);
      assert.equal(grid.steps, 2);
      assert.ok(Math.abs((grid.midT as number) - 3) < 1e-9, `t_mid ${grid.midT}`);
      console.log(`      default backend ${grid.backend} (${state.orderReason}; ${JSON.stringify(state.backendDetails)}): 64 images in ${(grid.ms / 1000).toFixed(2)} s, the first batch (warm-up included), under the test's load`);
      await page.waitForSelector('#download:not([hidden])', { timeout: 30000 });
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
      assert.equal(download.suggestedFilename(), 'ect-seed0-2step-tmid3.000.png');
      const png = PNG.sync.read(fs.readFileSync(await download.path() as string));
      assert.deepEqual([png.width, png.height], [8 * (28 + 2) + 2, 8 * (28 + 2) + 2], 'the grid as drawn: 8 x 8 images of 28 px, 2 px apart');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  it('the self-contained page (the notebook\'s iframe) generates from its embedded model', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    try {
      await page.setContent(`<!DOCTYPE html><html><body>${webPageIframe(site.dir)}</body></html>`);
      const frame = page.frames().find((f) => f !== page.mainFrame());
      assert.ok(frame, 'no iframe');
      await frame.waitForFunction(() => window.__ect && window.__ect.status !== 'loading', null, { timeout: 120000 });
      const state = await frame.evaluate(() => window.__ect);
      assert.equal(state.status, 'ready', state.error);
      assert.equal(state.model?.iteration, site.manifest.source.iteration);
      await frame.fill('#seed', String(SEED));
      await frame.click('#generate', { timeout: 120000 });
      await frame.waitForFunction(() => window.__ect.grids === 1 || window.__ect.status === 'error', null, { timeout: 300000 });
      const grid = await frame.evaluate(() => window.__lastGrid as GridResult);
      const reference = generateImages(samplerModelOf(model), 1, 64, { seed: SEED });
      const { maxAbs } = imageDifference(grid.values, reference.dataSync());
      reference.dispose();
      assert.ok(maxAbs <= TOLERANCE[grid.backend as WebBackend], `max |page - Node| ${maxAbs} on ${grid.backend}`);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});
