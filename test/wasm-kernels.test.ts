/** The wasm backend's training kernels and every op the UNet trains through, checked against the cpu backend. */
import * as assert from 'assert';
import * as tf from '@tensorflow/tfjs-core';
import '../lib/tf-gradients';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import seedrandom from 'seedrandom';
import { registerWasmTrainingKernels } from '../lib/backend/wasm-kernels';
import { downsample2x, upsample2x, groupNorm, selfAttention, silu, positionalEmbedding, DropoutMasks } from '../lib/nn/layers';
import { UNet } from '../lib/nn/unet';
import type { NetworkConfig } from '../lib/config/types';

const RELATIVE_TOLERANCE = 1e-4;

/** Standard-normal values from a seeded generator (Box-Muller), so both backends see the same inputs. */
function randomValues(rng: seedrandom.PRNG, size: number): Float32Array {
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  return values;
}

/** Runs `compute` on a backend and returns its outputs as plain arrays (no tensor left behind). */
async function runOn(backend: string, compute: () => tf.Tensor[]): Promise<{ shapes: number[][]; values: Float32Array[] }> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  // the backend's own count also sees intermediates our kernels make outside the engine's bookkeeping
  const buffersBefore = tf.engine().backend.numDataIds();
  const outputs = tf.tidy(compute);
  const result = { shapes: outputs.map(t => t.shape), values: outputs.map(t => t.dataSync() as Float32Array) };
  tf.dispose(outputs);
  assert.strictEqual(tf.memory().numTensors, before, `${backend}: tensors leaked`);
  assert.strictEqual(tf.engine().backend.numDataIds(), buffersBefore, `${backend}: data buffers leaked`);
  return result;
}

/** Largest |a - b| relative to the largest |b|, i.e. an error relative to the output's scale. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 1e-30;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Asserts that `compute` gives the same shapes and values (within 1e-4 relative) on wasm as on cpu. */
async function assertWasmMatchesCpu(label: string, compute: () => tf.Tensor[]): Promise<void> {
  await assertWasmMatchesReference(label, compute, compute);
}

/** Asserts that `onWasm` on wasm gives what `reference` gives on cpu (within 1e-4 relative). */
async function assertWasmMatchesReference(label: string, onWasm: () => tf.Tensor[], reference: () => tf.Tensor[]): Promise<void> {
  const cpu = await runOn('cpu', reference);
  const wasm = await runOn('wasm', onWasm);
  assert.deepStrictEqual(wasm.shapes, cpu.shapes, `${label}: shapes`);
  cpu.values.forEach((expected, i) => {
    const error = relativeError(wasm.values[i], expected);
    assert.ok(Number.isFinite(error) && error < RELATIVE_TOLERANCE, `${label}: output ${i} differs by ${error} (relative)`);
  });
}

/** Value and gradients (w.r.t. every input) of sum(f(inputs) * probe), probe a fixed random tensor. */
function valueAndGradients(f: (...inputs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], seed: string): tf.Tensor[] {
  const output = f(...inputs);
  const probe = tf.tensor(randomValues(seedrandom(seed), output.size), output.shape);
  const gradients = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), probe)))(inputs);
  return [output, ...gradients];
}

/** A tensor of seeded normal values (times `scale`, plus `shift`). */
function randn(shape: number[], seed: string, scale = 1, shift = 0): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const values = randomValues(seedrandom(seed), size).map(v => v * scale + shift);
  return tf.tensor(values, shape);
}

