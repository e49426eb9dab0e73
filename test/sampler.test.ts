/**
 * Samplers against an analytic denoiser (Gaussian data has a closed-form probability-flow ODE), the sampling
 * noise (a function of seed and image index only, never unseeded), and denoise against the scalar formulas.
 */
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import {
  batchLabels, generateImages, heunTimeSteps, perClassLabels, sampleBatches, sampleConsistency, sampleHeun, sampleNoise, samplerModelFor, type Denoiser,
} from '../lib/sample';
import { DEFAULT_EDM } from '../lib/config/defaults';
import { cIn, cNoise, cOut, cSkip, denoise } from '../lib/edm/precond';
import { UNet } from '../lib/nn/unet';
import { drawSeed } from '../lib/random';
import { TINY_NET, tinyRunConfig, useTestBackend } from './helpers';

describe('samplers', () => {
  before(useTestBackend);
  const s = 0.5;  // data ~ N(0, s^2): ideal denoiser D(x, sigma) = x s^2 / (s^2 + sigma^2)

  it('Heun (18 steps = 35 evaluations) converges to the exact ODE solution x(0) = x(T) s / sqrt(s^2 + T^2)', () => {
    const T = DEFAULT_EDM.sigmaMax;
    const z = tf.randomNormal([4, 2, 2, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    const exact = tf.mul(z, T * s / Math.sqrt(s * s + T * T));
    const relativeError = (heunSteps: number) => {
      let calls = 0;
      const ideal: Denoiser = (x, sigma) => { calls++; return tf.mul(x, s * s / (s * s + sigma * sigma)) as tf.Tensor4D; };
      const out = sampleHeun(ideal, z, heunTimeSteps({ ...DEFAULT_EDM, heunSteps }));
      const err = tf.max(tf.abs(tf.sub(out, exact))).dataSync()[0] / tf.max(tf.abs(exact)).dataSync()[0];
      out.dispose();
      return { err, calls };
    };
    const coarse = relativeError(18);
    const fine = relativeError(64);
    assert.equal(coarse.calls, 35);
    assert.equal(fine.calls, 127);
    // second order: 3.6x more steps cut the error more than 10x (5.5% -> 0.37% in float64)
    assert.ok(coarse.err < 0.06, `18 steps: ${coarse.err}`);
    assert.ok(fine.err < 0.005 && fine.err < coarse.err / 10, `64 steps: ${fine.err}`);
    tf.dispose([z, exact]);
  });

  it('consistency sampling calls the model once per time and adds noise of the next time', () => {
    const seen: number[] = [];
    const zero: Denoiser = (x, sigma) => { seen.push(sigma); return tf.zerosLike(x) as tf.Tensor4D; };
    const z = tf.ones([2, 4, 4, 1]) as tf.Tensor4D;
    const noise = (step: number) => tf.randomNormal([2, 4, 4, 1], 0, 1, 'float32', step + 1) as tf.Tensor4D;
    const one = sampleConsistency(zero, z, [80], noise);
    assert.deepEqual(seen, [80]);
    seen.length = 0;
    // with a model that ignores its input after the first step, the output is D(x, 0.821) = 0 again
    const two = sampleConsistency((x, sigma) => { seen.push(sigma); return (sigma === 80 ? tf.zerosLike(x) : tf.mul(x, 1)) as tf.Tensor4D; }, z, [80, 0.821], noise);
    assert.deepEqual(seen, [80, 0.821]);
    // two-step output = 0 + 0.821 eps: its standard deviation is about 0.821
    const std = Math.sqrt(tf.moments(two).variance.dataSync()[0]);
    assert.ok(Math.abs(std - 0.821) < 0.25, `std ${std}`);
    tf.dispose([z, one, two]);
  });
});

describe('sampling noise and preconditioning', () => {
  before(useTestBackend);
  const values = (t: tf.Tensor) => { const v = Array.from(t.dataSync()); t.dispose(); return v; };

  it('draws image i\'s noise from (seed, i, step) only: not the batch, not where a batch starts, and seed 0 is a seed', () => {
    const shape: [number, number, number] = [4, 4, 1];
    const whole = values(sampleNoise(0, 0, 5, shape)(0));
    const tail = values(sampleNoise(0, 2, 3, shape)(0));
    assert.deepEqual(tail, whole.slice(2 * 16), 'images 2..4 are the same drawn alone');
    assert.deepEqual(values(sampleNoise(0, 0, 5, shape)(0)), whole, 'seed 0 draws the same noise every time');
    assert.notDeepEqual(values(sampleNoise(1, 0, 5, shape)(0)), whole, 'another seed, other noise');
    assert.notDeepEqual(values(sampleNoise(0, 0, 5, shape)(1)), whole, 'each sampler step has its own noise');
    // never a seed of 0 (tfjs reads 0 as "unseeded")
    for (let i = 0; i < 2000; i++) assert.ok(drawSeed(0, i, 'sample-noise-0') > 0);
  });

  it('generates the same images for a seed whatever the batch size and the first image', () => {
    const net = new UNet(TINY_NET, 4);
    for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.3, 'float32', 6));
    const model = samplerModelFor(net, new Map(net.params), tinyRunConfig('tune'));
    const inOne = values(generateImages(model, 2, 6, { seed: 0, batch: 6 }));
    const again = values(generateImages(model, 2, 6, { seed: 0, batch: 6 }));
    assert.deepEqual(again, inOne);
    const inTwos = values(generateImages(model, 2, 6, { seed: 0, batch: 2 }));
    const close = inTwos.every((v, i) => Math.abs(v - inOne[i]) < 1e-4);
    assert.ok(close, 'batches of 2 give the images of one batch of 6 (up to the backend\'s rounding)');
    const last = values(generateImages(model, 2, 2, { seed: 0, start: 4 }));
    assert.ok(last.every((v, i) => Math.abs(v - inOne[4 * 64 + i]) < 1e-4), 'images 4 and 5 drawn alone');
    net.dispose();
  });

  it('samples a conditional model with the classes asked for, or with classes drawn per image index from the seed', () => {
    const net = new UNet({ ...TINY_NET, labelDim: 3 }, 4);
    for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.3, 'float32', 7));
    const model = samplerModelFor(net, new Map(net.params), tinyRunConfig('tune'));
    const classesOf = (opts: { labels?: number | number[]; batch?: number; start?: number; n?: number }) =>
      [...sampleBatches(model, 1, opts.n ?? 6, { seed: 0, ...opts })].flatMap((b) => { b.images.dispose(); return Array.from(b.labels!); });
    // not asked: image i's class is a function of (seed, i) only, whatever the batches and the first image
    const drawn = classesOf({});
    assert.deepEqual(classesOf({ batch: 4 }), drawn);
    assert.deepEqual(classesOf({ start: 2, n: 4 }), drawn.slice(2));
    assert.ok(new Set(classesOf({ n: 60 })).size === 3, 'uniform over the classes: all three appear in 60 images');
    assert.deepEqual(classesOf({ labels: 2 }), [2, 2, 2, 2, 2, 2]);
    assert.deepEqual(classesOf({ labels: [0, 1, 2, 2, 1, 0], batch: 4 }), [0, 1, 2, 2, 1, 0]);
    assert.deepEqual(Array.from(perClassLabels(3, 2)), [0, 0, 1, 1, 2, 2]);
    // the class changes the images; the drawn classes are those generateImages uses by default
    const byClass = [0, 1].map((k) => values(generateImages(model, 1, 2, { seed: 0, labels: k })));
    assert.notDeepEqual(byClass[0], byClass[1]);
    assert.deepEqual(values(generateImages(model, 1, 6, { seed: 0 })), values(generateImages(model, 1, 6, { seed: 0, labels: drawn })));
    assert.throws(() => generateImages(model, 1, 2, { labels: 3 }), /class 3 is not a class of this model \(0\.\.2\)/);
    assert.throws(() => generateImages(model, 1, 2, { labels: [0] }), /1 class labels for 2 images/);
    const plain = new UNet(TINY_NET, 4);
    assert.throws(() => generateImages(samplerModelFor(plain, new Map(plain.params), tinyRunConfig('tune')), 1, 2, { labels: 0 }),
      /class labels asked for, but the model is unconditional/);
    assert.equal(batchLabels(samplerModelFor(plain, new Map(plain.params), tinyRunConfig('tune')), undefined, 0, 0, 2, 0), undefined);
    plain.dispose();
    net.dispose();
  });

  it('denoise is c_skip x + c_out F(c_in x, c_noise) with the scalar coefficient functions, per example', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0 }, 2);
    for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.3, 'float32', 8));
    const x = tf.randomNormal([3, 8, 8, 1], 0, 1, 'float32', 9) as tf.Tensor4D;
    const sigmas = [0.02, 0.821, 80];
    for (const mode of ['train', 'eval'] as const) {
      const got = values(denoise(net, x, sigmas, { edm: DEFAULT_EDM, mode }));
      const expected = tf.tidy(() => tf.concat(sigmas.map((s, i) => {
        const xi = tf.slice(x, [i, 0, 0, 0], [1, 8, 8, 1]) as tf.Tensor4D;
        const raw = net.forward(tf.mul(xi, cIn(s, 0.5)) as tf.Tensor4D, tf.tensor1d([cNoise(s)]));
        return tf.add(tf.mul(xi, cSkip(s, 0.5, mode, 0.003)), tf.mul(raw, cOut(s, 0.5, mode, 0.003)));
      })));
      const want = values(expected);
      const worst = Math.max(...got.map((v, i) => Math.abs(v - want[i]) / Math.max(1, Math.abs(want[i]))));
      assert.ok(worst < 1e-5, `${mode}: relative difference ${worst}`);
    }
    x.dispose();
    net.dispose();
  });
});
