/** Tests of the weight EMA: fixed and half-life decays against hand values, updates, initial weights and memory. */
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Ema, emaBeta } from '../lib/train/ema';

function assertClose(actual: ArrayLike<number>, expected: number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, what);
  expected.forEach((e, i) => assert.ok(Math.abs(actual[i] - e) <= tolerance, `${what}[${i}]: ${actual[i]} vs ${e}`));
}

describe('ema', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('uses a fixed beta regardless of images seen and batch', () => {
    assert.equal(emaBeta({ beta: 0.9999 }, 0, 128), 0.9999);
    assert.equal(emaBeta({ beta: 0.9993 }, 1e6, 7), 0.9993);
  });

  it('computes EDM half-life betas by hand', () => {
    // no ramp: half-life 500 kimg, batch 512 -> 0.5^(512 / 500000)
    assert.ok(Math.abs(emaBeta({ halfLifeKimg: 500 }, 0, 512) - 0.5 ** (512 / 500_000)) < 1e-15);
    // ramp ratio 0.05 after 10,000 images: half-life = min(500,000, 500) = 500 images -> beta = 0.5^(512/500)
    assert.ok(Math.abs(emaBeta({ halfLifeKimg: 500, rampupRatio: 0.05 }, 10_000, 512) - 0.5 ** (512 / 500)) < 1e-15);
    // a batch equal to the half-life halves the old average's weight
    assert.ok(Math.abs(emaBeta({ halfLifeKimg: 1, rampupRatio: 0.5 }, 1e6, 1000) - 0.5) < 1e-15);
    // nothing seen yet: half-life 0 -> beta 0, the average copies the weights
    assert.equal(emaBeta({ halfLifeKimg: 500, rampupRatio: 0.05 }, 0, 512), 0);
  });

  for (const kernel of ['tensor', 'fused'] as const) {
    it(`updates ema = beta * ema + (1 - beta) * param, starting from a copy of the parameters (${kernel} kernel)`, () => {
      const param = tf.variable(tf.tensor1d([1, -2, 4]));
      const params = new Map([['w', param]]);
      const ema = new Ema(params, { beta: 0.75 }, undefined, kernel);
      assertClose(ema.weights.get('w')!.dataSync(), [1, -2, 4], 0, 'initial ema');
      param.assign(tf.tensor1d([5, 2, 0]));
      ema.update(0, 1);
      // 0.75 * [1, -2, 4] + 0.25 * [5, 2, 0] = [2, -1, 3]
      assertClose(ema.weights.get('w')!.dataSync(), [2, -1, 3], 1e-6, 'after one update');
      ema.update(0, 1);
      // 0.75 * [2, -1, 3] + 0.25 * [5, 2, 0] = [2.75, -0.25, 2.25]
      assertClose(ema.weights.get('w')!.dataSync(), [2.75, -0.25, 2.25], 1e-6, 'after two updates');
      assertClose(param.dataSync(), [5, 2, 0], 0, 'the parameter is unchanged');
      ema.dispose();
      param.dispose();
    });
  }

  it('uses the half-life beta in update: first step copies the weights when rampupRatio is set', () => {
    const param = tf.variable(tf.tensor1d([3, 3]));
    const initial = tf.tensor1d([0, 1]);
    const ema = new Ema(new Map([['w', param]]), { halfLifeKimg: 500, rampupRatio: 0.05 }, new Map([['w', initial]]));
    initial.dispose();
    ema.update(0, 64);  // beta = 0
    assertClose(ema.weights.get('w')!.dataSync(), [3, 3], 0, 'copied at zero images');
    param.assign(tf.tensor1d([1, 5]));
    ema.update(1280, 64);  // half-life 64 images -> beta 0.5
    assertClose(ema.weights.get('w')!.dataSync(), [2, 4], 1e-6, 'half-way at one half-life');
    ema.dispose();
    param.dispose();
  });

  it('starts from given initial weights and can overwrite them with setWeights', () => {
    const param = tf.variable(tf.tensor2d([[1, 2], [3, 4]]));
    const initial = new Map([['w', tf.tensor2d([[0, 0], [0, 8]])]]);
    const ema = new Ema(new Map([['w', param]]), { beta: 0.5 }, initial);
    initial.get('w')!.dispose();  // the EMA holds its own copy
    assertClose(ema.weights.get('w')!.dataSync(), [0, 0, 0, 8], 0, 'initial');
    ema.update(0, 1);
    assertClose(ema.weights.get('w')!.dataSync(), [0.5, 1, 1.5, 6], 1e-6, 'after update');
    const restored = tf.tensor2d([[9, 9], [9, 9]]);
    ema.setWeights(new Map([['w', restored]]));
    restored.dispose();
    assertClose(ema.weights.get('w')!.dataSync(), [9, 9, 9, 9], 0, 'after setWeights');
    ema.dispose();
    param.dispose();
  });

  it('rejects bad configs and mismatched weights with clear errors', () => {
    const param = tf.variable(tf.zeros([2]));
    const params = new Map([['w', param]]);
    assert.throws(() => new Ema(params, {}), /exactly one of beta, halfLifeKimg and sigmaRel/);
    assert.throws(() => new Ema(params, { beta: 0.9, halfLifeKimg: 500 }), /exactly one of beta, halfLifeKimg and sigmaRel/);
    assert.throws(() => new Ema(params, { beta: 1.5 }), /beta must be in \[0, 1\]/);
    const wrong = tf.zeros([3]);
    assert.throws(() => new Ema(params, { beta: 0.9 }, new Map([['w', wrong], ['x', wrong]])), /w has shape \[3\].*unexpected x/);
    const ema = new Ema(params, { beta: 0.9 });
    assert.throws(() => ema.setWeights(new Map()), /missing w/);
    wrong.dispose();
    ema.dispose();
    param.dispose();
  });

  it('keeps the tensor count flat over many updates and frees its weights on dispose', () => {
    const before = tf.memory().numTensors;
    const params = new Map([['a', tf.tidy(() => tf.variable(tf.randomNormal([8, 4])))], ['b', tf.tidy(() => tf.variable(tf.randomNormal([4])))]]);
    const ema = new Ema(params, { halfLifeKimg: 0.5, rampupRatio: 0.05 });
    ema.update(0, 16);
    const afterFirst = tf.memory().numTensors;
    for (let i = 1; i <= 50; i++) ema.update(i * 16, 16);
    assert.equal(tf.memory().numTensors, afterFirst);
    ema.dispose();
    const tensorKernelEma = new Ema(params, { beta: 0.9 }, undefined, 'tensor');
    const afterCreate = tf.memory().numTensors;
    for (let i = 1; i <= 20; i++) tensorKernelEma.update(0, 16);
    assert.equal(tf.memory().numTensors, afterCreate);
    tensorKernelEma.dispose();
    for (const p of params.values()) p.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});
