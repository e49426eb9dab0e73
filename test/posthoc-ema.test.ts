/**
 * Tests of the power-function EMA and post-hoc EMA: the width-exponent relation against EDM2's stated pairs, the
 * profile inner product against a numerical integral, and reconstructions against the exact power EMA of a
 * synthetic weight sequence, through the snapshot files a run writes.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import seedrandom from 'seedrandom';
import { Ema, emaBeta, posthocGroupName, powerEmaBeta, powerEmaGamma, powerEmaSigmaRel } from '../lib/train/ema';
import { posthocCoefficients, profileFitError, profileInnerProduct, reconstructPosthocEma, writePosthocEma, type PowerProfile } from '../lib/select/posthoc-ema';
import { saveCheckpoint, loadCheckpoint, disposeCheckpoint } from '../lib/train/checkpoint';
import { POSTHOC_DIR } from '../lib/runs/folder';

/** A smooth drifting weight vector with noise, one value per step: what a parameter's trajectory looks like. */
function syntheticWeights(steps: number, dims: number, seed: string): Float64Array[] {
  const random = seedrandom(seed);
  const walk = new Float64Array(dims);
  const out: Float64Array[] = [];
  for (let k = 1; k <= steps; k++) {
    const theta = new Float64Array(dims);
    for (let j = 0; j < dims; j++) {
      walk[j] += 0.01 * (random() - 0.5);
      theta[j] = Math.sin(k / 400 + j) + walk[j] + 0.2 * (random() - 0.5);
    }
    out.push(theta);
  }
  return out;
}

/** The exact power EMA of `sigmaRel` over the sequence (one image per step), with its value after every step. */
function exactPowerEma(weights: Float64Array[], sigmaRel: number): Float64Array[] {
  const gamma = powerEmaGamma(sigmaRel);
  const average = new Float64Array(weights[0].length);
  return weights.map((theta, k) => {
    const beta = powerEmaBeta(gamma, k, 1);
    for (let j = 0; j < average.length; j++) average[j] += (theta[j] - average[j]) * (1 - beta);
    return Float64Array.from(average);
  });
}

function distance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  return Math.sqrt(sum);
}

