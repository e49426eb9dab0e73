/** The ECT loss on tiny tensors, and the trainer: no leaks, it learns, and a resumed run equals an uninterrupted one. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { UNet } from '../lib/nn/unet';
import { EctStep } from '../lib/ect/loss';
import { denoise } from '../lib/edm/precond';
import { Trainer } from '../lib/train/trainer';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { loadCheckpoint, disposeCheckpoint, latestCheckpoint } from '../lib/train/checkpoint';
import { readMetrics, TRAINING_COLUMNS } from '../lib/train/metrics-log';
import { TINY_NET, tinyRunConfig, useTestBackend } from './helpers';

const tinyData = () => makeSyntheticDataset('train', { count: 32, height: 8, width: 8, channels: 1, seed: 1 });
const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ect-train-'));

function randomizeWeights(net: UNet, seed: number): void {
  let i = 0;
  for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.3, 'float32', seed + i++));
}

describe('ECT loss', () => {
  before(useTestBackend);

  it('equals w(t,r) ||D(x_t,t) - D(x_r,r)||, with x0 as target where r = 0, recomputed independently', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0 }, 0);
    randomizeWeights(net, 10);
    const cfg = tinyRunConfig('tune');
    const x0 = tf.randomUniform([6, 8, 8, 1], -1, 1, 'float32', 2) as tf.Tensor4D;
    // stage 1 of q = 2: some r are 0 (t <= ln 5/3), others positive
    const step = new EctStep(net, x0, { ...cfg.ect, stageIters: 1 }, cfg.edm, 123, 1);
    const target = step.target();
    const loss = step.loss(target).dataSync()[0];
    const { t, r } = step.draws;
    assert.ok(r.some((v) => v === 0) || r.some((v) => v > 0));
    const noise = tf.randomNormal(x0.shape, 0, 1, 'float32', step.draws.noiseSeed);
    let expected = 0;
    for (let i = 0; i < 6; i++) {
      const xi = tf.slice(x0, [i, 0, 0, 0], [1, 8, 8, 1]) as tf.Tensor4D;
      const ni = tf.slice(noise, [i, 0, 0, 0], [1, 8, 8, 1]);
      const student = denoise(net, tf.add(xi, tf.mul(ni, t[i])) as tf.Tensor4D, tf.tensor1d([t[i]]), { edm: cfg.edm, mode: 'train' });
      const tgt = r[i] > 0 ? denoise(net, tf.add(xi, tf.mul(ni, r[i])) as tf.Tensor4D, tf.tensor1d([r[i]]), { edm: cfg.edm, mode: 'train' }) : xi;
      expected += Math.sqrt(tf.sum(tf.square(tf.sub(student, tgt))).dataSync()[0]) / (t[i] - r[i]) / 6;
    }
    assert.ok(Math.abs(loss - expected) < 1e-4 * Math.max(1, expected), `${loss} vs ${expected}`);
    // where r = 0 the target is exactly x0
    const zeroIdx = Array.from(r).findIndex((v) => v === 0);
    if (zeroIdx >= 0) {
      const diff = tf.max(tf.abs(tf.sub(tf.slice(target, [zeroIdx, 0, 0, 0], [1, 8, 8, 1]), tf.slice(x0, [zeroIdx, 0, 0, 0], [1, 8, 8, 1])))).dataSync()[0];
      assert.equal(diff, 0);
    }
    step.dispose();
    tf.dispose([x0, target, noise]);
    net.dispose();
  });

  it('uses the student\'s dropout mask for the target: with r -> t the loss vanishes only if masks are shared', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0.5 }, 0);
    randomizeWeights(net, 20);
    const cfg = tinyRunConfig('tune');
    const x0 = tf.randomUniform([4, 8, 8, 1], -1, 1, 'float32', 3) as tf.Tensor4D;
    // a huge q makes r = t (1 - n/q) within 1e-9 of t: same input, so shared masks give the same output
    const step = new EctStep(net, x0, { ...cfg.ect, q: 1e12, weighting: 'uniform' }, cfg.edm, 5, 0);
    const target = step.target();
    const loss = step.loss(target).dataSync()[0];
    assert.ok(loss < 1e-3, `loss ${loss} should be ~0 with shared masks`);
    step.dispose();
    target.dispose();
    x0.dispose();
    net.dispose();
  });
});

describe('Trainer', () => {
  before(useTestBackend);

  it('leaks no tensors over 20 ECT steps and 20 EDM steps', async () => {
    for (const kind of ['tune', 'pretrain'] as const) {
      const trainer = await Trainer.create(tinyRunConfig(kind, { iters: 40 }), { runDir: null, dataset: tinyData() });
      const x0 = trainer.loader.next();
      trainer.step(x0);
      trainer.step(x0);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 20; i++) trainer.step(x0);
      assert.equal(tf.memory().numTensors, before, `${kind}: tensor count grew`);
      x0.dispose();
      trainer.dispose();
    }
  });

  it('overfits a tiny batch: the EDM loss at fixed draws falls', async () => {
    const trainer = await Trainer.create(tinyRunConfig('pretrain', { iters: 100, net: { ...TINY_NET, dropout: 0 } }), { runDir: null, dataset: tinyData() });
    const x0 = trainer.loader.next();
    const { edmLoss } = await import('../lib/edm/loss');
    const fixedLoss = (): number => tf.tidy(() => edmLoss({ net: trainer.net, x0, edm: trainer.cfg.edm, seed: 99, iteration: 0 }).dataSync()[0]);
    const start = fixedLoss();
    for (let i = 0; i < 80; i++) trainer.step(x0);
    const end = fixedLoss();
    assert.ok(end < 0.75 * start, `loss ${start} -> ${end}`);
    x0.dispose();
    trainer.dispose();
  });

  it('writes metrics.csv, config.json and checkpoints; a killed-and-resumed run equals an uninterrupted one', async () => {
    const full = tmpDir();
    const parts = tmpDir();
    const dataset = tinyData();
    const a = await Trainer.create(tinyRunConfig('tune', { iters: 6 }), { runDir: full, dataset });
    await a.run();
    const b = await Trainer.create(tinyRunConfig('tune', { iters: 6 }), { runDir: parts, dataset });
    let steps = 0;
    await b.run({ onStep: () => { steps++; }, shouldStop: () => steps >= 4 });  // stops after 4 (checkpoint at 3 and at 4)
    b.dispose();
    // pretend the process died after the checkpoint at 3: drop the one written at the stop
    fs.rmSync(path.join(parts, 'checkpoints', 'ckpt-000000004.ckpt'));
    const c = await Trainer.create(tinyRunConfig('tune', { iters: 6 }), { runDir: parts, dataset, resume: true });
    assert.equal(c.iteration, 3);
    await c.run();
    for (const [name, p] of a.net.params) {
      assert.deepEqual(Array.from(c.net.params.get(name)!.dataSync()), Array.from(p.dataSync()), `online ${name} differs`);
      assert.deepEqual(Array.from(c.ema.weights.get(name)!.dataSync()), Array.from(a.ema.weights.get(name)!.dataSync()), `EMA ${name} differs`);
    }
    const { header, rows } = readMetrics(path.join(parts, 'metrics.csv'));
    for (const col of TRAINING_COLUMNS) assert.ok(header.includes(col), `metrics.csv lacks ${col}`);
    assert.deepEqual(rows.map((r) => Number(r.iter)), [1, 2, 3, 4, 5, 6]);
    const config = JSON.parse(fs.readFileSync(path.join(parts, 'config.json'), 'utf8'));
    assert.equal(config.kind, 'tune');
    const ckpt = loadCheckpoint(latestCheckpoint(path.join(parts, 'checkpoints'))!);
    assert.equal(ckpt.meta.iteration, 6);
    disposeCheckpoint(ckpt);
    a.dispose();
    c.dispose();
  });

  it('refuses to resume with a config that changes the result, and to overwrite a run without --resume', async () => {
    const dir = tmpDir();
    const dataset = tinyData();
    const t = await Trainer.create(tinyRunConfig('tune', { iters: 3 }), { runDir: dir, dataset });
    await t.run();
    t.dispose();
    await assert.rejects(Trainer.create(tinyRunConfig('tune', { iters: 6 }), { runDir: dir, dataset }), /already holds checkpoints.*--resume/);
    await assert.rejects(Trainer.create(tinyRunConfig('tune', { iters: 6, batch: 8 }), { runDir: dir, dataset, resume: true }), /does not match this config.*batch/);
    await assert.rejects(Trainer.create(tinyRunConfig('tune'), { runDir: tmpDir(), dataset, resume: true }), /no checkpoint/);
  });

  it('tunes from a pretrained checkpoint: online and EMA weights start from its EMA', async () => {
    const teacherDir = tmpDir();
    const dataset = tinyData();
    const teacher = await Trainer.create(tinyRunConfig('pretrain', { iters: 3 }), { runDir: teacherDir, dataset });
    await teacher.run();
    const tuned = await Trainer.create(tinyRunConfig('tune', { init: teacherDir, iters: 3 }), { runDir: null, dataset });
    for (const [name, w] of teacher.ema.weights) {
      assert.deepEqual(Array.from(tuned.net.params.get(name)!.dataSync()), Array.from(w.dataSync()), name);
      assert.deepEqual(Array.from(tuned.ema.weights.get(name)!.dataSync()), Array.from(w.dataSync()), name);
    }
    teacher.dispose();
    tuned.dispose();
    await assert.rejects(Trainer.create(tinyRunConfig('tune', { init: path.join(teacherDir, 'nope') }), { runDir: null, dataset }), /no such file/);
  });
});
