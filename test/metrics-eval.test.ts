/**
 * End to end: a tiny Fashion-MNIST run is evaluated by `ect eval` and during training; metric columns land in
 * metrics.csv, and `ect eval` of checkpoint N gives exactly the numbers of the run's own evaluation at N.
 */
import { VALIDATION_SAMPLE_SEED } from '../lib/config/defaults';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import Papa from 'papaparse';
import { evalCommand } from '../cli/commands/metrics';
import { loadDataset } from '../lib/data';
import { createRunEvaluator, type SampleEvaluator } from '../lib/metrics/evaluate';
import { launchRun } from '../lib/train/launch';
import { checkpointPath } from '../lib/train/checkpoint';
import { Trainer } from '../lib/train/trainer';
import { readMetrics } from '../lib/train/metrics-log';
import { LOCK_FILE } from '../lib/runs/folder';
import { TINY_NET, requireSystemPart, tinyRunConfig, tinyRunSpec } from './helpers';
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

  it('writes metric columns into metrics.csv when the trainer evaluates every K kimg; `ect eval` of checkpoint N equals row N', async () => {
    const runDir = path.join(dir, 'run-eval');
    // a class-conditional model: its evaluation classes are drawn per image from the evaluation seed, so they agree too
    const patch = { data: { name: 'fashion-mnist', flip: false, limit: 16 }, net: { ...FMNIST_NET, labelDim: 10 }, batch: 2, iters: 2, ckptEvery: 1, logEvery: 1, evalEvery: 0.002, evalN: 20 };
    const spec = tinyRunSpec('tune', runDir, patch, { fromScratch: true, backend: 'wasm' }); // batch 2: an evaluation every iteration
    const evaluator = await createRunEvaluator(tinyRunConfig('tune', patch), { cacheDir, ...QUICK_REFERENCE, batch: 10 });
    assert.ok(evaluator);
    // the values the run computed, before metrics.csv rounds them to 7 digits
    const inRun: Array<Record<string, number>> = [];
    const recording: Pick<SampleEvaluator, 'evaluate'> = {
      evaluate: async (model, steps, opts) => {
        const columns = await evaluator.evaluate(model, steps, opts);
        inRun.push(columns);
        return columns;
      },
    };
    const run = await launchRun(spec, { evaluator: recording as SampleEvaluator });
    await run.trainer.run({});
    run.dispose();
    // the evaluator declares the columns it writes (lib/metrics/columns.ts, which the results tables read)
    assert.deepEqual(Object.keys(inRun[0]), evaluator.columns('1step'));
    evaluator.dispose();
    const { header, rows } = readMetrics(path.join(runDir, 'metrics.csv'));
    for (const label of ['1step', '2step']) {
      assert.ok(header.includes(`fd_fmnist_${label}`), header.join(','));
      assert.ok(rows.some((row) => Number(row[`fd_fmnist_${label}`]) > 0), JSON.stringify(rows));
    }
    // iteration 1 was evaluated with 1 and 2 steps (inRun[0], inRun[1]) on the run's evalSeed, validation latents; its checkpoint is still there
    assert.equal(inRun.length, 4);
    for (const [steps, expected] of [['1', inRun[0]], ['2', inRun[1]]] as const) {
      const metrics = await evalCommand({
        checkpoint: checkpointPath(path.join(runDir, 'checkpoints'), 1), steps, n: 20, batch: 10, seed: VALIDATION_SAMPLE_SEED, cacheDir, ...QUICK_REFERENCE,
        append: false, backend: 'wasm', progress: false,
      }, () => {});
      assert.deepEqual(metrics, expected, `ect eval --steps ${steps} of checkpoint 1 against the run's own evaluation at 1`);
      for (const [column, value] of Object.entries(expected)) {
        assert.equal(Number(rows[0][column]), Number(value.toPrecision(7)), `metrics.csv row 1, ${column}`);
      }
    }
  });
  it('--table keeps each evaluation with what it was; --mid-t changes the 2-step sampler and needs --no-append', async () => {
    const runDir = path.join(dir, 'run');   // the first test's run
    const table = path.join(dir, 'evaluations.csv');
    const base = { checkpoint: runDir, steps: '2', n: 20, batch: 20, seed: 0, cacheDir, ...QUICK_REFERENCE, backend: 'wasm', progress: false };
    await assert.rejects(evalCommand({ ...base, append: true, midT: [1.5] }, () => {}), /--mid-t 1.5: the run's 2step columns in metrics.csv are for its own ect.midT \(0.821\); add --no-append/);
    await assert.rejects(evalCommand({ ...base, steps: '1', append: false, midT: [1.5] }, () => {}), /only 2-step sampling has an intermediate time/);
    const own = await evalCommand({ ...base, append: false, table }, () => {});
    const other = await evalCommand({ ...base, append: false, table, midT: [1.5] }, () => {});
    assert.notEqual(own.fd_fmnist_2step, other.fd_fmnist_2step, 'another intermediate time draws other images');
    const rows = Papa.parse<Record<string, string>>(fs.readFileSync(table, 'utf8'), { header: true, skipEmptyLines: true }).data;
    assert.equal(rows.length, 2);
    assert.deepEqual(rows.map((r) => r.mid_t), ['0.821', '1.5']);
    for (const row of rows) {
      assert.equal(row.sampler, '2step');
      assert.equal(row.n, '20');
      assert.equal(row.reference, 'fashion-mnist-test-first300');
      assert.equal(row.features, 'fmnist');
      assert.ok(!path.isAbsolute(row.checkpoint) && row.checkpoint.endsWith('ckpt-000000001.ckpt'), row.checkpoint);
      assert.ok(Number(row.seconds) > 0);
    }
    assert.equal(Number(rows[1].fd_fmnist_2step), Number(other.fd_fmnist_2step.toPrecision(7)));
  });

  it('refuses before the work to append to a run another process holds, or to a --table it cannot write; holds the lock while appending', async () => {
    const runDir = path.join(dir, 'run');   // the first test's run
    const metricsFile = path.join(runDir, 'metrics.csv');
    const lockFile = path.join(runDir, LOCK_FILE);
    const base = { checkpoint: runDir, steps: '1', n: 20, batch: 20, seed: 0, cacheDir, ...QUICK_REFERENCE, backend: 'wasm', progress: false };
    const before = fs.readFileSync(metricsFile, 'utf8');
    const rowsBefore = readMetrics(metricsFile).rows.length;
    const lines: string[] = [];
    // a live process of this machine (the one that started mocha) holds the run, as a training run would
    fs.writeFileSync(lockFile, JSON.stringify({ pid: process.ppid, host: os.hostname(), started: new Date().toISOString(), command: 'ect tune --out run' }));
    try {
      await assert.rejects(evalCommand({ ...base, append: true }, (line) => lines.push(line)),
        new RegExp(`cannot append to ${metricsFile}: ${runDir} is in use by pid ${process.ppid} .*ect tune --out run.*--no-append`));
    } finally {
      fs.rmSync(lockFile);
    }
    const missing = path.join(dir, 'no-such-folder', 'evaluations.csv');
    await assert.rejects(evalCommand({ ...base, append: false, table: missing }, (line) => lines.push(line)),
      new RegExp(`cannot write ${missing}: its folder does not exist`));
    assert.ok(!lines.some((line) => line.startsWith('evaluating')), `refused after the work: ${lines.join('\n')}`);
    assert.equal(fs.readFileSync(metricsFile, 'utf8'), before);
    // appending: the lock is this process's during the work and released after it
    let holder: unknown;
    await evalCommand({ ...base, append: true }, (line) => { if (line.startsWith('evaluating')) holder = JSON.parse(fs.readFileSync(lockFile, 'utf8')).pid; });
    assert.equal(holder, process.pid);
    assert.ok(!fs.existsSync(lockFile));
    assert.equal(readMetrics(metricsFile).rows.length, rowsBefore + 1);
  });
});