describe('power-function and post-hoc EMA', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('maps sigma_rel to the exponents EDM2 states (0.05 -> 16.97, 0.10 -> 6.94) and back', () => {
    assert.ok(Math.abs(powerEmaGamma(0.05) - 16.97) < 0.01, `${powerEmaGamma(0.05)}`);
    assert.ok(Math.abs(powerEmaGamma(0.10) - 6.94) < 0.01, `${powerEmaGamma(0.10)}`);
    for (const sigma of [0.01, 0.05, 0.1, 0.2, 0.28]) assert.ok(Math.abs(powerEmaSigmaRel(powerEmaGamma(sigma)) - sigma) < 1e-9);
    assert.throws(() => powerEmaGamma(0.3), /sigma_rel must be in/);
    assert.throws(() => powerEmaGamma(0), /sigma_rel must be in/);
  });

  it('copies the weights at the first step and then weighs image tau by tau^gamma', () => {
    assert.equal(powerEmaBeta(6.94, 0, 64), 0);
    assert.equal(emaBeta({ sigmaRel: 0.1 }, 0, 64), 0);
    // after t images: beta = (1 - batch / (t + batch))^(gamma + 1)
    assert.ok(Math.abs(emaBeta({ sigmaRel: 0.1 }, 640, 64) - (640 / 704) ** (powerEmaGamma(0.1) + 1)) < 1e-15);
    // the discrete average of 1..T with one image per step: weight of step k is proportional to about k^gamma
    const gamma = 2;
    const T = 400;
    let average = 0;
    for (let k = 1; k <= T; k++) average += (k - average) * (1 - powerEmaBeta(gamma, k - 1, 1));
    // continuous profile: mean of tau under (gamma + 1) tau^gamma / T^(gamma + 1) is T (gamma + 1) / (gamma + 2)
    assert.ok(Math.abs(average / (T * (gamma + 1) / (gamma + 2)) - 1) < 0.01, `${average}`);
  });

  it('a power EMA as the run EMA drops the starting weights at the first step', () => {
    const param = tf.variable(tf.tensor1d([3, 4]));
    const ema = new Ema(new Map([['w', param]]), { sigmaRel: 0.05 }, new Map([['w', tf.tensor1d([100, 100])]]), 'tensor');
    param.assign(tf.tensor1d([1, 2]));
    ema.update(0, 64);
    assert.deepEqual(Array.from(ema.weights.get('w')!.dataSync()), [1, 2]);
    ema.dispose();
    param.dispose();
  });

  it('computes profile inner products equal to a numerical integral', () => {
    const profiles: PowerProfile[] = [{ t: 1000, gamma: 6.94 }, { t: 700, gamma: 16.97 }, { t: 1000, gamma: 0.5 }];
    for (const a of profiles) {
      for (const b of profiles) {
        const steps = 200000;
        const end = Math.min(a.t, b.t);
        let integral = 0;
        for (let i = 0; i < steps; i++) {
          const tau = ((i + 0.5) / steps) * end;
          integral += ((a.gamma + 1) * tau ** a.gamma / a.t ** (a.gamma + 1)) * ((b.gamma + 1) * tau ** b.gamma / b.t ** (b.gamma + 1));
        }
        integral *= end / steps;
        assert.ok(Math.abs(profileInnerProduct(a, b) / integral - 1) < 1e-6, `${JSON.stringify([a, b])}: ${profileInnerProduct(a, b)} vs ${integral}`);
      }
    }
  });

  it('reconstructs a profile exactly from itself, and fits others between the tracked widths closely', () => {
    const own = { t: 5000, gamma: powerEmaGamma(0.1) };
    const x = posthocCoefficients([own, { t: 4000, gamma: powerEmaGamma(0.05) }], own);
    assert.ok(Math.abs(x[0] - 1) < 1e-6 && Math.abs(x[1]) < 1e-6, `${x}`);
    const snapshots: PowerProfile[] = [];
    for (let t = 250; t <= 5000; t += 250) for (const sigma of [0.05, 0.1]) snapshots.push({ t, gamma: powerEmaGamma(sigma) });
    for (const sigma of [0.03, 0.07, 0.15]) {
      const target = { t: 5000, gamma: powerEmaGamma(sigma) };
      const error = profileFitError(snapshots, posthocCoefficients(snapshots, target), target);
      assert.ok(error < 0.05, `sigma_rel ${sigma}: profile error ${error}`);
    }
  });

  it('reconstructs the exact power EMA of a synthetic weight sequence from snapshot files', () => {
    const steps = 3000;
    const every = 150;
    const tracked = [0.05, 0.1];
    const weights = syntheticWeights(steps, 16, 'posthoc');
    const runs = tracked.map((sigma) => exactPowerEma(weights, sigma));
    const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-posthoc-'));
    try {
      for (let k = every; k <= steps; k += every) {
        const groups = Object.fromEntries(tracked.map((_, i) => [posthocGroupName(i), new Map([['w', tf.tensor(Float32Array.from(runs[i][k - 1]), [4, 4])]])]));
        saveCheckpoint(path.join(runDir, POSTHOC_DIR, `snapshot-${String(k).padStart(9, '0')}.ckpt`), {
          meta: { iteration: k, imagesSeen: k, sigmaRels: tracked, config: { kind: 'tune' } }, groups,
        });
        Object.values(groups).forEach((g) => g.forEach((t) => t.dispose()));
      }
      const spread = distance(runs[0][steps - 1], runs[1][steps - 1]);
      for (const sigma of [0.04, 0.07, 0.12]) {
        const exact = exactPowerEma(weights, sigma)[steps - 1];
        const rec = reconstructPosthocEma(runDir, sigma);
        const got = rec.weights.get('w')!.dataSync();
        const error = distance(got, exact);
        // the reconstruction is far closer to the exact EMA than the two tracked EMAs are to each other
        assert.ok(error < 0.1 * spread, `sigma_rel ${sigma}: error ${error}, tracked EMAs ${spread} apart`);
        assert.equal(rec.iteration, steps);
        assert.equal(rec.snapshots, steps / every);
        if (sigma === 0.07) {
          const file = writePosthocEma(runDir, rec);
          const ckpt = loadCheckpoint(file);
          assert.deepEqual(Array.from(ckpt.groups.ema.get('w')!.dataSync()), Array.from(got));
          assert.equal((ckpt.meta.posthocEma as { sigmaRel: number }).sigmaRel, 0.07);
          disposeCheckpoint(ckpt);
        }
        rec.weights.forEach((t) => t.dispose());
      }
      // at an earlier snapshot only the snapshots up to it are used
      const early = reconstructPosthocEma(runDir, 0.07, 1500);
      const exactEarly = exactPowerEma(weights.slice(0, 1500), 0.07)[1499];
      assert.equal(early.snapshots, 10);
      assert.ok(distance(early.weights.get('w')!.dataSync(), exactEarly) < 0.1 * distance(runs[0][1499], runs[1][1499]));
      early.weights.forEach((t) => t.dispose());
      assert.throws(() => reconstructPosthocEma(runDir, 0.07, 1501), /no snapshot at iteration 1501/);
    } finally {
      fs.rmSync(runDir, { recursive: true, force: true });
    }
  });

  it('says what to do for a run without snapshots', () => {
    const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-posthoc-'));
    try {
      assert.throws(() => reconstructPosthocEma(runDir, 0.05), /no posthoc\/ folder of snapshots; post-hoc EMA needs a run trained with ema\.posthoc/);
    } finally {
      fs.rmSync(runDir, { recursive: true, force: true });
    }
  });
});
