/** Every kernel the `onednn` backend replaces, checked against the `cpu` backend (values and gradients) on random cases. */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import seedrandom from 'seedrandom';
import { kernelCounters, onednnAddon, outputPool, resetKernelCounters, tryRegisterOnednn } from '../lib/backend/onednn';
import { ALIGN_BYTES } from '../lib/backend/onednn/buffer-pool';
import { ADDON_FUNCTIONS, loadAddon } from '../lib/backend/onednn/addon';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UNet } from '../lib/nn/unet';
import { downsample2x, DropoutMasks, groupCount, groupNorm, upsample2x } from '../lib/nn/layers';
import {
  CONV_SAME_GRAD_KERNEL, CONV_SAME_KERNEL, DOWNSAMPLE_KERNEL, fusedConv2dSame, GROUP_NORM_GRAD_KERNEL, GROUP_NORM_KERNEL, hasFusedGroupNorm, hasFusedResample, hasFusedScaledSum, SCALED_SUM_KERNEL,
  scaledSum, UPSAMPLE_KERNEL,
} from '../lib/nn/fused';
import { hashUniform } from '../lib/random';
import { arraysNormInOrder, createOptimizer, gradientNorm, peekFloat32 } from '../lib/train/optim';
import { firstNonFinite, firstNonFiniteArray } from '../lib/train/finite';
import { Ema } from '../lib/train/ema';
import { EMA_UPDATE_KERNEL, MOMENT_UPDATE_KERNEL } from '../lib/backend/update-kernels';
import type { OptimizerConfig } from '../lib/config/types';
import { TINY_NET, requireSystemPart } from './helpers';
import '../lib/tf-gradients';

/** An input given as plain data, so the same values can be made into a tensor on each backend. */
interface Input { shape: number[]; values: Float32Array }

type Computation = (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[];

const rng = seedrandom('onednn-kernels');
const randInt = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)];

function randomInput(shape: number[]): Input {
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < values.length; i++) values[i] = rng() * 2 - 1;
  return { shape, values };
}

/** Runs fn on one backend with fresh tensors holding the inputs; returns every output's values. */
function runOn(backend: string, fn: Computation, inputs: Input[]): { shape: number[]; values: Float32Array }[] {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const result = fn(...inputs.map((i) => tf.tensor(i.values, i.shape)));
    return (Array.isArray(result) ? result : [result]).map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
  });
}

/** Asserts that fn gives the same shapes and (within float32 summation-order tolerance) values on both backends. */
function assertSameOnBackends(what: string, fn: Computation, inputs: Input[], tolerance = 1e-4): void {
  const expected = runOn('cpu', fn, inputs);
  const actual = runOn('onednn', fn, inputs);
  assert.equal(actual.length, expected.length, `${what}: number of outputs`);
  expected.forEach((e, k) => {
    assert.deepEqual(actual[k].shape, e.shape, `${what}: output ${k} shape`);
    let scale = 1;
    for (const v of e.values) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < e.values.length; i++) {
      const diff = Math.abs(actual[k].values[i] - e.values[i]);
      if (!(diff <= tolerance * scale) && !(Number.isNaN(e.values[i]) && Number.isNaN(actual[k].values[i]))) {
        assert.fail(`${what}: output ${k}[${i}] is ${actual[k].values[i]} on onednn, ${e.values[i]} on cpu`);
      }
    }
  });
}

/** Gradients of sum(fn(...) * fixed random weights) with respect to every input. */
function gradientsOf(fn: (...xs: tf.Tensor[]) => tf.Tensor, weights: Input): Computation {
  return (...xs) => tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(fn(...ys), tf.tensor(weights.values, weights.shape))))(xs);
}

function outputShapeOf(fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: Input[]): number[] {
  return runOn('cpu', fn, inputs)[0].shape;
}

/** Checks values, then gradients against a random upstream gradient. */
function assertValuesAndGradients(what: string, fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: Input[], tolerance = 1e-4): void {
  assertSameOnBackends(what, fn, inputs, tolerance);
  const weights = randomInput(outputShapeOf(fn, inputs));
  assertSameOnBackends(`${what} (gradients)`, gradientsOf(fn, weights), inputs, tolerance);
}

function nativeCount(kernel: string): number {
  return kernelCounters.native[kernel] ?? 0;
}

describe('loading the onednn addon', () => {
  it('refuses a build older than the code, naming what it lacks and how to rebuild', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-stale-addon-'));
    const file = path.join(dir, 'stale-addon.js');
    // an addon from before addressOffset and measureFmaRate: every other function present
    const present = ADDON_FUNCTIONS.filter((name) => name !== 'addressOffset' && name !== 'measureFmaRate');
    fs.writeFileSync(file, present.map((name) => `exports.${name} = () => 0;`).join('\n'));
    const previous = process.env.ECT_ONEDNN_ADDON;
    process.env.ECT_ONEDNN_ADDON = file;
    try {
      const { addon, reason } = loadAddon();
      assert.equal(addon, undefined);
      assert.match(reason ?? '', /older than this code .*lacks addressOffset, measureFmaRate.*npm run build:native/);
    } finally {
      if (previous === undefined) delete process.env.ECT_ONEDNN_ADDON;
      else process.env.ECT_ONEDNN_ADDON = previous;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the built addon exports exactly the functions the code calls', function () {
    requireSystemPart(this, 'native');
    const { addon, reason } = loadAddon();
    assert.ok(addon, reason);
    const exported = Object.keys(addon).filter((name) => typeof (addon as unknown as Record<string, unknown>)[name] === 'function').sort();
    assert.deepEqual(exported, [...ADDON_FUNCTIONS].sort());
  });
});

