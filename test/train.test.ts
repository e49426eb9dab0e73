/**
 * The losses on tiny tensors, and the trainer through the launcher: no leaks, it learns, every draw follows the
 * run's seed, and a killed-and-resumed run (pretraining or tuning) equals an uninterrupted one bit for bit.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { UNet } from '../lib/nn/unet';
import { EctLoss } from '../lib/ect/loss';
import { pseudoHuberTensor } from '../lib/ect/weighting';
import { EdmLoss } from '../lib/edm/loss';
import { denoise } from '../lib/edm/precond';
import { Trainer } from '../lib/train/trainer';
import { launchRun, trainRun, resolveRun } from '../lib/train/launch';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { loadCheckpoint, disposeCheckpoint, latestCheckpoint } from '../lib/train/checkpoint';
import { readMetrics, TRAINING_COLUMNS } from '../lib/train/metrics-log';
import { TINY_NET, tinyRunConfig, tinyRunSpec, useTestBackend } from './helpers';

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
    const step = new EctLoss({ ...cfg.ect, stageIters: 1 }, cfg.edm).prepare(net, x0, { seed: 123, iteration: 1 });
    const { target } = step;
    const loss = step.loss().dataSync()[0];
    const { t, r } = step.draws;
    assert.ok(r.some((v) => v === 0) && r.some((v) => v > 0), `both kinds of r: ${Array.from(r)}`);
    const noise = tf.randomNormal(x0.shape, 0, 1, 'float32', step.draws.noiseSeed);
    let expected = 0;
    for (let i = 0; i < 6; i++) {
      const xi = tf.slice(x0, [i, 0, 0, 0], [1, 8, 8, 1]) as tf.Tensor4D;
      const ni = tf.slice(noise, [i, 0, 0, 0], [1, 8, 8, 1]);
      const student = denoise(net, tf.add(xi, tf.mul(ni, t[i])) as tf.Tensor4D, t[i], { edm: cfg.edm, mode: 'train' });
      const tgt = r[i] > 0 ? denoise(net, tf.add(xi, tf.mul(ni, r[i])) as tf.Tensor4D, r[i], { edm: cfg.edm, mode: 'train' }) : xi;
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
    tf.dispose([x0, noise]);
    net.dispose();
  });

  it('uses the student\'s dropout mask for the target: with r -> t the loss vanishes only if masks are shared', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0.5 }, 0);
    randomizeWeights(net, 20);
    const cfg = tinyRunConfig('tune');
    const x0 = tf.randomUniform([4, 8, 8, 1], -1, 1, 'float32', 3) as tf.Tensor4D;
    // a huge q makes r = t (1 - n/q) within 1e-9 of t: same input, so shared masks give the same output
    const step = new EctLoss({ ...cfg.ect, q: 1e12, weighting: 'uniform' }, cfg.edm).prepare(net, x0, { seed: 5, iteration: 0 });
    const loss = step.loss().dataSync()[0];
    assert.ok(loss < 1e-3, `loss ${loss} should be ~0 with shared masks`);
    step.dispose();
    x0.dispose();
    net.dispose();
  });

  it('huberC 0: finite gradients at stage 0 and at a stage where student and target agree exactly', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0 }, 0);
    randomizeWeights(net, 30);
    const cfg = tinyRunConfig('tune');
    const x0 = tf.randomUniform([4, 8, 8, 1], -1, 1, 'float32', 5) as tf.Tensor4D;
    const ect = new EctLoss({ ...cfg.ect, huberC: 0, stageIters: 1, q: 2 }, cfg.edm);
    const variables = [...net.params.values()];
    // stage 0: r = t (1 - n/2) differs from t; stage 30: t - r = t n / 2^31 is below float32's resolution, so the
    // network sees the same time and input twice and D(x_r, r) = D(x_t, t) exactly, while w = 1/(t - r) stays finite
    for (const iteration of [0, 30]) {
      const step = ect.prepare(net, x0, { seed: 7, iteration });
      const same = Float32Array.from(step.draws.r).every((r, i) => r === Math.fround(step.draws.t[i]));
      if (iteration === 30) assert.ok(same, 'r = t in float32 at stage 30');
      const { value, grads } = tf.variableGrads(() => step.loss(), variables);
      const loss = value.dataSync()[0];
      assert.ok(Number.isFinite(loss), `stage ${step.draws.stage}: loss ${loss}`);
      if (iteration === 30) assert.equal(loss, 0, 'student and target agree');
      for (const [name, g] of Object.entries(grads)) {
        assert.ok(tf.tidy(() => tf.all(tf.isFinite(g)).dataSync()[0]) === 1, `stage ${step.draws.stage}: non-finite gradient of ${name}`);
      }
      tf.dispose([value, ...Object.values(grads)]);
      step.dispose();
    }
    x0.dispose();
    net.dispose();
  });

  it('huberC 0: the norm\'s values and gradients away from 0 are tf.sqrt\'s bit for bit (runs reproduce)', () => {
    const x = tf.variable(tf.randomNormal([5, 7], 0, 1, 'float32', 11));
    const weights = tf.tensor1d([1, 2, 3, 4, 5]);
    const ours = tf.variableGrads(() => tf.sum(tf.mul(pseudoHuberTensor(tf.sum(tf.square(x), 1), 0), weights)) as tf.Scalar, [x]);
    const plain = tf.variableGrads(() => tf.sum(tf.mul(tf.sqrt(tf.sum(tf.square(x), 1)), weights)) as tf.Scalar, [x]);
    assert.equal(ours.value.dataSync()[0], plain.value.dataSync()[0]);
    assert.deepEqual(Array.from(ours.grads[x.name].dataSync()), Array.from(plain.grads[x.name].dataSync()));
    tf.dispose([x, weights, ours.value, plain.value, ...Object.values(ours.grads), ...Object.values(plain.grads)]);
  });

  it('gives the target and the student pass the same labels and label-dropout mask', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0, labelDim: 4, labelDropout: 0.5 }, 0);
    randomizeWeights(net, 40);
    const cfg = tinyRunConfig('tune');
    const x0 = tf.randomUniform([8, 8, 8, 1], -1, 1, 'float32', 4) as tf.Tensor4D;
    const labels = [0, 1, 2, 3, 3, 2, 1, 0];
    // r within 1e-9 of t: the two passes see the same input, so the loss vanishes only if they see the same labels
    const ect = new EctLoss({ ...cfg.ect, q: 1e12, weighting: 'uniform' }, cfg.edm);
    const step = ect.prepare(net, x0, { seed: 5, iteration: 2, labels });
    const loss = step.loss().dataSync()[0];
    assert.ok(loss < 1e-3, `loss ${loss} should be ~0 with shared labels and label masks`);
    step.dispose();
    // and the labels reach both losses: other labels, another loss
    const edm = new EdmLoss(cfg.edm);
    const value = (ids: number[]) => { const s = edm.prepare(net, x0, { seed: 5, iteration: 2, labels: ids }); const v = tf.tidy(() => s.loss().dataSync()[0]); s.dispose(); return v; };
    assert.notEqual(value(labels), value(labels.map((l) => (l + 1) % 4)));
    assert.throws(() => ect.prepare(net, x0, { seed: 5, iteration: 2 }), /needs a class label per image/);
    x0.dispose();
    net.dispose();
  });
});

describe('losses: every draw from (seed, iteration)', () => {
  before(useTestBackend);

  it('EDM and ECT give the same loss for the same (seed, iteration) in a fresh network, and another for another seed', () => {
    const x0 = tf.randomUniform([4, 8, 8, 1], -1, 1, 'float32', 7) as tf.Tensor4D;
    const cfg = { pretrain: tinyRunConfig('pretrain'), tune: tinyRunConfig('tune') };
    const losses = { pretrain: new EdmLoss(cfg.pretrain.edm), tune: new EctLoss(cfg.tune.ect, cfg.tune.edm) };
    for (const kind of ['pretrain', 'tune'] as const) {
      const value = (seed: number, iteration: number, calls: number): number => {
        // a new network each time, called `calls` times first: no state of the network may change the draws
        const net = new UNet(TINY_NET, 0);
        randomizeWeights(net, 30);
        let result = NaN;
        for (let i = 0; i < calls; i++) {
          const step = losses[kind].prepare(net, x0, { seed, iteration });
          result = tf.tidy(() => step.loss().dataSync()[0]);
          step.dispose();
        }
        net.dispose();
        return result;
      };
      assert.equal(value(3, 5, 1), value(3, 5, 2), `${kind}: the same step draws the same noise and dropout masks`);
      assert.notEqual(value(3, 5, 1), value(4, 5, 1), `${kind}: the run seed changes the draws`);
      assert.notEqual(value(3, 5, 1), value(3, 6, 1), `${kind}: the iteration changes the draws`);
    }
    x0.dispose();
  });
});

describe('Trainer', () => {
  before(useTestBackend);

  it('leaks no tensors over 20 ECT steps and 20 EDM steps, with post-hoc EMA tracking too', async () => {
    const annealed = { iters: 40, ema: { beta: null, sigmaRel: 0.1, posthoc: { sigmaRels: [0.05, 0.1], snapshotEvery: 5 } } };
    for (const [kind, patch] of [['tune', { iters: 40 }], ['pretrain', { iters: 40 }], ['tune', annealed]] as const) {
      const trainer = await Trainer.create(tinyRunConfig(kind, patch), { runDir: null, dataset: tinyData() });
      const { images: x0 } = trainer.loader.next();
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
    const { images: x0 } = trainer.loader.next();
    const fixedLoss = (): number => {
      const step = new EdmLoss(trainer.cfg.edm).prepare(trainer.net, x0, { seed: 99, iteration: 0 });
      const value = tf.tidy(() => step.loss().dataSync()[0]);
      step.dispose();
      return value;
    };
    const start = fixedLoss();
    for (let i = 0; i < 80; i++) trainer.step(x0);
    const end = fixedLoss();
    assert.ok(end < 0.75 * start, `loss ${start} -> ${end}`);
    x0.dispose();
    trainer.dispose();
  });

  // the synthetic dataset's 10 classes: a conditional tiny network with label dropout
  const conditionalNet = { ...TINY_NET, labelDim: 10, labelDropout: 0.3 };
  for (const [kind, conditional] of [['pretrain', false], ['tune', false], ['pretrain', true], ['tune', true]] as const) {
    it(`${kind}${conditional ? ', class-conditional' : ''}: writes metrics.csv, config.json and checkpoints; killed and resumed, it equals the uninterrupted run bit for bit`, async () => {
      const dataset = tinyData();
      const full = tmpDir();
      const parts = tmpDir();
      const patch = conditional ? { net: conditionalNet } : {};
      // tuning starts from a teacher (a conditional one for a conditional run); the tiny net has dropout 0.1 in both kinds
      const init = kind === 'tune' ? { init: await tinyTeacher(dataset, patch) } : {};
      const a = await launchRun(tinyRunSpec(kind, full, patch, init), { dataset });
      assert.equal(a.trainer.net.conditional, conditional);
      await a.trainer.run();
      const b = await launchRun(tinyRunSpec(kind, parts, patch, init), { dataset });
      let steps = 0;
      await b.trainer.run({ onStep: () => { steps++; }, shouldStop: () => steps >= 4 });  // stops after 4 (checkpoint at 3 and at 4)
      b.dispose();
      // pretend the process died after the checkpoint at 3: drop the one written at the stop
      fs.rmSync(path.join(parts, 'checkpoints', 'ckpt-000000004.ckpt'));
      const c = await launchRun(tinyRunSpec(kind, parts, patch, { ...init, resume: true }), { dataset });
      assert.equal(c.trainer.iteration, 3);
      await c.trainer.run();
      for (const [name, p] of a.trainer.net.params) {
        assert.deepEqual(Array.from(c.trainer.net.params.get(name)!.dataSync()), Array.from(p.dataSync()), `online ${name} differs`);
        assert.deepEqual(Array.from(c.trainer.ema.weights.get(name)!.dataSync()), Array.from(a.trainer.ema.weights.get(name)!.dataSync()), `EMA ${name} differs`);
      }
      const { header, rows } = readMetrics(path.join(parts, 'metrics.csv'));
      for (const col of TRAINING_COLUMNS) assert.ok(header.includes(col), `metrics.csv lacks ${col}`);
      assert.deepEqual(rows.map((r) => Number(r.iter)), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(rows.map((r) => r.loss), readMetrics(path.join(full, 'metrics.csv')).rows.map((r) => r.loss), 'the same losses');
      const config = JSON.parse(fs.readFileSync(path.join(parts, 'config.json'), 'utf8'));
      assert.equal(config.kind, kind);
      const ckpt = loadCheckpoint(latestCheckpoint(path.join(parts, 'checkpoints'))!);
      assert.equal(ckpt.meta.iteration, 6);
      disposeCheckpoint(ckpt);
      a.dispose();
      c.dispose();
    });
  }

  it('tune with a power EMA, post-hoc tracking, decay and cool-down: killed and resumed, equal to the uninterrupted run, snapshots included', async () => {
    const dataset = tinyData();
    const init = { init: await tinyTeacher(dataset) };
    const patch = {
      iters: 6, ema: { beta: null, sigmaRel: 0.1, posthoc: { sigmaRels: [0.05, 0.1], snapshotEvery: 2 } },
      optimizer: { lr: 1e-3, rampupKimg: 0, decayFraction: 0.25, cooldownFraction: 0.5 }, ect: { stageFraction: 0.5 },
    };
    const full = tmpDir();
    const parts = tmpDir();
    const a = await launchRun(tinyRunSpec('tune', full, patch, init), { dataset });
    assert.equal(a.cfg.ect.stageIters, 3);
    assert.equal(a.cfg.optimizer.decayKimg, 0.25 * 6 * 4 / 1000);
    await a.trainer.run();
    const b = await launchRun(tinyRunSpec('tune', parts, patch, init), { dataset });
    let steps = 0;
    await b.trainer.run({ onStep: () => { steps++; }, shouldStop: () => steps >= 4 });
    b.dispose();
    fs.rmSync(path.join(parts, 'checkpoints', 'ckpt-000000004.ckpt'));
    fs.rmSync(path.join(parts, 'posthoc', 'snapshot-000000004.ckpt'));
    const c = await launchRun(tinyRunSpec('tune', parts, patch, { ...init, resume: true }), { dataset });
    assert.equal(c.trainer.iteration, 3);
    await c.trainer.run();
    a.trainer.posthoc!.emas.forEach((ema, i) => {
      for (const [name, w] of ema.weights) {
        assert.deepEqual(Array.from(c.trainer.posthoc!.emas[i].weights.get(name)!.dataSync()), Array.from(w.dataSync()), `post-hoc EMA ${i} ${name} differs`);
      }
    });
    for (const [name, w] of a.trainer.ema.weights) assert.deepEqual(Array.from(c.trainer.ema.weights.get(name)!.dataSync()), Array.from(w.dataSync()), `EMA ${name} differs`);
    const snapshots = (dir: string) => fs.readdirSync(path.join(dir, 'posthoc')).sort();
    assert.deepEqual(snapshots(parts), ['snapshot-000000002.ckpt', 'snapshot-000000004.ckpt', 'snapshot-000000006.ckpt']);
    for (const name of snapshots(full)) {
      const [x, y] = [loadCheckpoint(path.join(full, 'posthoc', name)), loadCheckpoint(path.join(parts, 'posthoc', name))];
      for (const group of Object.keys(x.groups)) {
        for (const [tensor, values] of x.groups[group]) assert.deepEqual(Array.from(y.groups[group].get(tensor)!.dataSync()), Array.from(values.dataSync()), `${name} ${group} ${tensor}`);
      }
      disposeCheckpoint(x);
      disposeCheckpoint(y);
    }
    a.dispose();
    c.dispose();
  });

  it('tunes a network of another size on the synthetic set, drawn at the network\'s size (as an imported 16x16 RGB model)', async () => {
    const out = tmpDir();
    const outcome = await trainRun(tinyRunSpec('tune', out, { net: { ...TINY_NET, resolution: 16, imageChannels: 3 }, iters: 2 }, { fromScratch: true }));
    assert.equal(outcome.iteration, 2);
  });

  it('refuses to resume with a config that changes the result, and to overwrite a run without --resume', async () => {
    const dir = tmpDir();
    const dataset = tinyData();
    const t = await launchRun(tinyRunSpec('pretrain', dir, { iters: 3 }), { dataset });
    await t.trainer.run();
    t.dispose();
    await assert.rejects(launchRun(tinyRunSpec('pretrain', dir, { iters: 6 }), { dataset }), /already holds checkpoints.*--resume/);
    assert.throws(() => resolveRun(tinyRunSpec('pretrain', dir, { iters: 6, batch: 8 }, { resume: true })), /does not match this config.*batch/);
    // bookkeeping fields may change: a longer run
    assert.equal(resolveRun(tinyRunSpec('pretrain', dir, { iters: 6 }, { resume: true })).cfg.iters, 6);
    assert.throws(() => resolveRun(tinyRunSpec('pretrain', tmpDir(), {}, { resume: true })), /no checkpoint/);
  });

  it('a resumed run reads its checkpoint file once: verified, its config read and its weights loaded from one read', async () => {
    const dir = tmpDir();
    const dataset = tinyData();
    const first = await launchRun(tinyRunSpec('pretrain', dir, { iters: 3 }), { dataset });
    await first.trainer.run();
    first.dispose();
    const checkpoint = latestCheckpoint(path.join(dir, 'checkpoints'))!;
    // every read of a checkpoint opens it (whole or its header alone): count the opens of this one
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeFs = require('node:fs') as { openSync: (...args: unknown[]) => number };
    const openSync = nodeFs.openSync;
    let opens = 0;
    nodeFs.openSync = (...args: unknown[]) => {
      if (path.resolve(String(args[0])) === path.resolve(checkpoint)) opens++;
      return openSync(...args);
    };
    let resumed;
    try {
      resumed = await launchRun(tinyRunSpec('pretrain', dir, { iters: 4 }, { resume: true }), { dataset });
    } finally {
      nodeFs.openSync = openSync;
    }
    assert.equal(resumed.trainer.iteration, 3, 'resumed at the checkpoint');
    assert.equal(opens, 1, `the checkpoint was opened ${opens} times`);
    await resumed.trainer.run();
    assert.equal(resumed.trainer.iteration, 4);
    resumed.dispose();
  });

  it('tunes from a pretrained checkpoint: its network (with the tuning\'s dropout), online and EMA weights from its EMA', async () => {
    const dataset = tinyData();
    const teacherDir = await tinyTeacher(dataset);
    const teacher = loadCheckpoint(latestCheckpoint(path.join(teacherDir, 'checkpoints'))!);
    // the tuning config names no network: the architecture is the teacher's, the dropout the tuning default's
    const spec = tinyRunSpec('tune', tmpDir(), { net: undefined, iters: 3 }, { init: teacherDir });
    const tuned = await launchRun(spec, { dataset });
    assert.deepEqual({ ...tuned.cfg.net, dropout: TINY_NET.dropout }, TINY_NET);
    assert.equal(tuned.cfg.net.dropout, 0.2);
    for (const [name, w] of teacher.groups.ema) {
      assert.deepEqual(Array.from(tuned.trainer.net.params.get(name)!.dataSync()), Array.from(w.dataSync()), name);
      assert.deepEqual(Array.from(tuned.trainer.ema.weights.get(name)!.dataSync()), Array.from(w.dataSync()), name);
    }
    disposeCheckpoint(teacher);
    tuned.dispose();
    assert.throws(() => resolveRun(tinyRunSpec('tune', tmpDir(), {}, { init: path.join(teacherDir, 'nope') })), /no such file/);
    assert.throws(() => resolveRun(tinyRunSpec('tune', tmpDir())), /tune needs --init/);
    // a conditional teacher's label embedding is architecture (it comes along); its label dropout is a setting (it does not)
    const conditionalTeacher = await tinyTeacher(dataset, { net: { ...TINY_NET, labelDim: 10, labelDropout: 0.3 } });
    const conditional = resolveRun(tinyRunSpec('tune', tmpDir(), { net: undefined }, { init: conditionalTeacher })).cfg.net;
    assert.deepEqual([conditional.labelDim, conditional.labelDropout], [10, 0]);
  });
});

/** Pretrains a 3-iteration tiny teacher; returns its run directory. */
async function tinyTeacher(dataset: ReturnType<typeof tinyData>, patch: Record<string, unknown> = {}): Promise<string> {
  const dir = tmpDir();
  const teacher = await launchRun(tinyRunSpec('pretrain', dir, { iters: 3, ...patch }), { dataset });
  await teacher.trainer.run();
  teacher.dispose();
  return dir;
}
