/**
 * Log-spaced in-run evaluations (config evalGrowth, --eval-growth): the schedule itself, the config and flag checks,
 * and a tiny run that evaluates at the budgets the schedule names, also across --resume.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CommanderError, type Command } from 'commander';
import { buildProgram } from '../cli/ect';
import { resolveRunConfig, parseOverride } from '../lib/config/resolve';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import type { SampleEvaluator } from '../lib/metrics/evaluate';
import { samplerLabel, type SampleSteps } from '../lib/sample';
import { evalBudgets, nextEvalKimg } from '../lib/train/eval-schedule';
import { launchRun } from '../lib/train/launch';
import { readMetrics } from '../lib/train/metrics-log';
import { tinyRunSpec, useTestBackend } from './helpers';

describe('evaluation schedule', () => {
  it('spaces budgets evenly at growth 1 and geometrically above it, strictly after the given kimg', () => {
    assert.deepEqual(evalBudgets(2, 1, 9), [2, 4, 6, 8]);
    assert.equal(nextEvalKimg(4, 2), 6, 'a budget already reached is not the next one');
    assert.equal(nextEvalKimg(0, 0), Infinity);
    assert.deepEqual(evalBudgets(1, 2, 64), [1, 2, 4, 8, 16, 32, 64]);
    const sqrt2 = evalBudgets(1, Math.SQRT2, 64);
    assert.equal(sqrt2.length, 13, sqrt2.join(' '));
    for (let i = 1; i < sqrt2.length; i++) assert.ok(Math.abs(sqrt2[i] / sqrt2[i - 1] - Math.SQRT2) < 1e-9);
    assert.equal(nextEvalKimg(0.5, 1, 2), 1);
    assert.equal(nextEvalKimg(4, 1, 2), 8, 'exactly at a budget, the next one is the following budget');
    assert.equal(nextEvalKimg(4.1, 1, 2), 8);
    assert.equal(nextEvalKimg(3.9999999999999, 1, 2), 8, 'rounding below a budget counts as reaching it');
    assert.throws(() => nextEvalKimg(1, 1, 0.5), /growth must be >= 1, got 0\.5/);
  });

  it('takes evalGrowth >= 1 from configs and --eval-growth, 1 by default', () => {
    assert.equal(resolveRunConfig('tune', 'fmnist-ect-tiny').evalGrowth, 1);
    assert.equal(resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride('evalGrowth=1.5')]).evalGrowth, 1.5);
    for (const bad of ['evalGrowth=0.9', 'evalGrowth="fast"']) {
      assert.throws(() => resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride(bad)]), /evalGrowth must be a number >= 1, got/, bad);
    }
    const command = buildProgram().commands.find((c) => c.name() === 'tune') as Command;
    assert.match(command.helpInformation().replace(/\s+/g, ' '), /--eval-growth <g> space evaluations geometrically/);
    command.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    assert.throws(() => command.parse(['--eval-growth', '0.5'], { from: 'user' }),
      (e: Error) => e instanceof CommanderError && e.message.includes("--eval-growth must be a number >= 1, got '0.5'"));
  });
});

describe('evaluation schedule: a training run', () => {
  before(useTestBackend);

  const evaluator = {
    evaluate: async (_model: unknown, steps: SampleSteps) => ({ [`fd_fmnist_${samplerLabel(steps)}`]: 1 }),
  } as unknown as SampleEvaluator;

  it('evaluates at evalEvery * growth^n kimg, and a resumed run keeps to the same budgets', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-eval-schedule-'));
    const dataset = makeSyntheticDataset('train', { count: 32, height: 8, width: 8, channels: 1, seed: 1 });
    // batch 4: 0.004 kimg per iteration; budgets 0.004 * 2^n kimg are iterations 1, 2, 4, 8, and the last (10)
    const patch = { iters: 10, evalEvery: 0.004, evalN: 1, evalGrowth: 2, ckptEvery: 3 };
    const first = await launchRun(tinyRunSpec('pretrain', dir, { ...patch, iters: 5 }), { dataset, evaluator });
    await first.trainer.run();
    first.dispose();
    const resumed = await launchRun(tinyRunSpec('pretrain', dir, patch, { resume: true }), { dataset, evaluator });
    assert.equal(resumed.trainer.iteration, 5);
    await resumed.trainer.run();
    resumed.dispose();
    const evaluated = readMetrics(path.join(dir, 'metrics.csv')).rows.filter((r) => r.fd_fmnist_heun !== undefined && r.fd_fmnist_heun !== '');
    // iteration 5 ended the first session at its cap; the schedule then goes on at 8 and at the run's end
    assert.deepEqual(evaluated.map((r) => Number(r.iter)), [1, 2, 4, 5, 8, 10]);
  });
});
