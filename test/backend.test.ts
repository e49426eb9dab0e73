/** Backend selection: forced choices, the automatic order with its fallback reasons, and clear errors. */
import * as assert from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_CHOICES, GPU_LIBRARIES, describeBackend, describeLoadError, initBackend, missingSharedLibraries, type BackendChoice } from '../lib/backend/select';

describe('backend selection', function () {
  const savedEnv = process.env.ECT_BACKEND;
  after(async () => { await tf.setBackend('cpu'); });  // leave other test files on the default backend
  afterEach(() => {
    if (savedEnv === undefined) delete process.env.ECT_BACKEND;
    else process.env.ECT_BACKEND = savedEnv;
  });

  it('initBackend("cpu") makes cpu current and names its package and version', async () => {
    const info = await initBackend('cpu');
    assert.strictEqual(tf.getBackend(), 'cpu');
    assert.deepStrictEqual([info.choice, info.name, info.package, info.fallbacks], ['cpu', 'cpu', '@tensorflow/tfjs-backend-cpu', []]);
    assert.match(info.version, /^\d+\.\d+\.\d+$/);
  });

  it('initBackend("wasm") runs the single-threaded SIMD build with our training kernels', async () => {
    const info = await initBackend('wasm');
    assert.strictEqual(tf.getBackend(), 'wasm');
    assert.strictEqual(info.package, '@tensorflow/tfjs-backend-wasm');
    assert.strictEqual(info.details?.threads, 1);
    assert.strictEqual(info.details?.simd, String(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')));
    assert.strictEqual(info.details?.addedKernels, 'Conv2DBackpropFilter Conv2DBackpropInput');
    assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'));
    // a gradient that needs the added kernel works right after init
    const gradient = tf.tidy(() => tf.grad(w => tf.sum(tf.conv2d(tf.ones([1, 4, 4, 1]) as tf.Tensor4D, w as tf.Tensor4D, 1, 'valid')))(tf.ones([3, 3, 1, 1])));
    assert.deepStrictEqual(Array.from(gradient.dataSync()), new Array(9).fill(4));
    gradient.dispose();
  });

  it('is idempotent: a second call gives the same backend and the same description', async () => {
    const first = await initBackend('wasm');
    const second = await initBackend('wasm');
    assert.deepStrictEqual(second, first);
    assert.strictEqual(tf.getBackend(), 'wasm');
  });

  it('auto takes the best backend that loads and records one reason per better one skipped', async () => {
    const info = await initBackend('auto');
    assert.strictEqual(info.choice, 'auto');
    assert.strictEqual(tf.getBackend(), info.name);
    const order: BackendChoice[] = ['tensorflow-gpu', 'tensorflow', 'onednn', 'wasm', 'cpu'];
    const chosen = order.indexOf(info.name === 'tensorflow' ? (info.package.endsWith('-gpu') ? 'tensorflow-gpu' : 'tensorflow') : info.name as BackendChoice);
    assert.ok(chosen >= 0, `unexpected backend ${info.name}`);
    assert.deepStrictEqual(info.fallbacks.map(line => line.split(':')[0]), order.slice(0, chosen));
    for (const line of info.fallbacks) assert.ok(!line.includes('\n') && line.length > 'onednn: '.length, `fallback line: ${line}`);
    if (chosen > 1) {
      assert.match(info.fallbacks[1], /^tensorflow: @tensorflow\/tfjs-node (is not installed|is installed without its native addon|failed to load)/);
    }
    const line = describeBackend(info);
    assert.ok(line.startsWith(`backend ${info.name} (${info.package} ${info.version}`), line);
    assert.ok(!line.includes('\n'));
  });

  it('a forced backend that cannot load throws saying which and why', async function () {
    let loaded = false;
    try {
      await initBackend('tensorflow-gpu');
      loaded = true;
    } catch (error) {
      assert.match((error as Error).message, /^backend 'tensorflow-gpu' is not available: @tensorflow\/tfjs-node-gpu (is not installed|is installed without its native addon|failed to load)/);
    }
    if (loaded) this.skip();  // a machine with a working tfjs-node-gpu
  });

  it('rejects an unknown name, listing the valid ones, from the argument and from ECT_BACKEND', async () => {
    const valid = BACKEND_CHOICES.join(', ');
    await assert.rejects(initBackend('webgpu' as BackendChoice), (error: Error) =>
      error.message === `unknown backend 'webgpu' (from initBackend); valid backends: ${valid}`);
    process.env.ECT_BACKEND = 'tpu';
    await assert.rejects(initBackend(), /unknown backend 'tpu' \(from the ECT_BACKEND environment variable\); valid backends: auto, /);
  });

  it('takes its default from ECT_BACKEND', async () => {
    process.env.ECT_BACKEND = 'cpu';
    const info = await initBackend();
    assert.deepStrictEqual([info.choice, tf.getBackend()], ['cpu', 'cpu']);
  });

  it('describes a backend in one line with its details and skipped backends', () => {
    const line = describeBackend({
      choice: 'auto', name: 'wasm', package: '@tensorflow/tfjs-backend-wasm', version: '4.22.0',
      fallbacks: ['onednn: addon missing'], details: { simd: 'true', threads: 1 },
    });
    assert.strictEqual(line, 'backend wasm (@tensorflow/tfjs-backend-wasm 4.22.0, simd=true, threads=1; asked for auto); skipped onednn: addon missing');
  });
});

describe('backend diagnostics and quiet start', function () {
  this.timeout(60000);

  it('names the GPU libraries the loader would not find, from ldconfig\'s listing and LD_LIBRARY_PATH', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-libs-'));
    try {
      fs.writeFileSync(path.join(dir, 'libcudnn.so.8'), '');
      const listing = '9 libs found in cache `/etc/ld.so.cache\'\n\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n'
        + '\tlibcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12\n';
      const missing = missingSharedLibraries(GPU_LIBRARIES, listing, [dir]);
      // libcuda from the cache, libcudnn from the folder; CUDA 12's libcudart does not stand in for 11.0's
      assert.ok(!missing.includes('libcuda.so.1') && !missing.includes('libcudnn.so.8'), missing.join(' '));
      assert.ok(missing.includes('libcudart.so.11.0'), missing.join(' '));
      assert.deepEqual(missingSharedLibraries(['libcudnn.so.8'], '', []), ['libcudnn.so.8']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the shared library in a load error', () => {
    const error = new Error('libtensorflow.so.2: cannot open shared object file: No such file or directory\n    at Module._extensions');
    assert.match(describeLoadError(error), /^missing shared library libtensorflow\.so\.2 \(/);
    assert.equal(describeLoadError(new Error('something else\nsecond line')), 'something else');
  });

  it('prints no TensorFlow.js banner on the cpu, wasm and onednn backends', () => {
    const select = path.resolve(__dirname, '..', 'lib', 'backend', 'select.js');
    for (const backend of ['cpu', 'wasm', 'onednn']) {
      const script = `const tf = require('@tensorflow/tfjs-core'); const { initBackend } = require(${JSON.stringify(select)});
        initBackend(${JSON.stringify(backend)}).then(() => { tf.tensor([1, 2, 3]).square().dataSync(); console.log('ran on', tf.getBackend()); })
          .catch((e) => { console.log('unavailable:', e.message); });`;
      const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', cwd: path.resolve(__dirname, '..', '..') });
      assert.equal(run.status, 0, run.stderr);
      if (run.stdout.startsWith('unavailable')) continue;   // onednn without its addon: nothing to hear
      assert.match(run.stdout, new RegExp(`ran on ${backend}`));
      assert.doesNotMatch(run.stdout + run.stderr, /looks like you are running TensorFlow\.js/, backend);
    }
  });
});
