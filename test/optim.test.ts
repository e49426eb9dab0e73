/** Tests of the Adam and RAdam optimisers against plain-number reference steps, the lr ramp and gradient sanitising. */
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { OptimizerConfig } from '../lib/config/types';
import { parseOverride, resolveRunConfig } from '../lib/config/resolve';
import { UpdateKernel, createOptimizer, radamRho, rampedLearningRate, sanitizeGradient } from '../lib/train/optim';

const ADAM: OptimizerConfig = { name: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, rampupKimg: 0 };
const RADAM: OptimizerConfig = { name: 'radam', lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, rampupKimg: 0 };

/** A deterministic gradient for step t (1-based) of a parameter with `size` entries, with varied signs and scales. */
function gradientAt(step: number, size: number): number[] {
  return Array.from({ length: size }, (_, i) => 3 * Math.sin(1.7 * step + i) + 0.2 * (i - 1));
}

/** Reference Adam/RAdam in plain JS numbers, written from the formulas in docs/method.md §6.5 and torch's documentation. */
function referenceSteps(cfg: OptimizerConfig, start: number[], steps: number): number[][] {
  const { lr, beta1, beta2, eps } = cfg;
  let theta = [...start];
  const m = start.map(() => 0);
  const v = start.map(() => 0);
  const history: number[][] = [];
  for (let t = 1; t <= steps; t++) {
    const g = gradientAt(t, start.length);
    theta = theta.map((value, i) => {
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const mHat = m[i] / (1 - beta1 ** t);
      if (cfg.name === 'adam') {
        const vHat = v[i] / (1 - beta2 ** t);
        return value - (lr * mHat) / (Math.sqrt(vHat) + eps);
      }
      const rhoInf = 2 / (1 - beta2) - 1;
      const rhoT = rhoInf - (2 * t * beta2 ** t) / (1 - beta2 ** t);
      if (rhoT > 5) {
        const r = Math.sqrt(((rhoT - 4) * (rhoT - 2) * rhoInf) / ((rhoInf - 4) * (rhoInf - 2) * rhoT));
        const adaptiveLr = Math.sqrt(1 - beta2 ** t) / (Math.sqrt(v[i]) + eps);
        return value - lr * mHat * r * adaptiveLr;
      }
      return value - lr * mHat;
    });
    history.push([...theta]);
  }
  return history;
}

/** Runs our optimiser for `steps` steps on the same gradients and returns the parameter after each step. */
function ourSteps(cfg: OptimizerConfig, start: number[], steps: number, kernel: UpdateKernel): number[][] {
  const param = tf.variable(tf.tensor1d(start));
  const params = new Map([['layer.weight', param]]);
  const optimizer = createOptimizer(cfg, params, kernel);
  const history: number[][] = [];
  for (let t = 1; t <= steps; t++) {
    const grad = tf.tensor1d(gradientAt(t, start.length));
    optimizer.apply(new Map([['layer.weight', grad]]), 0);
    grad.dispose();
    history.push(Array.from(param.dataSync()));
  }
  optimizer.dispose();
  param.dispose();
  return history;
}

function assertClose(actual: number[], expected: number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, what);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]) <= tolerance, `${what}[${i}]: ${a} vs ${expected[i]}`));
}

