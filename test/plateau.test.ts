/**
 * The plateau stop rule: the pure rule on made-up fd curves, the primary metric column, the config and
 * flag checks, and a tiny synthetic run that the rule finishes early (and that --resume may still continue).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CommanderError, type Command } from 'commander';
import { buildProgram } from '../cli/ect';
import { resolveRunConfig, parseOverride } from '../lib/config/resolve';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { primaryFdColumn } from '../lib/metrics/columns';
import type { SampleEvaluator } from '../lib/metrics/evaluate';
import { samplerLabel, type SampleSteps } from '../lib/sample';
import { checkpointsNewestFirst, readCheckpointMeta } from '../lib/train/checkpoint';
import { ensureRun, launchRun, plannedRunConfig } from '../lib/train/launch';
import { runStatus } from '../lib/runs/status';
import { readMetrics } from '../lib/train/metrics-log';
import { describePlateau, evaluationsOf, plateauCheck } from '../lib/train/plateau';
import { tinyRunSpec, useTestBackend } from './helpers';

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

describe('plateau rule', () => {
  it('takes fd at half the images from an evaluation there, or linearly in log kimg between the two bracketing it', () => {
    const exact = plateauCheck([{ kimg: 100, fd: 10 }, { kimg: 400, fd: 6 }], { kimg: 800, fd: 5 }, 0.1)!;
    assert.equal(exact.interpolated, false);
    assert.equal(exact.fdHalf, 6);
    close(exact.gain, 1 / 6, 'gain');
    assert.equal(exact.stop, false);
    // half of 600 is 300, between 100 and 400: w = ln 3 / ln 4 (any order of the history)
    const between = plateauCheck([{ kimg: 400, fd: 6 }, { kimg: 100, fd: 10 }], { kimg: 600, fd: 5 }, 0.1)!;
    const fdHalf = 10 + (Math.log(3) / Math.log(4)) * (6 - 10);
    assert.equal(between.interpolated, true);
    close(between.fdHalf, fdHalf, 'fd at 300 kimg');
    close(between.gain, (fdHalf - 5) / fdHalf, 'gain');
    assert.deepEqual([between.kimg, between.halfKimg, between.fdNow, between.threshold], [600, 300, 5, 0.1]);
    // the current evaluation is the upper bracket when none lies between half and now: half of 400 is midway in log kimg
    const upper = plateauCheck([{ kimg: 100, fd: 10 }], { kimg: 400, fd: 6 }, 0.1)!;
    close(upper.fdHalf, 8, 'fd at 200 kimg');
    close(upper.gain, 0.25, 'gain');
  });

  it('never stops without an evaluation at or before half the current images', () => {
    assert.equal(plateauCheck([], { kimg: 100, fd: 5 }, 0.99), null);
    assert.equal(plateauCheck([{ kimg: 300, fd: 8 }], { kimg: 500, fd: 8 }, 0.99), null, 'half of 500 is before the first evaluation');
    assert.equal(plateauCheck([{ kimg: 900, fd: 1 }], { kimg: 500, fd: 8 }, 0.99), null, 'later evaluations do not count');
    assert.ok(plateauCheck([{ kimg: 250, fd: 8 }], { kimg: 500, fd: 8 }, 0.99), 'one exactly at half does');
  });

  it('stops exactly when the gain is below the threshold, not at or above it', () => {
    // 8 -> 6 over a doubling: a gain of exactly 25%
    const at = (threshold: number) => plateauCheck([{ kimg: 100, fd: 8 }], { kimg: 200, fd: 6 }, threshold)!;
    assert.equal(at(0.25).gain, 0.25);
    assert.equal(at(0.25).stop, false, 'at the threshold');
    assert.equal(at(0.24).stop, false, 'above the threshold');
    assert.equal(at(0.26).stop, true, 'below the threshold');
    assert.equal(plateauCheck([{ kimg: 100, fd: 8 }], { kimg: 200, fd: 9 }, 0.01)!.stop, true, 'worse after a doubling');
    assert.equal(plateauCheck([{ kimg: 100, fd: 8 }], { kimg: 200, fd: NaN }, 0.5)!.stop, false, 'a non-finite fd never stops');
  });

  it('says why: the two fds, their kimg, the gain and the threshold', () => {
    const check = plateauCheck([{ kimg: 102.4, fd: 6 }, { kimg: 409.6, fd: 4.84 }], { kimg: 819.2, fd: 4.5 }, 0.1)!;
    assert.equal(describePlateau(check, 'fd_fmnist_heun'),
      'plateau: fd_fmnist_heun 4.5 at 819.2 kimg vs 4.84 at 409.6 kimg: doubling the images gained 7.02% < 10%: the run is finished');
    const going = plateauCheck([{ kimg: 100, fd: 10 }], { kimg: 400, fd: 6 }, 0.1)!;
    assert.equal(describePlateau(going, 'fd_fmnist_2step'),
      'plateau: fd_fmnist_2step 6 at 400 kimg vs 8 at 200 kimg (interpolated): doubling the images gained 25% >= 10%: training on');
  });

  it('reads the evaluations of a column from metrics.csv rows, skipping rows without it', () => {
    const rows: Array<Record<string, string>> = [{ iter: '1', kimg: '0.5', loss: '1' }, { iter: '2', kimg: '1', loss: '1', fd_fmnist_heun: '7.5' }, { iter: '3', kimg: '1.5', fd_fmnist_heun: '' },
      { iter: '4', kimg: '2', fd_fmnist_heun: '6' }];
    assert.deepEqual(evaluationsOf(rows, 'fd_fmnist_heun'), [{ kimg: 1, fd: 7.5 }, { kimg: 2, fd: 6 }]);
    assert.deepEqual(evaluationsOf(rows, 'fid_heun'), []);
  });

  it('judges a run by its Heun fd when pretraining, its 2-step fd (else 1-step) when tuning', () => {
    assert.equal(primaryFdColumn(['kid_fmnist_heun', 'fd_fmnist_heun', 'recall_fmnist_heun']), 'fd_fmnist_heun');
    assert.equal(primaryFdColumn(['fd_fmnist_1step', 'kid_fmnist_1step', 'fd_fmnist_2step', 'kid_fmnist_2step']), 'fd_fmnist_2step');
    assert.equal(primaryFdColumn(['fid_1step', 'kid_1step', 'precision_1step']), 'fid_1step');
    assert.equal(primaryFdColumn(['loss', 'kid_fmnist_heun']), null);
  });
});

describe('plateau rule: config and flags', () => {
  it('takes plateauGain in [0, 1), 0 by default, and refuses it without in-run evaluations, naming the keys', () => {
    assert.equal(resolveRunConfig('pretrain', 'fmnist-edm-tiny').plateauGain, 0);
    for (const bad of ['plateauGain=1', 'plateauGain=-0.1', 'plateauGain="fast"']) {
      assert.throws(() => resolveRunConfig('pretrain', 'fmnist-edm-tiny', [parseOverride(bad)]), /plateauGain must be in \[0, 1\), got/, bad);
    }
    assert.throws(() => resolveRunConfig('pretrain', 'fmnist-edm-tiny', [parseOverride('evalEvery=0'), parseOverride('plateauGain=0.1')]),
      /--set plateauGain=0\.1: plateauGain 0\.1 compares in-run evaluations, but evalEvery is 0.*\(evalEvery from --set evalEvery=0\)/);
    assert.throws(() => resolveRunConfig('pretrain', 'fmnist-edm-tiny', [parseOverride('evalEvery=5'), parseOverride('evalN=0'), parseOverride('plateauGain=0.1')]),
      /plateauGain 0\.1 compares in-run evaluations, but evalN is 0/);
    assert.equal(resolveRunConfig('pretrain', 'fmnist-edm-tiny', [parseOverride('evalEvery=5'), parseOverride('plateauGain=0.1')]).plateauGain, 0.1);
  });

  it('--plateau-gain: a run flag like the others, checked at parse time and explained in --help', () => {
    const spec = (flags: Record<string, unknown>) => ({ kind: 'pretrain' as const, flags: { config: 'fmnist-edm-tiny', ...flags } });
    assert.equal(plannedRunConfig(spec({ plateauGain: 0.1, evalEvery: 5 })).plateauGain, 0.1);
    assert.throws(() => plannedRunConfig(spec({ plateauGain: 0.1, evalEvery: 0 })), /--plateau-gain 0\.1: plateauGain 0\.1 compares in-run evaluations, but evalEvery is 0/);
    for (const kind of ['pretrain', 'tune']) {
      const program = buildProgram();
      const command = program.commands.find((c) => c.name() === kind) as Command;
      const help = command.helpInformation().replace(/\s+/g, ' ');  // as wrapped for the terminal
      assert.match(help, /--plateau-gain <x> finish the run early once doubling the training images improves the evaluated fd .* needs --eval-every/);
      command.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
      for (const bad of ['1', '-0.5', 'soon']) {
        assert.throws(() => command.parse(['--plateau-gain', bad], { from: 'user' }),
          (e: Error) => e instanceof CommanderError && e.message.includes(`--plateau-gain must be a number in [0, 1), got '${bad}'`), `${kind} ${bad}`);
      }
    }
  });
});

describe('plateau rule: a training run', () => {
  before(useTestBackend);

  const tinyData = () => makeSyntheticDataset('train', { count: 32, height: 8, width: 8, channels: 1, seed: 1 });
  const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ect-plateau-'));

  /** An evaluator whose fd starts at `start` and goes to step(fd) at each call (no images are scored): what the rule sees, made up. */
  function fakeEvaluator(step: (fd: number) => number, start = 10): SampleEvaluator {
    let fd = start;
    return {
      evaluate: async (_model: unknown, steps: SampleSteps) => {
        const value = fd;
        fd = step(fd);
        return { [`fd_fmnist_${samplerLabel(steps)}`]: value, [`kid_fmnist_${samplerLabel(steps)}`]: 0.1 };
      },
    } as unknown as SampleEvaluator;
  }

  // batch 4: an evaluation every iteration (0.004 kimg), so the second one is at twice the images of the first
  const patch = { iters: 6, evalEvery: 0.004, evalN: 1, plateauGain: 0.99 };

  it('finishes a run whose fd stopped improving: final grids, a checkpoint recording why, status finished; --resume still continues it', async () => {
    const dir = tmpDir();
    const dataset = tinyData();
    const info: string[] = [];
    const run = await launchRun(tinyRunSpec('pretrain', dir, patch), { dataset, evaluator: fakeEvaluator((fd) => fd - 0.125) });
    const result = await run.trainer.run({ onInfo: (line) => info.push(line) });
    run.dispose();
    // evaluations at 1 (nothing at half the images yet) and 2 iterations: 10 -> 9.875 gained 1.25% < 99%
    assert.equal(result.iteration, 2);
    assert.ok(result.iteration < patch.iters, 'stopped before cfg.iters');
    assert.equal(result.stopped, false, 'finished, not stopped');
    const newest = checkpointsNewestFirst(path.join(dir, 'checkpoints'))[0];
    assert.equal(path.basename(newest), 'ckpt-000000002.ckpt');
    const meta = readCheckpointMeta(newest);
    assert.equal(meta.iteration, 2);
    const plateau = meta.plateau as Record<string, number | string>;
    assert.deepEqual(plateau, { kimg: 0.008, fdHalf: 10, fdNow: 9.875, gain: 0.0125, metric: 'fd_fmnist_heun', threshold: 0.99 });
    assert.deepEqual(result.plateau, plateau);
    assert.ok(fs.existsSync(path.join(dir, 'samples', 'final-heun.png')), 'the final grid is written');
    assert.match(info[info.length - 1], /^plateau: fd_fmnist_heun 9\.875 at 0\.008 kimg vs 10 at 0\.004 kimg: doubling the images gained 1\.25% < 99%: the run is finished$/);
    const { rows } = readMetrics(path.join(dir, 'metrics.csv'));
    assert.deepEqual(rows.map((r) => Number(r.iter)), [1, 2], 'metrics.csv ends at that iteration');
    assert.deepEqual(rows.map((r) => Number(r.fd_fmnist_heun)), [10, 9.875]);
    assert.ok(rows[1].loss !== '' && rows[1].wall_s !== '', 'its last row has the training columns');
    assert.deepEqual(runStatus(dir), { state: 'finished', iteration: 2 });
    // ensureRun reuses it rather than resuming it
    const outcome = await ensureRun(tinyRunSpec('pretrain', dir, patch), {}, async () => assert.fail('a finished run is not trained again'));
    assert.equal(outcome.reused, true);
    // continued by hand, it trains on: the rule is checked again at the next evaluation (3 iterations: 9.75 against 10 and 9.875)
    const resumed = await launchRun(tinyRunSpec('pretrain', dir, patch, { resume: true }), { dataset, evaluator: fakeEvaluator((fd) => fd - 0.125, 9.75) });
    assert.equal(resumed.trainer.iteration, 2);
    const again = await resumed.trainer.run();
    resumed.dispose();
    assert.equal(again.iteration, 3);
    assert.equal(again.plateau?.kimg, 0.012);
    assert.deepEqual(readMetrics(path.join(dir, 'metrics.csv')).rows.map((r) => Number(r.iter)), [1, 2, 3]);
  });

  it('trains on to its iterations while each doubling improves the fd enough, and reports the checks', async () => {
    const dir = tmpDir();
    const info: string[] = [];
    // the fd halves at each evaluation: every doubling gains far more than 10%
    const run = await launchRun(tinyRunSpec('pretrain', dir, { ...patch, plateauGain: 0.1 }), { dataset: tinyData(), evaluator: fakeEvaluator((fd) => fd / 2) });
    const result = await run.trainer.run({ onInfo: (line) => info.push(line) });
    run.dispose();
    assert.deepEqual([result.iteration, result.plateau], [patch.iters, null]);
    assert.equal(readCheckpointMeta(checkpointsNewestFirst(path.join(dir, 'checkpoints'))[0]).plateau, undefined);
    assert.ok(info.some((line) => /^plateau: fd_fmnist_heun .*: doubling the images gained [\d.]+% >= 10%: training on$/.test(line)), info.join('\n'));
    assert.deepEqual(runStatus(dir), { state: 'finished', iteration: patch.iters });
  });
});
