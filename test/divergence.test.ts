/**
 * Weights checked after the update and before a checkpoint, and the divergence rule: an update that overflows
 * the weights stops the run with its checkpoints finite (under --on-non-finite skip too), a checkpoint is never
 * written from non-finite weights, and a loss that grows by orders of magnitude stops the run.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { launchRun } from '../lib/train/launch';
import type { Trainer } from '../lib/train/trainer';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { checkpointPath, checkpointProblem, latestCheckpoint } from '../lib/train/checkpoint';
import { DivergenceWatch } from '../lib/train/divergence';
import { firstNonFinite } from '../lib/train/finite';
import { resolveRunConfig } from '../lib/config/resolve';
import { tinyRunSpec, useTestBackend } from './helpers';

const tinyData = () => makeSyntheticDataset('train', { count: 32, height: 8, width: 8, channels: 1, seed: 1 });
const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ect-diverge-'));

/** Makes the optimiser's update overflow one weight to Infinity from step `from` on (as lr 1e39 does). */
function overflowFrom(trainer: Trainer, from: number): void {
  const apply = trainer.optimizer.apply.bind(trainer.optimizer);
  trainer.optimizer.apply = (grads, imagesSeen) => {
    apply(grads, imagesSeen);
    if (trainer.iteration < from) return;
    const [first] = trainer.net.params.values();
    first.assign(tf.tidy(() => tf.add(first, tf.scalar(Infinity))));
  };
}

describe('weights checked after every update', () => {
  before(useTestBackend);

  it('finds the first tensor holding a NaN or an infinity', () => {
    const a = tf.tensor1d([1, 2, 3]);
    const b = tf.tensor1d([1, Infinity]);
    const c = tf.tensor1d([NaN]);
    assert.equal(firstNonFinite({ params: new Map([['a', a]]) }), null);
    assert.equal(firstNonFinite({ params: new Map([['a', a], ['b', b]]), ema: new Map([['c', c]]) }), 'params/b');
    assert.equal(firstNonFinite({ params: new Map([['a', a]]), ema: new Map([['c', c]]) }), 'ema/c');
    tf.dispose([a, b, c]);
  });

  for (const onNonFinite of ['stop', 'skip'] as const) {
    it(`an update that overflows the weights stops the run (--on-non-finite ${onNonFinite}); every checkpoint kept is finite and --resume works`, async () => {
      const dir = tmpDir();
      // eager steps: the overflow is injected into optimizer.apply, which a replayed step does not call (test/step-replay.test.ts has its own)
      const run = await launchRun(tinyRunSpec('pretrain', dir, { iters: 12, ckptEvery: 1, onNonFinite }, { stepReplay: false }), { dataset: tinyData() });
      overflowFrom(run.trainer, 5);
      await assert.rejects(run.trainer.run(), (err: Error) => {
        assert.match(err.message, /^iteration 6: the loss is [\d.]+, the gradient norm [\d.]+; the update made params\/\S+ NaN or infinite, so no weights of this step are kept, and the run stops/);
        assert.match(err.message, /overflowed float32: the learning rate is far too high/);
        assert.match(err.message, /ckpt-000000005\.ckpt \(iteration 5\), holds the last finite weights/);
        assert.doesNotMatch(err.message, /--on-non-finite skip/, 'skipping batches does not help broken weights');
        return true;
      });
      run.dispose();
      const checkpoints = path.join(dir, 'checkpoints');
      assert.equal(latestCheckpoint(checkpoints), checkpointPath(checkpoints, 5));
      const kept = fs.readdirSync(checkpoints).filter((name) => name.endsWith('.ckpt'));
      assert.deepEqual(kept, ['ckpt-000000003.ckpt', 'ckpt-000000004.ckpt', 'ckpt-000000005.ckpt']);
      for (const name of kept) assert.equal(checkpointProblem(path.join(checkpoints, name)), null, name);
      const resumed = await launchRun(tinyRunSpec('pretrain', dir, { iters: 7, ckptEvery: 1, onNonFinite }, { resume: true }), { dataset: tinyData() });
      assert.equal(resumed.trainer.iteration, 5);
      assert.equal((await resumed.trainer.run()).iteration, 7);
      resumed.dispose();
    });
  }

  it('never writes a checkpoint from non-finite weights', async () => {
    const dir = tmpDir();
    const run = await launchRun(tinyRunSpec('pretrain', dir, { iters: 2 }), { dataset: tinyData() });
    await run.trainer.run();
    const [first] = run.trainer.net.params.values();
    first.assign(tf.tidy(() => tf.mul(first, NaN)));
    assert.throws(() => run.trainer.saveCheckpoint(), /checkpoint .*ckpt-000000002\.ckpt not written: params\/\S+ holds NaN or infinite values/);
    run.dispose();
    assert.equal(checkpointProblem(checkpointPath(path.join(dir, 'checkpoints'), 2)), null, 'the checkpoint of the finished run is left as it was');
  });
});

describe('the divergence rule', () => {
  before(useTestBackend);

  it('compares block means with the lowest block mean so far', () => {
    const watch = new DivergenceWatch(100, 4);
    const said: Array<string | null> = [];
    const losses = [5, 3, 4, 4, 2, 2, 2, 2, 150, 150, 150, 150, 250, 250, 150, 250];
    losses.forEach((loss, i) => said.push(watch.add(i + 1, loss)));
    assert.deepEqual(said.slice(0, 15), Array(15).fill(null), 'block means 4, 2, 150 (75x the lowest)');
    assert.match(said[15] ?? '', /^the mean loss of iterations 13-16 is 225\.0, 113 times its lowest \(2\.000 over iterations 5-8\), more than divergenceFactor 100$/);
    const off = new DivergenceWatch(0, 1);
    assert.equal([1, 1e9, NaN].map((loss, i) => off.add(i, loss)).every((s) => s === null), true, 'factor 0: never');
    const nonFinite = new DivergenceWatch(10, 1);
    assert.equal([1, Infinity, NaN, 5].map((loss, i) => nonFinite.add(i, loss)).every((s) => s === null), true, 'non-finite losses are left to the non-finite rule');
  });

  it('is in the config (default 100, 0 turns it off) and refuses a factor that would stop healthy runs', () => {
    assert.equal(resolveRunConfig('tune', undefined, []).divergenceFactor, 100);
    assert.equal(resolveRunConfig('tune', undefined, [{ divergenceFactor: 0 }]).divergenceFactor, 0);
    assert.throws(() => resolveRunConfig('tune', undefined, [{ divergenceFactor: 0.5 }]), /divergenceFactor.*0 \(never\) or a number > 1/);
  });

  it('stops a run whose loss grows 1000-fold, naming the iterations and the learning rate', async () => {
    const dir = tmpDir();
    const run = await launchRun(tinyRunSpec('pretrain', dir, { iters: 120, ckptEvery: 40, logEvery: 10 }), { dataset: tinyData() });
    const step = run.trainer.step.bind(run.trainer);
    run.trainer.step = (x0, labels) => step(x0, labels) * (run.trainer.iteration > 50 ? 1000 : 1);
    await assert.rejects(run.trainer.run(), /^Error: iteration 100: the loss diverged: the mean loss of iterations 51-100 is \S+, \S+ times its lowest .*more than divergenceFactor 100, and the run stops\. Likely cause: the learning rate \(optimizer\.lr = 0\.002\) is too high\. The newest checkpoint is .*ckpt-000000080\.ckpt/);
    run.dispose();
  });
});