describe('wasm training kernels', function () {
  let registered: string[];

  before(async () => {
    registered = registerWasmTrainingKernels();
    await tf.setBackend('wasm');
  });
  after(async () => { await tf.setBackend('cpu'); });  // leave other test files on the default backend

  it('registers its two kernels for wasm, and again without harm', () => {
    assert.deepStrictEqual(registered, ['Conv2DBackpropFilter', 'Conv2DBackpropInput']);
    assert.deepStrictEqual(registerWasmTrainingKernels(), registered);
    assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'));
  });

  // Random geometry: batch (odd sizes included), sizes, channels, kernel, stride and every padding form.
  const rng = seedrandom('conv-cases');
  const pick = <T>(options: T[]): T => options[Math.floor(rng() * options.length)];
  const paddings: Array<'same' | 'valid' | number | 'explicit'> = ['same', 'valid', 1, 0, 2, 'explicit'];
  const cases = Array.from({ length: 24 }, (_, index) => {
    const pad = paddings[index % paddings.length];
    const kernel = pick([[1, 1], [3, 3], [2, 3], [3, 1]]) as [number, number];
    return {
      batch: pick([1, 2, 3, 5]),
      height: pick([5, 6, 7, 9]),
      width: pick([4, 5, 8]),
      inChannels: pick([1, 3, 4, 6]),
      outChannels: pick([1, 2, 5, 8]),
      // tfjs 4.22 sizes a numeric-padding output from the kernel height and stride height alone (wrong on
      // every backend, and on wasm XNNPACK then writes past the buffer): numeric paddings get square ones
      kernel: typeof pad === 'number' ? [kernel[0], kernel[0]] as [number, number] : kernel,
      stride: typeof pad === 'number' ? pick([1, 2, 3]) : pick([1, 1, 2, 3, [1, 2]]) as number | [number, number],
      pad,
    };
  });

  // and one layer of UNet size, where XNNPACK's blocked paths (not its small-matrix ones) run
  cases.push({ batch: 3, height: 16, width: 16, inChannels: 32, outChannels: 24, kernel: [3, 3], stride: 1, pad: 'same' });
  for (const c of cases) {
    const label = `conv2d x[${c.batch},${c.height},${c.width},${c.inChannels}] w[${c.kernel},${c.inChannels},${c.outChannels}] stride ${c.stride} pad ${c.pad}`;
    it(`${label}: value and both gradients equal cpu's`, async () => {
      const pad = c.pad === 'explicit'
        ? [[0, 0], [1, 0], [0, 2], [0, 0]] as tf.backend_util.ExplicitPadding : c.pad;
      await assertWasmMatchesCpu(label, () => valueAndGradients(
        (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, pad),
        [randn([c.batch, c.height, c.width, c.inChannels], `${label}x`), randn([...c.kernel, c.inChannels, c.outChannels], `${label}w`)],
        label));
    });
  }

});