describe('optimisers', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('rho_t of RAdam with beta2 = 0.999 first exceeds 5 at step 6', () => {
    assert.equal(radamRho(0.999, 1).rhoT, 1);  // rho_1 = 1 for any beta2
    assert.ok(radamRho(0.999, 5).rhoT <= 5);
    assert.ok(radamRho(0.999, 6).rhoT > 5);
    assert.ok(Math.abs(radamRho(0.999, 6).rhoInf - 1999) < 1e-9);
  });

  for (const kernel of ['tensor', 'fused'] as const) {
    it(`Adam matches the plain-number reference for 10 steps (${kernel} kernel)`, () => {
      const start = [0.5, -1.0, 2.0, 0.0];
      const ours = ourSteps(ADAM, start, 10, kernel);
      const reference = referenceSteps(ADAM, start, 10);
      ours.forEach((row, t) => assertClose(row, reference[t], 2e-6, `adam step ${t + 1}`));
      // the first Adam step moves every entry by about lr against the gradient's sign
      const g1 = gradientAt(1, start.length);
      assertClose(ours[0].map((x, i) => start[i] - x), g1.map((g) => ADAM.lr * Math.sign(g)), 1e-7, 'adam step 1 size');
    });

    it(`RAdam matches the reference: momentum-only up to step 5, rectified from step 6 (${kernel} kernel)`, () => {
      const start = [0.5, -1.0, 2.0, 0.0];
      const ours = ourSteps(RADAM, start, 9, kernel);
      const reference = referenceSteps(RADAM, start, 9);
      ours.forEach((row, t) => assertClose(row, reference[t], 1e-6, `radam step ${t + 1}`));
      // step 1 is momentum-only: theta_1 = theta_0 - lr * g_1 (m_hat = g_1)
      const g1 = gradientAt(1, start.length);
      assertClose(ours[0], start.map((x, i) => x - RADAM.lr * g1[i]), 1e-7, 'radam step 1');
      // Hand check of the switch: step 5 (rho_5 = 4.996) is momentum-only, theta_4 - theta_5 = lr * m_hat_5;
      // step 6 (rho_6 = 5.994) is rectified with r_6 ~ 0.026, far smaller than a momentum-only step.
      const biasCorrectedMomentum = (t: number): number[] => {
        let m = start.map(() => 0);
        for (let s = 1; s <= t; s++) m = m.map((value, i) => RADAM.beta1 * value + (1 - RADAM.beta1) * gradientAt(s, start.length)[i]);
        return m.map((value) => value / (1 - RADAM.beta1 ** t));
      };
      const step5 = ours[3].map((x, i) => x - ours[4][i]);
      assertClose(step5, biasCorrectedMomentum(5).map((m) => RADAM.lr * m), 1e-7, 'radam step 5 is momentum-only');
      const step6 = ours[4].map((x, i) => x - ours[5][i]);
      const momentumOnly6 = biasCorrectedMomentum(6).map((m) => RADAM.lr * m);
      step6.forEach((d, i) => assert.ok(Math.abs(d) < 0.1 * Math.abs(momentumOnly6[i]), `radam step 6 is rectified: ${d} vs ${momentumOnly6[i]}`));
    });
  }

  it('ramps the learning rate linearly over rampupKimg', () => {
    const cfg = { ...ADAM, rampupKimg: 10 };
    const optimizer = createOptimizer(cfg, new Map());
    assert.equal(optimizer.learningRate(0), 0);
    assert.ok(Math.abs(optimizer.learningRate(2500) - 0.25e-3) < 1e-15);
    assert.equal(optimizer.learningRate(10_000), 1e-3);
    assert.equal(optimizer.learningRate(50_000), 1e-3);
    assert.equal(rampedLearningRate(1e-4, 0, 0), 1e-4, 'rampupKimg 0 means no ramp');
  });

  it('cools the learning rate down linearly to zero over the run\'s last cooldownFraction, on top of the decay', () => {
    const run = 160_000;
    const optimizer = createOptimizer({ ...RADAM, lr: 1e-3, decayKimg: 20, cooldownFraction: 0.2 }, new Map(), 'auto', run);
    const decayed = (images: number) => 1e-3 / Math.sqrt(images / 20_000);
    assert.ok(Math.abs(optimizer.learningRate(80_000) - decayed(80_000)) < 1e-15, 'before the cool-down: the decay alone');
    assert.ok(Math.abs(optimizer.learningRate(128_000) - decayed(128_000)) < 1e-15, 'the cool-down starts at 80% of the run');
    assert.ok(Math.abs(optimizer.learningRate(144_000) - 0.5 * decayed(144_000)) < 1e-15, 'half-way through it: half');
    assert.ok(Math.abs(optimizer.learningRate(run - 64) - (64 / 32_000) * decayed(run - 64)) < 1e-15, 'the last step still moves');
    assert.equal(optimizer.learningRate(run), 0);
    assert.throws(() => createOptimizer({ ...RADAM, cooldownFraction: 0.2 }, new Map()), /a cool-down needs the run's planned length/);
  });

  it('decays the learning rate as 1/sqrt(kimg / decayKimg) past decayKimg (EDM2), after any ramp-up', () => {
    const optimizer = createOptimizer({ ...RADAM, lr: 1e-3, decayKimg: 64 }, new Map());
    assert.equal(optimizer.learningRate(32_000), 1e-3, 'constant before decayKimg');
    assert.equal(optimizer.learningRate(64_000), 1e-3);
    assert.ok(Math.abs(optimizer.learningRate(256_000) - 0.5e-3) < 1e-15, 'half at 4x the images');
    assert.ok(Math.abs(rampedLearningRate(1e-3, 10, 5_000, 64) - 0.5e-3) < 1e-15, 'the ramp still applies');
    assert.equal(rampedLearningRate(1e-3, 0, 1e9, 0), 1e-3, 'decayKimg 0: constant');
    assert.equal(resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride('optimizer.decayKimg=64')]).optimizer.decayKimg, 64);
    assert.throws(() => resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride('optimizer.decayKimg=-1')]), /optimizer\.decayKimg must be a number >= 0/);
  });

  it('applies the ramped learning rate in the update', () => {
    const param = tf.variable(tf.tensor1d([1, 1]));
    const optimizer = createOptimizer({ ...RADAM, rampupKimg: 1 }, new Map([['w', param]]));
    const grad = tf.tensor1d([2, -4]);
    optimizer.apply(new Map([['w', grad]]), 250);  // lr = 1e-4 * 0.25, momentum-only first step
    assertClose(Array.from(param.dataSync()), [1 - 0.25e-4 * 2, 1 + 0.25e-4 * 4], 1e-7, 'ramped step');
    grad.dispose();
    optimizer.dispose();
    param.dispose();
  });

  it('sanitises NaN to 0 and +-infinity to +-1e5, leaving finite values alone (both kernels)', () => {
    const g = tf.tensor1d([NaN, Infinity, -Infinity, 3.5, -2e6, -0]);
    for (const kernel of ['tensor', 'fused'] as const) {
      const clean = sanitizeGradient(g, kernel);
      assert.deepEqual(Array.from(clean.dataSync()), [0, 1e5, -1e5, 3.5, -2e6, -0], kernel);
      clean.dispose();
    }
    assert.ok(Number.isNaN(g.dataSync()[0]), 'the input is left unchanged');
    g.dispose();
  });

  it('the fused and tensor kernels agree over many steps on a larger parameter', () => {
    for (const cfg of [ADAM, RADAM]) {
      const start = tf.randomNormal([64, 33], 0, 1, 'float32', 7);
      const a = tf.variable(start.clone());
      const b = tf.variable(start.clone());
      start.dispose();
      const optA = createOptimizer(cfg, new Map([['w', a]]), 'tensor');
      const optB = createOptimizer(cfg, new Map([['w', b]]), 'fused');
      for (let t = 1; t <= 20; t++) {
        tf.tidy(() => {
          const grads = new Map([['w', tf.randomNormal([64, 33], 0, 1 + t, 'float32', t)]]);
          optA.apply(grads, 0);
          optB.apply(grads, 0);
        });
      }
      const difference = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
      const moved = tf.tidy(() => tf.max(tf.abs(tf.sub(a, tf.randomNormal([64, 33], 0, 1, 'float32', 7)))).dataSync()[0]);
      assert.ok(moved > 10 * cfg.lr, `${cfg.name}: parameters moved (${moved})`);
      assert.ok(difference < 1e-6, `${cfg.name}: kernels differ by ${difference}`);
      [optA, optB, a, b].forEach((x) => x.dispose());
    }
  });

  it('sanitises gradients inside apply, so a NaN gradient leaves the parameter finite', () => {
    const param = tf.variable(tf.tensor1d([1, 2]));
    const optimizer = createOptimizer(RADAM, new Map([['w', param]]));
    const grad = tf.tensor1d([NaN, Infinity]);
    optimizer.apply(new Map([['w', grad]]), 0);
    // momentum-only first step: theta - lr * sanitised g
    assertClose(Array.from(param.dataSync()), [1, 2 - 1e-4 * 1e5], 1e-6, 'after NaN/inf gradient');
    grad.dispose();
    optimizer.dispose();
    param.dispose();
  });

  it('restoring a saved state gives identical subsequent updates', () => {
    for (const cfg of [ADAM, RADAM]) {
      const start = [0.3, -0.7, 1.1];
      const a = tf.variable(tf.tensor1d(start));
      const optA = createOptimizer(cfg, new Map([['w', a]]));
      for (let t = 1; t <= 4; t++) tf.tidy(() => optA.apply(new Map([['w', tf.tensor1d(gradientAt(t, 3))]]), 0));
      const state = optA.getState();
      assert.equal(state.step, 4);
      assert.deepEqual([...state.slots.keys()].sort(), ['m/w', 'v/w']);

      const b = tf.variable(tf.tensor1d(Array.from(a.dataSync())));
      const optB = createOptimizer(cfg, new Map([['w', b]]));
      optB.setState(state);
      for (const slot of state.slots.values()) slot.dispose();  // setState copied them
      assert.equal(optB.step, 4);
      for (let t = 5; t <= 9; t++) {
        tf.tidy(() => {
          const grads = new Map([['w', tf.tensor1d(gradientAt(t, 3))]]);
          optA.apply(grads, 0);
          optB.apply(grads, 0);
        });
        assert.deepEqual(Array.from(b.dataSync()), Array.from(a.dataSync()), `${cfg.name} step ${t}`);
      }
      optA.dispose();
      optB.dispose();
      a.dispose();
      b.dispose();
    }
  });

  it('rejects bad configs, unknown gradients and mismatched states with clear errors', () => {
    assert.throws(() => createOptimizer({ ...ADAM, beta2: 1 }, new Map()), /beta2 must be in \[0, 1\)/);
    assert.throws(() => createOptimizer({ ...ADAM, name: 'sgd' as 'adam' }, new Map()), /name must be 'adam' or 'radam'/);
    const param = tf.variable(tf.zeros([2]));
    const optimizer = createOptimizer(ADAM, new Map([['w', param]]));
    const grad = tf.zeros([2]);
    assert.throws(() => optimizer.apply(new Map([['other', grad]]), 0), /unknown parameter 'other'/);
    const wrong = tf.zeros([3]);
    assert.throws(() => optimizer.setState({ step: 1, slots: new Map([['m/w', wrong]]) }), /m\/w has shape \[3\], parameter has \[2\]; missing slot v\/w/);
    grad.dispose();
    wrong.dispose();
    optimizer.dispose();
    param.dispose();
  });

  it('does not leak tensors over many steps', () => {
    const params = new Map([
      ['a', tf.tidy(() => tf.variable(tf.randomNormal([4, 3])))],
      ['b', tf.tidy(() => tf.variable(tf.randomNormal([5])))],
    ]);
    for (const [cfg, kernel] of [[ADAM, 'tensor'], [RADAM, 'tensor'], [ADAM, 'fused'], [RADAM, 'fused']] as const) {
      const optimizer = createOptimizer(cfg, params, kernel);
      const step = (): void => tf.tidy(() => {
        const grads = new Map([...params].map(([name, p]) => [name, tf.randomNormal(p.shape)] as [string, tf.Tensor]));
        optimizer.apply(grads, 1000);
      });
      step();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 50; i++) step();
      assert.equal(tf.memory().numTensors, before, `${cfg.name} (${kernel}): tensor count after 50 steps`);
      optimizer.dispose();
    }
    for (const p of params.values()) p.dispose();
  });
});
