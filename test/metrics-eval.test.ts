/** End to end: a tiny Fashion-MNIST run is evaluated by `ect eval` and during training; metric columns land in metrics.csv. */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { evalCommand } from '../cli/commands/metrics';
import { loadDataset } from '../lib/data';
import { createRunEvaluator } from '../lib/metrics/evaluate';
import { Trainer } from '../lib/train/trainer';
import { readMetrics } from '../lib/train/metrics-log';
import { TINY_NET, requireSystemPart, tinyRunConfig } from './helpers';
import { initBackend } from '../lib/backend/select';

const FMNIST_NET = { ...TINY_NET, resolution: 28, channelMult: [1, 2], attnResolutions: [] };
const QUICK_REFERENCE = { referenceSplit: 'test' as const, referenceLimit: 300 }; // a small reference keeps the test fast

describe('metrics: ect eval and evaluation during training', () => {
  let dir: string;
  let cacheDir: string;
  let previousBackend: string;
  before(async function () {
    requireSystemPart(this, 'dataset');
    previousBackend = tf.getBackend() ?? 'cpu';
    await initBackend('wasm'); // 28x28 convolutions train ~10x faster than on the plain cpu backend
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-eval-'));
    cacheDir = path.join(dir, 'cache');
  });
  after(async () => {
    if (!dir) return;  // skipped
    fs.rmSync(dir, { recursive: true, force: true });
    await tf.setBackend(previousBackend); // later test files expect the backend they had
  });

  // a tuning run samples with 1 and 2 steps (Heun's 35 network evaluations would dominate the test)
  const fmnistConfig = (patch: Record<string, unknown> = {}) => tinyRunConfig('tune', {
    data: { name: 'fashion-mnist', flip: false, limit: 16 }, net: FMNIST_NET, batch: 2, iters: 1, ckptEvery: 1, ...patch,
  });

  it('evaluates a checkpoint and appends a row with the fd_fmnist columns to the run\'s metrics.csv', async () => {
    const runDir = path.join(dir, 'run');
    const cfg = fmnistConfig();
    const trainer = await Trainer.create(cfg, { runDir, dataset: loadDataset(cfg.data, 'train') });
    await trainer.run({});
    trainer.dispose();
    const before = readMetrics(path.join(runDir, 'metrics.csv'));
    const lines: string[] = [];
    const metrics = await evalCommand({
      checkpoint: runDir, steps: '2', n: 40, batch: 20, seed: 0, cacheDir, ...QUICK_REFERENCE,
      append: true, backend: 'wasm', progress: false,
    }, (line) => lines.push(line));
    for (const column of ['fd_fmnist_2step', 'kid_fmnist_2step', 'kid_std_fmnist_2step', 'precision_fmnist_2step', 'recall_fmnist_2step']) {
      assert.ok(Number.isFinite(metrics[column]), `${column} = ${metrics[column]}`);
    }
    assert.ok(metrics.fd_fmnist_2step > 0, 'an untrained model is far from the data');
    assert.ok(lines.some((l) => /^fd_fmnist_2step\s+\d/.test(l)), lines.join('\n'));
    const after = readMetrics(path.join(runDir, 'metrics.csv'));
    assert.equal(after.rows.length, before.rows.length + 1);
    assert.ok(after.header.includes('fd_fmnist_2step'));
    const last = after.rows[after.rows.length - 1];
    assert.equal(Number(last.iter), 1);
    assert.ok(Math.abs(Number(last.fd_fmnist_2step) - metrics.fd_fmnist_2step) < 1e-4 * metrics.fd_fmnist_2step);
    assert.equal(after.rows[0].fd_fmnist_2step, '', 'rows without evaluation keep the column empty');
    assert.ok(!after.header.some((c) => c.startsWith('fid')), 'the classifier distance is never called FID');
  });

  it('writes metric columns into metrics.csv when the trainer evaluates every K kimg', async () => {
    const runDir = path.join(dir, 'run-eval');
    const cfg = fmnistConfig({ iters: 2, logEvery: 1, evalEvery: 0.002, evalN: 20 }); // batch 2: every iteration
    const evaluator = await createRunEvaluator(cfg, { cacheDir, ...QUICK_REFERENCE, batch: 20, kid: { subsets: 5 } });
    assert.ok(evaluator);
    const trainer = await Trainer.create(cfg, { runDir, dataset: loadDataset(cfg.data, 'train'), evaluator });
    await trainer.run({});
    trainer.dispose();
    evaluator.dispose();
    const { header, rows } = readMetrics(path.join(runDir, 'metrics.csv'));
    for (const label of ['1step', '2step']) {
      assert.ok(header.includes(`fd_fmnist_${label}`), header.join(','));
      assert.ok(rows.some((row) => Number(row[`fd_fmnist_${label}`]) > 0), JSON.stringify(rows));
    }
  });
});