describe('wasm gradients of the ops the UNet trains through', function () {
  before(async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
  });
  after(async () => { await tf.setBackend('cpu'); });  // leave other test files on the default backend

  const x4 = () => randn([3, 8, 8, 8], 'x4');
  const positive = (shape: number[], seed: string) => tf.add(tf.abs(randn(shape, seed)), 0.5);
  const checks: Array<[string, () => tf.Tensor[]]> = [
    ['avgPool 2x2', () => valueAndGradients(x => tf.avgPool(x as tf.Tensor4D, 2, 2, 'valid'), [x4()], 'a')],
    ['matMul, all transposes', () => valueAndGradients((a, b) => tf.concat([
      tf.matMul(a, b), tf.matMul(a, b, true, false), tf.matMul(a, b, false, true), tf.matMul(a, b, true, true)]),
    [randn([5, 5], 'c1'), randn([5, 5], 'c2')], 'c')],
    ['batchMatMul with transposes', () => valueAndGradients((q, k) => tf.concat([tf.matMul(q, k, false, true), tf.matMul(q, k, true, false)]),
      [randn([3, 6, 6], 'd1'), randn([3, 6, 6], 'd2')], 'd')],
    ['softmax', () => valueAndGradients(x => tf.softmax(x), [randn([4, 7], 'e')], 'e')],
    ['moments (GroupNorm statistics)', () => valueAndGradients(x => {
      const { mean, variance } = tf.moments(tf.reshape(x, [3, 64, 4, 2]), [1, 3], true);
      return tf.add(mean, tf.rsqrt(tf.add(variance, 1e-6)));
    }, [x4()], 'f')],
    ['sigmoid, exp, log, sqrt, rsqrt, square, cos, sin', () => valueAndGradients(x => tf.addN([
      tf.sigmoid(x), tf.exp(tf.mul(x, 0.3)), tf.log(x), tf.sqrt(x), tf.rsqrt(x), tf.square(x), tf.cos(x), tf.sin(x)]),
    [positive([4, 5], 'g')], 'g')],
    ['concat and slice', () => valueAndGradients((a, b) => tf.slice(tf.concat([a, b], 3), [0, 1, 0, 2], [3, 6, 8, 10]),
      [x4(), randn([3, 8, 8, 5], 'h')], 'h')],
    ['where, isNaN, maximum, clipByValue', () => valueAndGradients(x => {
      const cleaned = tf.where(tf.isNaN(x), tf.zerosLike(x), x);
      return tf.add(tf.maximum(cleaned, 0.1), tf.clipByValue(cleaned, -0.5, 0.5));
    }, [randn([6, 6], 'i')], 'i')],
    ['broadcasting mul/add/sub/div and sum', () => valueAndGradients((a, b, c) =>
      tf.sum(tf.div(tf.sub(tf.mul(a, b), c), tf.add(tf.square(b), 1)), [2]),
    [randn([3, 4, 5], 'j1'), randn([4, 1], 'j2'), randn([5], 'j3')], 'j')],
    ['layers: downsample2x and upsample2x (6-D reshape, mean, broadcast)', () => valueAndGradients(
      x => upsample2x(downsample2x(x as tf.Tensor4D)), [x4()], 'k')],
    ['layers: groupNorm, silu, positionalEmbedding', () => valueAndGradients((x, gamma, beta, noise) => {
      const weights = (name: string) => (name.endsWith('weight') ? gamma : beta);
      const embedding = positionalEmbedding(noise as tf.Tensor1D, 8);
      return tf.add(silu(groupNorm(weights, 'norm', x as tf.Tensor4D)), tf.reshape(embedding, [3, 1, 1, 8]));
    }, [x4(), randn([8], 'l1', 0.1, 1), randn([8], 'l2', 0.1), randn([3], 'l3')], 'l')],
    ['layers: selfAttention (sliced qkv weights, softmax, 1x1 convs)', () => {
      const params = new Map<string, tf.Tensor>([
        ['att.norm.weight', randn([8], 'm1', 0.1, 1)], ['att.norm.bias', randn([8], 'm2', 0.1)],
        ['att.qkv.weight', randn([1, 1, 8, 24], 'm3', 0.3)], ['att.qkv.bias', randn([24], 'm4', 0.1)],
        ['att.proj.weight', randn([1, 1, 8, 8], 'm5', 0.3)], ['att.proj.bias', randn([8], 'm6', 0.1)],
      ]);
      const names = [...params.keys()];
      return valueAndGradients((x, ...weights) => selfAttention(
        name => weights[names.indexOf(name)], 'att', x as tf.Tensor4D), [randn([2, 4, 4, 8], 'm'), ...params.values()], 'm');
    }],
  ];
  for (const [label, compute] of checks) {
    it(`${label}: value and gradients equal cpu's`, async () => assertWasmMatchesCpu(label, compute));
  }

  // tfjs-backend-cpu 4.22's ResizeNearestNeighborGrad reads dy at the image's batch offset, so its gradient
  // is wrong for every image after the first; the reference therefore runs cpu one image at a time.
  const resizes: Array<[number[], [number, number], boolean]> = [[[3, 8, 8, 4], [16, 16], false], [[2, 5, 7, 3], [12, 9], true], [[3, 8, 8, 2], [5, 3], false]];
  for (const [shape, size, alignCorners] of resizes) {
    const label = `resizeNearestNeighbor [${shape}] -> ${size}${alignCorners ? ' alignCorners' : ''}`;
    const resize = (x: tf.Tensor) => tf.image.resizeNearestNeighbor(x as tf.Tensor4D, size, alignCorners);
    it(`${label}: value and gradient equal cpu's, image by image`, async () => assertWasmMatchesReference(label,
      () => valueAndGradients(resize, [randn(shape, label)], label),
      () => {
        const images = tf.split(randn(shape, label), shape[0]);
        const probes = tf.split(tf.tensor(randomValues(seedrandom(label), shape[0] * size[0] * size[1] * shape[3]), [shape[0], ...size, shape[3]]), shape[0]);
        const perImage = images.map((image, i) => [resize(image), tf.grad(x => tf.sum(tf.mul(resize(x), probes[i])))(image)]);
        return [tf.concat(perImage.map(([value]) => value)), tf.concat(perImage.map(([, gradient]) => gradient))];
      }));
  }
});