describe('onednn backend against the cpu backend', function () {
  let previousBackend = 'cpu';

  before(async function () {
    requireSystemPart(this, 'native');
    const status = await tryRegisterOnednn();
    // setup builds the addon whenever its system part is here, so one that does not load is a failure
    assert.ok(status.ok, `the oneDNN addon does not load although libdnnl-dev and a compiler are here: ${status.reason}`);
      previousBackend = tf.getBackend() ?? 'cpu';
    await tf.setBackend('onednn');
    await tf.setBackend('cpu');
  });

  after(async () => {
    await tf.setBackend(previousBackend);
  });

  beforeEach(() => resetKernelCounters());

  it('kernel outputs start on cache-line boundaries of their real addresses, and reads hand out copies', () => {
    const addon = onednnAddon() as NonNullable<ReturnType<typeof onednnAddon>>;
    tf.setBackend('onednn');
    tf.tidy(() => {
      for (const shape of [[3], [100], [7, 9, 5], [64, 28, 28, 4], [2, 300, 300, 3]]) {
        const x = tf.add(tf.ones(shape), tf.scalar(1));  // a native binary kernel writes a pooled array
        const values = (tf.engine().backend as unknown as { data: { get(id: object): { values: Float32Array } } }).data.get(x.dataId).values;
        assert.ok(outputPool.owns(values), `the output of [${shape}] comes from the pool`);
        assert.equal(addon.addressOffset(values, ALIGN_BYTES), 0, `output of [${shape}] at ${addon.addressOffset(values, 4096)} mod 4096`);
        const read = x.dataSync();
        assert.notEqual(read, values, 'dataSync returns a copy of a pooled array');
        assert.equal(read[0], 2);
      }
    });
  });

  it('the gradient norm and the finite check read pooled arrays in place: the same answers, no copies', () => {
    tf.setBackend('onednn');
    tf.tidy(() => {
      const grads = [[5, 7], [300], [3, 3, 8, 16]].map((shape) => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', 7), tf.scalar(0.5)));
      const backend = tf.engine().backend as unknown as { readSync(id: object): unknown };
      let expected = 0;
      for (const g of grads) for (const v of g.dataSync()) expected += v * v;
      const readSync = backend.readSync;
      let reads = 0;
      backend.readSync = (id: object) => { reads++; return readSync.call(backend, id); };
      try {
        const pooled = peekFloat32(grads[1]);
        assert.ok(outputPool.owns(pooled), 'peekFloat32 hands out the pooled array itself');
        assert.equal(peekFloat32(grads[1]), pooled, 'and the same one each time');
        assert.ok(Math.abs(gradientNorm(grads) - Math.sqrt(expected)) <= 1e-12 * Math.sqrt(expected));
        assert.equal(firstNonFinite({ params: new Map(grads.map((g, i) => [`g${i}`, g])) }), null);
        const bad = tf.div(grads[2], tf.scalar(0));  // infinities and NaN (0/0) where entries are 0
        assert.equal(firstNonFinite({ params: new Map([['ok', grads[0]], ['bad', bad]]) }), 'params/bad');
        assert.ok(!Number.isFinite(gradientNorm([grads[0], bad])));
        assert.equal(reads, 0, 'no read copied an array');
      } finally {
        backend.readSync = readSync;
      }
    });
  });

  it('the native sum of squares and finite scan answer as the JavaScript loops do (tails, empty arrays, every kind of non-finite)', () => {
    const addon = onednnAddon()!;
    const lengths = [0, 1, 7, 8, 9, 63, 1000, 4099];
    const arrays = lengths.map((n) => Float32Array.from({ length: n }, () => (rng() * 2 - 1) * 10 ** randInt(-30, 30)));
    arrays.push(Float32Array.of(3.4028234663852886e38, -1.1754943508222875e-38, 1e-45, -0));  // float32 max, smallest normal, a subnormal
    const inOrder = arraysNormInOrder(arrays);
    assert.ok(Math.abs(Math.sqrt(addon.sumOfSquares(arrays)) - inOrder) <= 1e-14 * inOrder);
    assert.equal(addon.sumOfSquares([]), 0);
    assert.equal(addon.firstNonFinite(arrays), -1);
    assert.equal(firstNonFiniteArray(arrays), -1);
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const [k, i] of [[2, 6], [3, 7], [4, 8], [7, 4098], [8, 3]]) {
        const planted = arrays.map((a) => a.slice());
        planted[k][i] = bad;
        planted[6][999] = k === 7 ? bad : planted[6][999];  // with one in an earlier array too, the earlier array is named
        const first = k === 7 ? 6 : k;
        assert.equal(addon.firstNonFinite(planted), first, `${bad} at [${k}][${i}]`);
        assert.equal(firstNonFiniteArray(planted), first, `the JavaScript loop, ${bad} at [${k}][${i}]`);
        const sum = addon.sumOfSquares(planted);
        assert.ok(Number.isNaN(bad) ? Number.isNaN(sum) : sum === Infinity, `sum of squares with ${bad}: ${sum}`);
      }
    }
    assert.throws(() => addon.sumOfSquares([new Float32Array(2), new Float64Array(2) as unknown as Float32Array]), /sumOfSquares: arrays\[1\] is not a Float32Array/);
    assert.throws(() => addon.firstNonFinite(new Float32Array(2) as unknown as Float32Array[]), /firstNonFinite: arrays must be an array of Float32Arrays/);
  });

  it('Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter on random shapes, strides, paddings and batches', () => {
    for (let trial = 0; trial < 24; trial++) {
      const batch = randInt(1, 3), height = randInt(4, 11), width = randInt(4, 11);
      const inChannels = randInt(1, 6), outChannels = randInt(1, 7);
      const kernel = randInt(1, Math.min(4, height, width)), stride = randInt(1, 3);
      const pad = pick(['same', 'valid', randInt(0, 2)] as const);
      const x = randomInput([batch, height, width, inChannels]);
      const filter = randomInput([kernel, kernel, inChannels, outChannels]);
      const what = `conv2d x=[${x.shape}] filter=[${filter.shape}] stride=${stride} pad=${pad}`;
      if (typeof pad === 'number' && (height + 2 * pad < kernel || width + 2 * pad < kernel)) continue;
      assertValuesAndGradients(what, (a, b) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad), [x, filter]);
    }
    assert.ok(nativeCount('Conv2D') > 0 && nativeCount('Conv2DBackpropInput') > 0 && nativeCount('Conv2DBackpropFilter') > 0,
      `native convolutions ran: ${JSON.stringify(kernelCounters)}`);
    assert.equal(kernelCounters.fallback.Conv2D ?? 0, 0, `no Conv2D fallback: ${JSON.stringify(kernelCounters.fallbackReasons)}`);
  });

  it('filter gradients over batch slices side by side (batches the threads divide) match cpu, bias included, and repeat bit for bit', () => {
    // native/src/onednn_ops.cc SplitFilterGradient: one single-threaded primitive per thread over its slice of the batch
    const threads = onednnAddon()!.threads();
    for (const [batch, size, cin, cout] of [[2 * threads, 9, 5, 7], [4 * threads, 12, 16, 16], [2 * threads + 1, 8, 3, 4]]) {
      const x = randomInput([batch, size, size, cin]), filter = randomInput([3, 3, cin, cout]), bias = randomInput([cout]);
      const weights = randomInput([batch, size, size, cout]);
      const what = `batch ${batch} (${batch % threads === 0 ? 'sliced' : 'whole'}), ${size}x${size} ${cin}->${cout}`;
      const conv = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.add(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same'), c);
      assertSameOnBackends(`${what}: conv2d gradients`, gradientsOf(conv, weights), [x, filter, bias]);
      // the UNet's convolution op (every gradient from one kernel) against the composition on cpu
      const fused = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => fusedConv2dSame(a as tf.Tensor4D, b as tf.Tensor4D, c);
      const expected = runOn('cpu', gradientsOf(conv, weights), [x, filter, bias]);
      const first = runOn('onednn', gradientsOf(fused, weights), [x, filter, bias]);
      expected.forEach((e, k) => {
        const scale = e.values.reduce((m, v) => Math.max(m, Math.abs(v)), 1);
        e.values.forEach((v, i) => assert.ok(Math.abs(first[k].values[i] - v) <= 1e-4 * scale, `${what}: fused gradient ${k}[${i}] ${first[k].values[i]} against cpu's ${v}`));
      });
      const again = runOn('onednn', gradientsOf(fused, weights), [x, filter, bias]);
      first.forEach((g, k) => assert.deepEqual(again[k].values, g.values, `${what}: gradient ${k} the same bits on a second run`));
    }
  });

  it('Conv2D with dilations and non-square strides (forward; tfjs has no gradient for dilated convolutions)', () => {
    for (let trial = 0; trial < 12; trial++) {
      const dilation: [number, number] = [randInt(1, 3), randInt(1, 3)];
      const kernel = randInt(2, 3);
      const x = randomInput([randInt(1, 2), randInt(7, 13), randInt(7, 13), randInt(1, 4)]);
      const filter = randomInput([kernel, randInt(1, 3), x.shape[3], randInt(1, 5)]);
      const pad = pick(['same', 'valid'] as const);
      // tfjs only allows dilation with stride 1
      assertSameOnBackends(`dilated conv2d [${x.shape}] [${filter.shape}] d=${dilation} ${pad}`,
        (a, b) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, pad, 'NHWC', dilation), [x, filter]);
      const strides: [number, number] = [randInt(1, 3), randInt(1, 3)];
      assertValuesAndGradients(`strided conv2d [${x.shape}] [${filter.shape}] s=${strides} ${pad}`,
        (a, b) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, strides, pad), [x, filter]);
    }
    assert.equal(kernelCounters.fallback.Conv2D ?? 0, 0, JSON.stringify(kernelCounters.fallbackReasons));
  });

  it('FusedConv2D with bias and every fused activation', () => {
    const activations = ['linear', 'relu', 'relu6', 'leakyrelu', 'sigmoid', 'elu'] as const;
    for (const activation of activations) {
      const x = randomInput([randInt(1, 3), randInt(5, 9), randInt(5, 9), randInt(1, 5)]);
      const filter = randomInput([3, 3, x.shape[3], randInt(2, 6)]);
      const bias = randomInput([filter.shape[3]]);
      const strides = randInt(1, 2);
      const fn = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.fused.conv2d({
        x: a as tf.Tensor4D, filter: b as tf.Tensor4D, bias: c, strides, pad: 'same', activation, leakyreluAlpha: 0.3,
      });
      // tfjs differentiates fused convolutions for the linear and relu activations only
      if (activation === 'linear' || activation === 'relu') {
        assertValuesAndGradients(`fused conv2d ${activation}`, fn, [x, filter, bias]);
      } else {
        assertSameOnBackends(`fused conv2d ${activation}`, fn, [x, filter, bias]);
      }
    }
    assert.ok(nativeCount('FusedConv2D') >= 6, JSON.stringify(kernelCounters));
    assert.equal(kernelCounters.fallback.FusedConv2D ?? 0, 0, JSON.stringify(kernelCounters.fallbackReasons));
  });

  it('MatMul / BatchMatMul with transposes, odd sizes and broadcast batches', () => {
    for (let trial = 0; trial < 20; trial++) {
      const m = randInt(1, 17), k = randInt(1, 19), n = randInt(1, 13);
      const transposeA = rng() < 0.5, transposeB = rng() < 0.5;
      const batch = pick([[], [3], [2, 2]]);
      const batchB = batch.length && rng() < 0.3 ? [1] : batch;
      const a = randomInput([...batch, ...(transposeA ? [k, m] : [m, k])]);
      const b = randomInput([...batchB, ...(transposeB ? [n, k] : [k, n])]);
      const what = `matMul [${a.shape}]${transposeA ? 'T' : ''} x [${b.shape}]${transposeB ? 'T' : ''}`;
      const fn = (p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, transposeA, transposeB);
      // tfjs's BatchMatMul gradient does not reduce over broadcast batches: check values only there
      if (batchB === batch) assertValuesAndGradients(what, fn, [a, b]);
      else assertSameOnBackends(what, fn, [a, b]);
    }
    assert.ok(nativeCount('BatchMatMul') > 0);
    assert.equal(kernelCounters.fallback.BatchMatMul ?? 0, 0, JSON.stringify(kernelCounters.fallbackReasons));
  });

  it('_FusedMatMul with bias and activations', () => {
    for (const activation of ['linear', 'relu', 'sigmoid', 'elu', 'relu6', 'leakyrelu'] as const) {
      const m = randInt(1, 9), k = randInt(1, 9), n = randInt(1, 9);
      const fn = (p: tf.Tensor, q: tf.Tensor, c: tf.Tensor) => tf.fused.matMul({ a: p as tf.Tensor2D, b: q as tf.Tensor2D, bias: c, activation, leakyreluAlpha: 0.1 });
      const inputs = [randomInput([m, k]), randomInput([k, n]), randomInput([n])];
      if (activation === 'linear' || activation === 'relu') assertValuesAndGradients(`fused matMul ${activation}`, fn, inputs);
      else assertSameOnBackends(`fused matMul ${activation}`, fn, inputs);
    }
    assert.ok(nativeCount('_FusedMatMul') >= 6, JSON.stringify(kernelCounters));
  });

  it('small products run on one thread and larger ones on every thread, both right, and the thread count comes back', () => {
    // native/src/onednn_ops.cc runs products of at most 2^20 multiply-adds on the calling thread alone
    const addon = onednnAddon()!;
    const threads = addon.threads();
    for (const [m, k, n] of [[64, 128, 128], [64, 128, 129], [96, 160, 130]]) {
      const fn = (p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, false, true);
      assertValuesAndGradients(`matMul ${m}x${k}x${n} (${m * k * n} multiply-adds)`, fn, [randomInput([m, k]), randomInput([n, k])]);
      assert.equal(addon.threads(), threads, `the OpenMP thread count after a ${m}x${k}x${n} product`);
    }
  });

  it('broadcasting binary ops, comparisons and unary ops', () => {
    const binaries: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
      ['add', tf.add], ['sub', tf.sub], ['mul', tf.mul], ['div', tf.div], ['squaredDifference', tf.squaredDifference],
      ['maximum', tf.maximum], ['minimum', tf.minimum],
    ];
    for (let trial = 0; trial < 30; trial++) {
      const rank = randInt(1, 5);
      const shape = Array.from({ length: rank }, () => randInt(1, 6));
      const other = shape.slice(randInt(0, rank - 1)).map((d) => (rng() < 0.4 ? 1 : d));
      const [name, op] = pick(binaries);
      const inputs = rng() < 0.5 ? [randomInput(shape), randomInput(other)] : [randomInput(other), randomInput(shape)];
      if (name === 'div') inputs[1].values.forEach((v, i, arr) => { arr[i] = v + Math.sign(v || 1) * 0.5; });
      const what = `${name} [${inputs[0].shape}] [${inputs[1].shape}]`;
      // tfjs's SquaredDifference/Maximum/Minimum gradients do not reduce over broadcast axes: values only there
      if (['squaredDifference', 'maximum', 'minimum'].includes(name) && shape.join() !== other.join()) assertSameOnBackends(what, op, inputs);
      else assertValuesAndGradients(what, op, inputs);
      assertSameOnBackends(`less [${inputs[0].shape}] [${inputs[1].shape}]`, (a, b) => tf.cast(tf.less(a, b), 'float32'), inputs);
      assertSameOnBackends(`greater [${inputs[0].shape}] [${inputs[1].shape}]`, (a, b) => tf.cast(tf.greater(a, b), 'float32'), inputs);
    }
    const unaries: Array<[string, (a: tf.Tensor) => tf.Tensor, boolean]> = [
      ['sigmoid', tf.sigmoid, false], ['exp', tf.exp, false], ['neg', tf.neg, false], ['square', tf.square, false],
      ['rsqrt', tf.rsqrt, true], ['sqrt', tf.sqrt, true], ['relu', tf.relu, false], ['log', tf.log, true],
      ['abs', tf.abs, false], ['tanh', tf.tanh, false], ['reciprocal', tf.reciprocal, true],
    ];
    for (const [name, op, positive] of unaries) {
      const x = randomInput([randInt(1, 4), randInt(1, 50), randInt(1, 7)]);
      if (positive) x.values.forEach((v, i, arr) => { arr[i] = Math.abs(v) + 0.1; });
      assertValuesAndGradients(name, op, [x]);
    }
    // large enough to run on both threads
    const big = [randomInput([64, 33, 17]), randomInput([17])];
    assertValuesAndGradients('large broadcast mul', tf.mul, big);
    for (const kernel of ['Add', 'Sub', 'Multiply', 'RealDiv', 'Less', 'Greater', 'Sigmoid', 'Rsqrt']) {
      assert.ok(nativeCount(kernel) > 0, `${kernel} ran natively: ${JSON.stringify(kernelCounters)}`);
    }
  });

  it('reductions over random axes, transposes, softmax', () => {
    for (let trial = 0; trial < 30; trial++) {
      const rank = randInt(1, 5);
      const x = randomInput(Array.from({ length: rank }, () => randInt(1, 7)));
      const axes = [...new Set(Array.from({ length: randInt(1, rank) }, () => randInt(0, rank - 1)))];
      const keepDims = rng() < 0.5;
      assertValuesAndGradients(`sum [${x.shape}] axes ${axes} keep ${keepDims}`, (a) => tf.sum(a, axes, keepDims), [x]);
      assertValuesAndGradients(`mean [${x.shape}] axes ${axes}`, (a) => tf.mean(a, axes, keepDims), [x]);
      assertSameOnBackends(`max [${x.shape}] axes ${axes}`, (a) => tf.max(a, axes, keepDims), [x]);
      assertSameOnBackends(`min [${x.shape}] axes ${axes}`, (a) => tf.min(a, axes, keepDims), [x]);
      const perm = tf.util.createShuffledIndices(rank) as unknown as Uint32Array;
      assertValuesAndGradients(`transpose [${x.shape}] perm ${[...perm]}`, (a) => tf.transpose(a, [...perm]), [x]);
    }
    // a [B, HW, G, C/G] GroupNorm-style moment, big enough for the threaded paths
    assertValuesAndGradients('group moments', (a) => tf.moments(a, [1, 3], true).variance, [randomInput([8, 196, 8, 4])]);
    assertValuesAndGradients('bias gradient-style sum', (a) => tf.sum(a, [0, 1, 2]), [randomInput([16, 14, 14, 32])]);
    for (const shape of [[3, 7], [2, 5, 49], [1, 1], [4, 16], [3, 17], [2, 8, 256], [600, 64]]) {
      assertValuesAndGradients(`softmax [${shape}]`, (a) => tf.softmax(a), [randomInput(shape)]);
    }
    for (const kernel of ['Sum', 'Mean', 'Max', 'Min', 'Transpose', 'Softmax']) {
      assert.ok(nativeCount(kernel) > 0, `${kernel} ran natively: ${JSON.stringify(kernelCounters)}`);
    }
  });

  it('native softmax: float64-accurate rows of every length, exact zeros for -Infinity, NaN rows stay NaN', () => {
    const addon = onednnAddon() as NonNullable<ReturnType<typeof onednnAddon>>;
    for (const cols of [1, 15, 16, 17, 49, 256, 1000]) {
      const rows = 3;
      const x = new Float32Array(rows * cols).map(() => (rng() * 2 - 1) * 40);
      if (cols > 1) x[cols + (cols >> 1)] = -Infinity;  // row 1 (a row of -Infinity alone would be NaN)
      x[2 * cols] = 1e30;                 // row 2: one huge entry takes all the mass
      const out = new Float32Array(rows * cols);
      addon.softmax(x, rows, cols, out);
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
        const peak = Math.max(...row);
        const exps = row.map((v) => Math.exp(v - peak));
        const sum = exps.reduce((a, b) => a + b, 0);
        exps.forEach((e, c) => {
          const got = out[r * cols + c];
          // float32 rounds x - peak by up to 6e-8 of it, which moves exp by that times |x - peak|
          const tolerance = e === 0 ? 0 : (2e-6 + 1.2e-7 * Math.abs(row[c] - peak)) * (e / sum) + 1e-38;
          assert.ok(Math.abs(got - e / sum) <= tolerance, `cols ${cols} row ${r} entry ${c}: ${got} against ${e / sum}`);
        });
      }
      if (cols > 1) assert.equal(out[cols + (cols >> 1)], 0, 'exp(-Infinity) is exactly 0');
      assert.equal(out[2 * cols], 1);
    }
    const withNaN = new Float32Array([0.5, NaN, 1, 2, 3]);
    const out = new Float32Array(5);
    addon.softmax(withNaN, 1, 5, out);
    assert.ok(out.every((v) => Number.isNaN(v)), `a row with NaN is NaN: ${out}`);
  });

  it('slice, split, unstack, concat and stack', () => {
    for (let trial = 0; trial < 20; trial++) {
      const rank = randInt(1, 4);
      const x = randomInput(Array.from({ length: rank }, () => randInt(1, 6)));
      const begin = x.shape.map((d) => randInt(0, d - 1));
      const size = x.shape.map((d, i) => randInt(1, d - begin[i]));
      assertValuesAndGradients(`slice [${x.shape}] ${begin} ${size}`, (a) => tf.slice(a, begin, size), [x]);
      const axis = randInt(0, rank - 1);
      // tfjs's Unpack gradient breaks when the axis has length 1 (one output, dy is not an array)
      if (x.shape[axis] > 1) assertValuesAndGradients(`unstack [${x.shape}] axis ${axis}`, (a) => tf.stack(tf.unstack(a, axis).map((t, i) => tf.mul(t, i + 1)), axis), [x]);
      const other = randomInput(x.shape.map((d, i) => (i === axis ? randInt(1, 4) : d)));
      assertValuesAndGradients(`concat [${x.shape}] [${other.shape}] axis ${axis}`, (a, b) => tf.concat([a, b, a], axis), [x, other]);
      if (x.shape[axis] >= 2) {
        const first = randInt(1, x.shape[axis] - 1);
        assertSameOnBackends(`split [${x.shape}] axis ${axis}`, (a) => tf.split(a, [first, x.shape[axis] - first], axis), [x]);
      }
    }
    for (const kernel of ['Slice', 'Unpack', 'Pack', 'Concat', 'SplitV']) {
      assert.ok(nativeCount(kernel) > 0, `${kernel} ran natively: ${JSON.stringify(kernelCounters)}`);
    }
  });

  it('recycles output arrays of disposed tensors without touching values already read', () => {
    tf.setBackend('onednn');
    const a = tf.tensor([1, 2, 3, 4]), b = tf.tensor([10, 20, 30, 40]);
    const first = tf.add(a, b);
    const read = first.dataSync();
    first.dispose();
    const second = tf.mul(a, b);  // same length: takes the array `first` released
    assert.deepEqual([...read], [11, 22, 33, 44], 'a read survives the reuse of its tensor\'s array');
    assert.deepEqual([...second.dataSync()], [10, 40, 90, 160]);
    // a chain that recycles arrays on every step still matches the cpu backend
    const chain = (x: tf.Tensor) => {
      let h = x;
      for (let i = 0; i < 20; i++) h = tf.tidy(() => tf.sigmoid(tf.add(tf.mul(h, 1.5), -0.25)));
      return h;
    };
    tf.dispose([a, b, second]);
    tf.setBackend('cpu');
    assertSameOnBackends('recycling chain', chain, [randomInput([64, 33])]);
  });

  it('fused GroupNorm (+ shift, + SiLU, + dropout mask) matches the composite ops on cpu, values and all gradients', () => {
    tf.setBackend('cpu');
    assert.equal(hasFusedGroupNorm(), false, 'cpu composes GroupNorm from tfjs ops');
    tf.setBackend('onednn');
    assert.equal(hasFusedGroupNorm(), true, 'onednn registers the fused kernels');
    resetKernelCounters();
    // the last case is large enough to run on every thread, with an odd batch
    const cases = [[2, 5, 3, 8], [3, 4, 4, 32], [1, 7, 5, 12], [4, 2, 2, 6], [2, 6, 6, 64], [9, 8, 8, 64]];
    for (const [b, h, w, c] of cases) {
      for (const [withShift, silu, masked] of [[false, false, false], [false, true, false], [true, false, false], [true, true, false],
        [false, false, true], [true, true, true]]) {
        // offset and scale the input so the mean and variance matter; gamma/beta away from 1/0
        const x = randomInput([b, h, w, c]);
        x.values.forEach((v, i) => { x.values[i] = 3 * v + 0.7; });
        const inputs = [x, randomInput([c]), randomInput([c]), ...(withShift ? [randomInput([b, c])] : [])];
        // a dropout mask (0 or 1 / keep, keep 0.7): a constant made inside the function, so it gets no gradient
        const keep = masked ? Float32Array.from(x.values, (_, i) => (hashUniform(11, i) < 0.7 ? 1 / 0.7 : 0)) : null;
        const fn = (xt: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, shift?: tf.Tensor) => {
          const weights = (name: string) => (name.endsWith('weight') ? gamma : beta);
          const mask = keep ? tf.tensor(keep, xt.shape) : undefined;
          return groupNorm(weights, 'norm', xt as tf.Tensor4D, { silu, shift: shift as tf.Tensor2D | undefined, mask });
        };
        assertValuesAndGradients(`groupNorm [${b},${h},${w},${c}] groups ${groupCount(c)} shift ${withShift} silu ${silu} mask ${masked}`, fn, inputs, 2e-4);
      }
    }
    assert.ok(nativeCount(GROUP_NORM_KERNEL) > 0 && nativeCount(GROUP_NORM_GRAD_KERNEL) > 0, 'the fused kernels ran');
    tf.setBackend('cpu');
  });

  it('native 2x down- and upsampling match the composite ops on cpu, values and gradients', () => {
    tf.setBackend('onednn');
    assert.equal(hasFusedResample(), true);
    resetKernelCounters();
    // the last shape is large enough to run on every thread
    for (const shape of [[1, 2, 2, 1], [3, 4, 6, 5], [2, 8, 2, 3], [16, 14, 14, 32]]) {
      assertValuesAndGradients(`downsample2x [${shape}]`, (x) => downsample2x(x as tf.Tensor4D), [randomInput(shape)]);
      assertValuesAndGradients(`upsample2x [${shape}]`, (x) => upsample2x(x as tf.Tensor4D), [randomInput(shape)]);
    }
    assert.ok(nativeCount(DOWNSAMPLE_KERNEL) > 0 && nativeCount(UPSAMPLE_KERNEL) > 0, 'the native kernels ran');
    assert.throws(() => tf.tidy(() => tf.engine().runKernel(DOWNSAMPLE_KERNEL, { x: tf.zeros([1, 3, 4, 2]) }, { scale: 0.25 } as never)),
      /EctDownsample2x: height and width must be even, got 3x4/);
    tf.setBackend('cpu');
  });

  it('the fused scaled sum (a + b) * scale equals Add then Multiply exactly, values and gradients, with no tensor left over', () => {
    tf.setBackend('cpu');
    assert.equal(hasFusedScaledSum(), false, 'cpu composes the scaled sum from tfjs ops');
    tf.setBackend('onednn');
    assert.equal(hasFusedScaledSum(), true, 'onednn registers the fused kernel');
    resetKernelCounters();
    const plain = (a: tf.Tensor, b: tf.Tensor) => tf.mul(tf.add(a, b), Math.SQRT1_2);
    // the last shape is large enough to run on every thread
    for (const shape of [[1], [3, 5], [2, 4, 4, 3], [16, 14, 14, 32]]) {
      const inputs = [randomInput(shape), randomInput(shape)];
      const weights = randomInput(shape);
      // the fused kernel on onednn against the plain ops on cpu, and against the plain ops on onednn
      assertValuesAndGradients(`scaledSum [${shape}]`, (a, b) => scaledSum(a, b, Math.SQRT1_2), inputs, 0);
      const fused = runOn('onednn', gradientsOf((a, b) => scaledSum(a, b, Math.SQRT1_2), weights), inputs);
      const composed = runOn('onednn', gradientsOf(plain, weights), inputs);
      fused.forEach((g, k) => assert.deepEqual(g.values, composed[k].values, `scaledSum [${shape}]: gradient ${k} on onednn`));
      // one input used twice (its two gradients accumulate) and an input that also feeds another op
      assertValuesAndGradients(`scaledSum(x, x) [${shape}]`, (a) => scaledSum(a, a, 0.5), [inputs[0]], 0);
      assertValuesAndGradients(`scaledSum(a, b) * b [${shape}]`, (a, b) => tf.mul(scaledSum(a, b, 0.5), b), inputs, 0);
    }
    assert.ok(nativeCount(SCALED_SUM_KERNEL) > 0, 'the fused kernel ran');
    // inputs of different shapes broadcast through the plain ops
    assertValuesAndGradients('scaledSum broadcast', (a, b) => scaledSum(a, b, 0.25), [randomInput([2, 3, 4]), randomInput([4])], 0);
    tf.setBackend('onednn');
    const before = tf.memory().numTensors;
    const [a, b] = [tf.randomNormal([2, 4, 4, 3]), tf.randomNormal([2, 4, 4, 3])];
    for (let step = 0; step < 3; step++) tf.dispose(tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(scaledSum(x, y, 0.5)))([a, b]));
    tf.dispose([a, b]);
    assert.equal(tf.memory().numTensors, before, 'no tensor is left over by the fused forward and backward');
    assert.throws(() => tf.tidy(() => tf.engine().runKernel(SCALED_SUM_KERNEL, { a: tf.zeros([2, 3]), b: tf.zeros([3]) }, { scale: 1 } as never)),
      /EctScaledSum: inputs must have one shape/);
    tf.setBackend('cpu');
  });

  it('keeps reordered filters per weight for the forward and input-gradient passes, and never serves an updated weight stale', () => {
    const addon = onednnAddon();
    assert.ok(addon);
    const x = randomInput([2, 6, 6, 16]), dy = randomInput([2, 6, 6, 16]);
    const first = randomInput([3, 3, 16, 16]);
    // what the cpu backend gives for a filter w: the forward output and the input gradient
    const expect = (w: Input) => runOn('cpu', (xt, wt, dyt) => [tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 1, 'same'),
      tf.conv2dTranspose(dyt as tf.Tensor4D, wt as tf.Tensor4D, [2, 6, 6, 16], 1, 'same')], [x, w, dy]).map((o) => o.values);
    const firstExpected = expect(first);
    tf.setBackend('onednn');
    const kept = addon.cachedFilters();
    const initial = tf.tensor4d(first.values, [3, 3, 16, 16]);
    const weight = tf.variable(initial);
    initial.dispose();
    const [xt, dyt] = [tf.tensor4d(x.values, [2, 6, 6, 16]), tf.tensor4d(dy.values, [2, 6, 6, 16])];
    const check = (want: Float32Array[], what: string) => tf.tidy(() => {
      tf.setBackend('onednn');  // (expect ran on cpu)
      resetKernelCounters();
      for (let pass = 0; pass < 2; pass++) {
        const y = tf.conv2d(xt, weight as tf.Tensor4D, 1, 'same').dataSync();
        const dx = tf.conv2dTranspose(dyt, weight as tf.Tensor4D, [2, 6, 6, 16], 1, 'same').dataSync();
        [y, dx].forEach((got, k) => got.forEach((v, i) => assert.ok(Math.abs(v - want[k][i]) <= 1e-4 * Math.max(1, Math.abs(want[k][i])),
          `${what}, pass ${pass}, output ${k}[${i}]: ${v} on onednn, ${want[k][i]} on cpu`)));
      }
      assert.ok(nativeCount('Conv2D') === 2 && nativeCount('Conv2DBackpropInput') === 2, JSON.stringify(kernelCounters));
    });
    check(firstExpected, 'first weight');
    const afterFirst = addon.cachedFilters();
    assert.ok(afterFirst > kept && afterFirst <= kept + 2, `one copy per layout, kept across calls (${kept} -> ${afterFirst})`);
    // updates like the optimiser's: the new value comes from a kernel (a recycled output array) and is assigned
    for (let step = 1; step <= 3; step++) {
      tf.tidy(() => weight.assign(tf.add(tf.mul(weight, -0.5), 0.1 * step)));
      const values = Float32Array.from(first.values);
      for (let s = 1; s <= step; s++) values.forEach((v, i) => { values[i] = Math.fround(Math.fround(v * -0.5) + Math.fround(0.1 * s)); });
      const want = expect({ shape: first.shape, values });
      check(want, `after update ${step}`);
      assert.equal(addon.cachedFilters(), afterFirst, 'the old weight\'s copies are dropped with it');
    }
    tf.dispose([weight, xt, dyt]);
    assert.equal(addon.cachedFilters(), kept, 'disposing the weight drops its copies');
    tf.setBackend('cpu');
  });

  it('kept filter copies live within a UNet training step (two forward passes, gradients) and go with the updated weights; tensors stay flat', () => {
    const addon = onednnAddon();
    assert.ok(addon);
    tf.setBackend('onednn');
    const net = new UNet(TINY_NET, 3);
    const x = tf.randomNormal([2, TINY_NET.resolution, TINY_NET.resolution, TINY_NET.imageChannels], 0, 1, 'float32', 5) as tf.Tensor4D;
    const cNoise = tf.tensor1d([0.3, -0.2]);
    const counts: Array<[number, number]> = [];
    const kept = addon.cachedFilters();
    let during = 0;
    try {
      for (let step = 0; step < 3; step++) {
        tf.tidy(() => {
          const target = net.forward(x, cNoise);  // like the consistency target: same weights, outside the gradient
          const { grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(net.forward(x, cNoise), target))) as tf.Scalar, [...net.params.values()]);
          during = Math.max(during, addon.cachedFilters());
          for (const variable of net.params.values()) variable.assign(tf.sub(variable, tf.mul(grads[variable.name], 1e-3)));
        });
        counts.push([addon.cachedFilters(), tf.memory().numTensors]);
      }
    } finally {
      tf.dispose([x, cNoise]);
      net.dispose();
    }
    assert.ok(during > kept, 'the passes of a step share kept filter copies');
    // the updates replace every weight, so each step's copies go with the old weights
    assert.deepEqual(counts, [[kept, counts[0][1]], [kept, counts[0][1]], [kept, counts[0][1]]], `kept copies and tensors after each step`);
    tf.setBackend('cpu');
  });

  it('the native dropout mask equals the JavaScript loop bit for bit (seeds, rates, sizes; threaded sizes too)', () => {
    const masks = (backend: string, seed: number, rate: number, shape: number[]) => {
      tf.setBackend(backend);
      const dropout = new DropoutMasks(seed, rate);
      const values = dropout.mask('enc.block0.dropout', shape).dataSync() as Float32Array;
      dropout.dispose();
      return values;
    };
    resetKernelCounters();
    const cases: Array<[number, number, number[]]> = [[1, 0.1, [2, 3, 3, 5]], [0x7fffffff, 0.2, [4, 16, 16, 32]], [12345, 1 / 3, [64, 28, 28, 8]], [7, 0.5, [1]]];
    for (const [seed, rate, shape] of cases) {
      const cpu = masks('cpu', seed, rate, shape), native = masks('onednn', seed, rate, shape);
      assert.equal(native.length, cpu.length);
      const kept = cpu.filter((v) => v !== 0).length / cpu.length;
      assert.ok(cpu.length < 100 || Math.abs(kept - (1 - rate)) < 0.02, `kept ${kept} of the units at rate ${rate}`);
      for (let i = 0; i < cpu.length; i++) assert.ok(Object.is(native[i], cpu[i]), `seed ${seed}, rate ${rate}, unit ${i}: ${native[i]} native, ${cpu[i]} loop`);
    }
    assert.equal(nativeCount('EctDropoutMask'), cases.length, JSON.stringify(kernelCounters));
    tf.setBackend('cpu');
  });

  it('fused GroupNorm backward reading the forward\'s statistics gives the same bits as computing them again', () => {
    tf.setBackend('onednn');
    for (const [b, h, w, c] of [[3, 5, 5, 16], [2, 4, 4, 12], [9, 8, 8, 64]]) {
      tf.tidy(() => {
        const x = tf.add(tf.mul(tf.tensor(randomInput([b, h, w, c]).values, [b, h, w, c]), 3), 0.7);
        const inputs = { x, gamma: tf.tensor(randomInput([c]).values), beta: tf.tensor(randomInput([c]).values), shift: tf.tensor(randomInput([b, c]).values, [b, c]) };
        const attrs = { groups: groupCount(c), eps: 1e-6, silu: true };
        const [y, stats] = tf.engine().runKernel(GROUP_NORM_KERNEL, inputs, { ...attrs, withStats: true } as never) as tf.Tensor[];
        assert.deepEqual(stats.shape, [b, 2, c]);
        const plain = tf.engine().runKernel(GROUP_NORM_KERNEL, inputs, attrs as never) as tf.Tensor;
        assert.deepEqual([...y.dataSync()], [...plain.dataSync()], 'the forward output does not depend on withStats');
        const dy = tf.tensor(randomInput([b, h, w, c]).values, [b, h, w, c]);
        const again = tf.engine().runKernel(GROUP_NORM_GRAD_KERNEL, { dy, ...inputs }, attrs as never) as tf.Tensor[];
        const read = tf.engine().runKernel(GROUP_NORM_GRAD_KERNEL, { dy, ...inputs, stats }, attrs as never) as tf.Tensor[];
        again.forEach((g, i) => assert.deepEqual([...read[i].dataSync()], [...g.dataSync()], `gradient ${i} of [${b},${h},${w},${c}]`));
        assert.throws(() => tf.engine().runKernel(GROUP_NORM_GRAD_KERNEL, { dy, ...inputs, stats: tf.zeros([b, c]) }, attrs as never),
          new RegExp(`EctGroupNormGrad: stats must be \\[${b}, 2, ${c}\\], got \\[${b},${c}\\]`));
      });
    }
    tf.setBackend('cpu');
  });

  it('fused GroupNorm names a wrong input shape', () => {
    tf.setBackend('onednn');
    assert.throws(() => tf.tidy(() => tf.engine().runKernel(GROUP_NORM_KERNEL,
      { x: tf.zeros([2, 3, 3, 8]), gamma: tf.ones([4]), beta: tf.zeros([8]) }, { groups: 2, eps: 1e-6, silu: false } as never)),
    /EctGroupNorm: gamma and beta must be \[8\]/);
    assert.throws(() => tf.tidy(() => tf.engine().runKernel(GROUP_NORM_KERNEL,
      { x: tf.zeros([2, 3, 3, 8]), gamma: tf.ones([8]), beta: tf.zeros([8]) }, { groups: 3, eps: 1e-6, silu: false } as never)),
    /channels must split into equal groups/);
    assert.throws(() => tf.tidy(() => tf.engine().runKernel(GROUP_NORM_KERNEL,
      { x: tf.zeros([2, 3, 3, 8]), gamma: tf.ones([8]), beta: tf.zeros([8]), mask: tf.ones([2, 3, 8]) }, { groups: 2, eps: 1e-6, silu: false } as never)),
    /EctGroupNorm: mask must be shaped like x \[2,3,3,8\], got \[2,3,8\]/);
    tf.setBackend('cpu');
  });

  it('native Adam / RAdam and EMA updates (every parameter in one call) equal the JavaScript loops on cpu, NaN and infinite gradients included', () => {
    // one parameter above the threading threshold and cut into chunks with a short tail, two small ones
    const shapes: Record<string, number[]> = { w: [300, 257], b: [7], k: [3, 5, 1, 2] };
    const starts = Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, randomInput(shape)]));
    const gradients = Array.from({ length: 8 }, (_, t) => Object.fromEntries(Object.entries(shapes).map(([name, shape]) => {
      const g = randomInput(shape);
      g.values.forEach((v, i) => { g.values[i] = v * (1 + t); });
      g.values[t % g.values.length] = NaN;
      g.values[g.values.length - 1 - (t % g.values.length)] = t % 2 ? Infinity : -Infinity;
      return [name, g];
    })));
    const base = { beta1: 0.9, beta2: 0.999, eps: 1e-8, rampupKimg: 0 };
    const configs: OptimizerConfig[] = [{ ...base, name: 'adam', lr: 1e-3 }, { ...base, name: 'radam', lr: 1e-4 }];
    for (const cfg of configs) {
      const run = (backend: string) => {
        tf.setBackend(backend);
        const params = new Map(Object.entries(starts).map(([name, s]) => [name, tf.variable(tf.tensor(s.values, s.shape))]));
        const optimizer = createOptimizer(cfg, params, 'fused');
        const ema = new Ema(params, { beta: 0.95 }, undefined, 'fused');
        gradients.forEach((step, t) => {
          // at step 3 'b' has no gradient: it keeps its value and moments
          const names = Object.keys(shapes).filter((name) => !(t === 3 && name === 'b'));
          tf.tidy(() => optimizer.apply(new Map(names.map((name) => [name, tf.tensor(step[name].values, step[name].shape)])), 0));
          ema.update(0, 1);
        });
        const out = new Map([...params].flatMap(([name, p]) => [
          [`param ${name}`, p.dataSync().slice() as Float32Array], [`average ${name}`, ema.weights.get(name)!.dataSync().slice() as Float32Array]]));
        optimizer.dispose();
        ema.dispose();
        for (const p of params.values()) p.dispose();
        return out;
      };
      resetKernelCounters();
      const expected = run('cpu');
      const actual = run('onednn');
      assert.equal(nativeCount(MOMENT_UPDATE_KERNEL), gradients.length, `${cfg.name}: the native update ran once per step`);
      assert.equal(nativeCount(EMA_UPDATE_KERNEL), gradients.length, 'the native EMA ran once per step');
      for (const [key, values] of expected) {
        let worst = 0;
        values.forEach((e, i) => { worst = Math.max(worst, Math.abs(actual.get(key)![i] - e) / Math.max(1e-3, Math.abs(e))); });
        assert.ok(worst < 1e-6, `${cfg.name} ${key}: native and JavaScript differ by ${worst} (relative)`);
        assert.ok(values.every(Number.isFinite), `${cfg.name} ${key}: finite`);
      }
    }
    tf.setBackend('cpu');
  });

  it('the native updates name a missing or misshapen input', () => {
    tf.setBackend('onednn');
    const attrs = { beta1: 0.9, beta2: 0.999, eps: 1e-8, momentumScale: 1, sqrtVScale: 1, adaptive: true, infReplacement: 1, count: 2 };
    const [a, b] = [tf.ones([3]), tf.ones([4])];
    assert.throws(() => tf.engine().runKernel(MOMENT_UPDATE_KERNEL, { param0: a, grad0: a, m0: a, v0: a }, attrs as never),
      /EctMomentUpdate: missing input param1 of 2/);
    assert.throws(() => tf.engine().runKernel(EMA_UPDATE_KERNEL, { average0: a, param0: b }, { beta: 0.9, count: 1 } as never),
      /EctEmaUpdate: param0 has shape \[4\], average0 has \[3\]/);
    tf.dispose([a, b]);
    tf.setBackend('cpu');
  });

  it('the whole UNet (attention, resampling, skips) gives cpu\'s output and every parameter gradient', () => {
    const x = randomInput([3, TINY_NET.resolution, TINY_NET.resolution, TINY_NET.imageChannels]);
    const cNoise = randomInput([3]);
    const upstream = randomInput(x.shape);
    const run = (backend: string): { value: number; byName: Map<string, Float32Array> } => {
      tf.setBackend(backend);
      const net = new UNet(TINY_NET, 7);
      const byName = new Map<string, Float32Array>();
      let value = NaN;
      try {
        tf.tidy(() => {
          const out = tf.variableGrads(() => tf.sum(tf.mul(
            net.forward(tf.tensor4d(x.values, x.shape as [number, number, number, number]), tf.tensor1d(cNoise.values)),
            tf.tensor(upstream.values, upstream.shape))) as tf.Scalar, [...net.params.values()]);
          value = out.value.dataSync()[0];
          for (const [name, variable] of net.params) byName.set(name, out.grads[variable.name].dataSync() as Float32Array);
        });
      } finally {
        net.dispose();
      }
      return { value, byName };
    };
    const expected = run('cpu');
    const actual = run('onednn');
    assert.ok(Math.abs(actual.value - expected.value) <= 1e-4 * Math.max(1, Math.abs(expected.value)), `output ${actual.value} vs ${expected.value}`);
    for (const [name, want] of expected.byName) {
      const got = actual.byName.get(name) as Float32Array;
      const scale = Math.max(1e-3, ...Array.from(want, Math.abs));
      want.forEach((w: number, i: number) => assert.ok(Math.abs(got[i] - w) <= 2e-3 * scale, `${name}[${i}]: ${got[i]} on onednn, ${w} on cpu`));
    }
    tf.setBackend('cpu');
    // the 3x3 convolutions run as one kernel forward and one for every gradient (lib/nn/fused.ts fusedConv2dSame)
    assert.ok(nativeCount(CONV_SAME_KERNEL) > 0 && nativeCount(CONV_SAME_GRAD_KERNEL) > 0 && nativeCount('_FusedMatMul') > 0
      && nativeCount('BatchMatMul') > 0 && nativeCount(GROUP_NORM_GRAD_KERNEL) > 0 && nativeCount(SCALED_SUM_KERNEL) > 0, JSON.stringify(kernelCounters.native));
  });

  it('falls back to the cpu kernels where it has no native path (int32)', () => {
    const ints = tf.tidy(() => { tf.setBackend('onednn'); return tf.add(tf.tensor([1, 2, 3], [3], 'int32'), tf.tensor([4], [1], 'int32')).arraySync(); });
    assert.deepEqual(ints, [5, 6, 7]);
    assert.equal(kernelCounters.fallback.Add, 1);
    tf.setBackend('cpu');
  });
});