describe('a small conv net trains on wasm as on cpu', function () {
  before(async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
  });
  after(async () => { await tf.setBackend('cpu'); });  // leave other test files on the default backend

  it('conv 3x3 -> avgpool -> conv 3x3 -> upsample2x (the UNet\'s broadcast upsampling): four gradient-descent steps, same losses and gradients (1e-4 relative)', async () => {
    const learningRate = 0.05;
    const steps = 4;
    // one plain-array state per backend, updated by that backend's own gradients
    const initial = [randn([3, 3, 3, 8], 'w1', 0.3), randn([3, 3, 8, 3], 'w2', 0.3)];
    const initialValues = initial.map(t => t.dataSync() as Float32Array);
    tf.dispose(initial);
    const state: Record<string, Float32Array[]> = { cpu: initialValues, wasm: initialValues.map(v => v.slice()) };
    const shapes = [[3, 3, 3, 8], [3, 3, 8, 3]];
    const wasmLosses: number[] = [];
    for (let step = 0; step < steps; step++) {
      const results: Record<string, { loss: number; gradients: Float32Array[] }> = {};
      for (const backend of ['cpu', 'wasm']) {
        const out = await runOn(backend, () => {
          const images = randn([5, 8, 8, 3], 'images');
          const target = randn([5, 8, 8, 3], 'target');
          const loss = (w1: tf.Tensor, w2: tf.Tensor) => {
            const hidden = tf.relu(tf.conv2d(images as tf.Tensor4D, w1 as tf.Tensor4D, 1, 'same'));
            const pooled = tf.avgPool(hidden as tf.Tensor4D, 2, 2, 'valid');
            const coarse = tf.conv2d(pooled, w2 as tf.Tensor4D, 1, 'same');
            return tf.mean(tf.square(tf.sub(upsample2x(coarse), target)));
          };
          const weights = state[backend].map((v, i) => tf.tensor(v, shapes[i]));
          return [loss(weights[0], weights[1]), ...tf.grads(loss)(weights)];
        });
        results[backend] = { loss: out.values[0][0], gradients: out.values.slice(1) };
        state[backend] = state[backend].map((w, i) => w.map((v, k) => v - learningRate * out.values[1 + i][k]));
      }
      assert.ok(Math.abs(results.wasm.loss - results.cpu.loss) <= RELATIVE_TOLERANCE * Math.abs(results.cpu.loss), `step ${step}: loss`);
      results.cpu.gradients.forEach((expected, i) => {
        const error = relativeError(results.wasm.gradients[i], expected);
        assert.ok(error < RELATIVE_TOLERANCE, `step ${step}: gradient of weight ${i} differs by ${error}`);
      });
      wasmLosses.push(results.wasm.loss);
    }
  });
});

describe('the UNet trains on wasm as on cpu', function () {
  before(async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
  });
  after(async () => { await tf.setBackend('cpu'); });  // leave other test files on the default backend

  it('forward pass and the gradient of every parameter equal cpu\'s (1e-4 relative), dropout included', async () => {
    // a small member of the DDPM++ family with every block kind: down/up-sampling, attention, skips
    const cfg: NetworkConfig = {
      resolution: 8, imageChannels: 3, modelChannels: 8, channelMult: [1, 2], numBlocks: 1,
      attnResolutions: [4], dropout: 0.2, embedMult: 2, labelDim: 0, labelDropout: 0,
    };
    await tf.setBackend('cpu');
    const net = new UNet(cfg, 7);
    const names = [...net.params.keys()];
    const initial = names.map(name => net.params.get(name)!.dataSync() as Float32Array);
    const shapes = names.map(name => net.params.get(name)!.shape);
    const compute = () => {
      const weights = new Map(names.map((name, i) => [name, tf.tensor(initial[i], shapes[i])]));
      const images = randn([3, 8, 8, 3], 'unet-x');
      const noiseLevels = randn([3], 'unet-c') as tf.Tensor1D;
      const target = randn([3, 8, 8, 3], 'unet-y');
      const dropout = new DropoutMasks(11, cfg.dropout);  // same seed: the same units dropped on both backends
      const loss = (...ws: tf.Tensor[]) => {
        const output = net.forward(images as tf.Tensor4D, noiseLevels, {
          training: true, dropout, weights: new Map(names.map((name, i) => [name, ws[i]])),
        });
        return tf.mean(tf.square(tf.sub(output, target)));
      };
      const values = [...weights.values()];
      const result = [loss(...values), ...tf.grads(loss)(values)];
      dropout.dispose();
      return result;
    };
    await assertWasmMatchesCpu('UNet', compute);
    net.dispose();
  });
});
