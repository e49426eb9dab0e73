/**
 * `ect ship-teacher`: a tiny Fashion-MNIST teacher shipped into a temp folder holds its EMA weights alone
 * and a complete, path-free teacher.json, and `ect tune --init`, `ect sample` and `ect export` read it; and every
 * teacher shipped in data/teachers still scores its recorded Heun fd_fmnist.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { exportCommand } from '../cli/commands/import-edm';
import { shipTeacherCommand, trimCheckpointCommand } from '../cli/commands/ship-teacher';
import { trainingFlops } from '../lib/nn/flops';
import { disposeCheckpoint, latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../lib/train/checkpoint';
import { launchRun, trainRun } from '../lib/train/launch';
import { readMetrics } from '../lib/train/metrics-log';
import { disposeModel, loadRunModel } from '../lib/runs/model';
import { SHIPPED_TEACHERS_DIR, shippedTeachers } from '../lib/teachers/shipped';
import { readTeacherRecord, shippedTeacherFolders, TEACHER_FILE, type TeacherRecord } from '../lib/teachers/record';
import { recheckTeacher } from '../lib/teachers/ship';
import { TINY_NET, requireSystemPart, tinyRunSpec, useTestBackend } from './helpers';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'ect.js');
const FMNIST_NET = { ...TINY_NET, resolution: 28, channelMult: [1, 2], attnResolutions: [] };
// a 28x28 pretraining run on 32 Fashion-MNIST images, its Heun sampler 5 network evaluations: seconds
const TINY_TEACHER = { data: { name: 'fashion-mnist', flip: false, limit: 32 }, net: FMNIST_NET, batch: 4, iters: 4, ckptEvery: 2, sampleEvery: 2 };
const RUN_COMMAND = 'node bin/ect.js pretrain --config fmnist-edm-tiny --out runs/mini';

/**
 * How far a teacher's Heun fd may move from its recorded value: 5%, relative. The evaluation noise is fixed (image
 * i's noise depends on the seed and i only) and the weights are the shipped ones, so only float rounding differs,
 * which varies between backends (oneDNN, wasm, cpu) and CPUs; at 300 images that moves fd by well under 1%.
 */
const FD_MARGIN = 0.05;

/** The shipping check: the teacher in `folder` scores its recorded check fd (same count, default noise, test images) within FD_MARGIN. */
export async function assertTeacherQuality(folder: string, cacheDir?: string): Promise<void> {
  const { recorded, measured } = await recheckTeacher(folder, { cacheDir });
  assert.equal(measured.metric, recorded.metric);
  assert.equal(measured.features, recorded.features);
  assert.equal(measured.reference.featureWeights, recorded.reference.featureWeights,
    `${folder}: the feature network's weights changed since the teacher was shipped; its recorded fd is not comparable (ship it again)`);
  const relative = Math.abs(measured.value - recorded.value) / recorded.value;
  assert.ok(relative <= FD_MARGIN, `${folder}: ${measured.metric} of ${measured.n} images ${measured.value.toPrecision(5)} on ${measured.backend}, ` +
    `recorded ${recorded.value.toPrecision(5)} on ${recorded.backend}: ${(100 * relative).toFixed(2)}% apart (margin ${100 * FD_MARGIN}%)`);
}

/** Every string in a JSON value, with its path. */
function strings(value: unknown, at = ''): Array<[string, string]> {
  if (typeof value === 'string') return [[at, value]];
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([key, inner]) => strings(inner, `${at}.${key}`));
  return [];
}

/** Runs `ect` to its end. */
function ect(...args: string[]): { status: number; out: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ECT_BACKEND: process.env.ECT_TEST_BACKEND ?? '' } });
  return { status: result.status ?? -1, out: `${result.stdout}${result.stderr}` };
}

describe('ect ship-teacher', function () {
  this.timeout(300000);
  let root: string;
  let runDir: string;
  let teachers: string;
  let cacheDir: string;
  let shipped: string;
  let record: TeacherRecord;
  const lines: string[] = [];
  before(async function () {
    requireSystemPart(this, 'dataset');
    await useTestBackend();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-ship-'));
    runDir = path.join(root, 'runs', 'mini');
    teachers = path.join(root, 'teachers');
    cacheDir = path.join(root, 'cache');
    await trainRun(tinyRunSpec('pretrain', runDir, TINY_TEACHER));
    ({ dir: shipped, record } = await shipTeacherCommand({
      run: runDir, name: 'mini', out: teachers, evalN: 60, checkN: 40, command: RUN_COMMAND, commit: 'ad30a99',
      cacheDir, backend: process.env.ECT_TEST_BACKEND, progress: false,
    }, (line) => lines.push(line)));
  });
  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('writes the config without init, the metrics, the newest Heun grid, an EMA-only checkpoint and teacher.json', () => {
    assert.equal(shipped, path.join(teachers, 'mini'));
    assert.deepEqual(shippedTeachers(teachers), ['mini'], 'no folder of the shipping is left behind');
    for (const file of ['config.json', 'metrics.csv', 'checkpoints/ckpt-000000004.ckpt', 'samples/final-heun.png', TEACHER_FILE]) {
      assert.ok(fs.existsSync(path.join(shipped, file)), file);
    }
    assert.deepEqual(fs.readdirSync(path.join(shipped, 'samples')), ['final-heun.png'], 'only the newest grid');
    const config = JSON.parse(fs.readFileSync(path.join(shipped, 'config.json'), 'utf8'));
    assert.equal(config.init, undefined);
    assert.equal(config.name, 'tiny-pretrain');
    assert.deepEqual(readMetrics(path.join(shipped, 'metrics.csv')).rows, readMetrics(path.join(runDir, 'metrics.csv')).rows);
    const ckpt = loadCheckpoint(path.join(shipped, 'checkpoints', 'ckpt-000000004.ckpt'));
    try {
      assert.deepEqual(Object.keys(ckpt.groups), ['ema'], 'no online weights, no optimiser state');
      assert.equal(ckpt.meta.iteration, 4);
      assert.equal((ckpt.meta.config as { init?: string }).init, undefined);
      const runCkpt = loadCheckpoint(path.join(runDir, 'checkpoints', 'ckpt-000000004.ckpt'));
      for (const [name, tensor] of ckpt.groups.ema) {
        assert.deepEqual(Array.from(tensor.dataSync()), Array.from(runCkpt.groups.ema.get(name)!.dataSync()), name);
      }
      disposeCheckpoint(runCkpt);
    } finally {
      disposeCheckpoint(ckpt);
    }
    const [shippedBytes, runBytes] = [path.join(shipped, 'checkpoints', 'ckpt-000000004.ckpt'), path.join(runDir, 'checkpoints', 'ckpt-000000004.ckpt')].map((f) => fs.statSync(f).size);
    assert.ok(shippedBytes < runBytes / 3, `${shippedBytes} bytes shipped, ${runBytes} in the run (params, ema and Adam's two moments)`);
  });

  it('records provenance, cost and both evaluations in teacher.json, with no absolute path', async () => {
    assert.deepEqual(readTeacherRecord(shipped), record);
    const model = await loadRunModel(shipped);
    try {
      assert.equal(record.parameters, model.net.paramCount());
      assert.equal(record.seed, model.config.seed);
      assert.equal(record.training.flops, trainingFlops(model.config, 16));
    } finally {
      disposeModel(model);
    }
    assert.equal(record.name, 'mini');
    assert.equal(record.run, 'mini', 'a run outside the repository is named by its folder alone');
    assert.equal(record.checkpoint, 'checkpoints/ckpt-000000004.ckpt');
    assert.equal(record.iteration, 4);
    assert.equal(record.kimg, 0.016);
    assert.equal(record.training.command, RUN_COMMAND);
    assert.equal(record.training.commit, 'ad30a99');
    assert.deepEqual(record.training.machine, { cpu: os.cpus()[0].model, cores: os.cpus().length });
    assert.equal(record.training.backend, tf.getBackend());
    assert.equal(record.training.images, 16);
    assert.ok(record.training.flops > 0 && record.training.wallSeconds! > 0);
    for (const [role, n] of [['headline', 60], ['check', 40]] as const) {
      const evaluation = record.evaluations[role];
      assert.equal(evaluation.n, n, role);
      assert.equal(evaluation.metric, 'fd_fmnist_heun');
      assert.ok(evaluation.value > 0 && Number.isFinite(evaluation.value), `${role}: ${evaluation.value}`);
      assert.equal(evaluation.metrics.fd_fmnist_heun, evaluation.value);
      assert.equal(evaluation.seed, 0);
      assert.equal(evaluation.networkEvaluations, 5);
      assert.deepEqual({ ...evaluation.reference, featureWeights: undefined }, { dataset: 'fashion-mnist', split: 'test', images: 10000, featureWeights: undefined });
      assert.match(evaluation.reference.featureWeights, /^[0-9a-f]{64}$/);
      assert.ok(evaluation.wallSeconds >= 0);
      assert.equal(evaluation.backend, tf.getBackend());
      assert.deepEqual(evaluation.machine, record.training.machine);
    }
    assert.equal(record.shipped.command, 'ect ship-teacher --run mini --name mini --eval-n 60 --check-n 40');
    assert.ok(record.shipped.commit && record.shipped.at);
    const text = JSON.stringify(record);
    for (const [at, value] of strings(record)) assert.ok(!path.isAbsolute(value) && !/^[A-Za-z]:[\\/]/.test(value), `${at}: ${value}`);
    for (const machinePath of [root, fs.realpathSync(root), os.homedir()]) assert.ok(!text.includes(machinePath), `teacher.json names ${machinePath}`);
    assert.ok(lines.some((l) => /fd_fmnist_heun \S+: 60 images/.test(l)), lines.join('\n'));
  });

  it('is what `ect tune --init <folder>` starts from: online and EMA weights equal the shipped EMA', async () => {
    const run = await launchRun(tinyRunSpec('tune', path.join(root, 'runs', 'tuned'), { data: TINY_TEACHER.data, net: FMNIST_NET }, { init: shipped }));
    const ckpt = loadCheckpoint(path.join(shipped, record.checkpoint));
    try {
      assert.deepEqual(run.start, { from: 'init', checkpoint: path.join(shipped, record.checkpoint) });
      for (const [name, tensor] of ckpt.groups.ema) {
        const expected = Array.from(tensor.dataSync());
        assert.deepEqual(Array.from(run.trainer.net.params.get(name)!.dataSync()), expected, `online ${name}`);
        assert.deepEqual(Array.from(run.trainer.ema.weights.get(name)!.dataSync()), expected, `ema ${name}`);
      }
    } finally {
      disposeCheckpoint(ckpt);
      run.dispose();
    }
  });

  it('is read by `ect sample` and `ect export` (its EMA weights; --weights params is refused)', async () => {
    const grid = path.join(root, 'grid.png');
    const sampled = ect('sample', '--checkpoint', shipped, '--steps', 'heun', '--n', '4', '--out', grid);
    assert.equal(sampled.status, 0, sampled.out);
    assert.ok(fs.statSync(grid).size > 0);
    const out = path.join(root, 'mini.safetensors');
    await exportCommand({ checkpoint: shipped, format: 'safetensors', out, weights: 'ema', backend: process.env.ECT_TEST_BACKEND }, () => {});
    assert.ok(fs.statSync(out).size > 4 * record.parameters);
    await assert.rejects(exportCommand({ checkpoint: shipped, format: 'safetensors', out, weights: 'params' }, () => {}), /holds the EMA weights alone/);
  });

  it('ect trim-checkpoint keeps a finished run\'s EMA weights alone: it still samples, and a resume says why it cannot', async () => {
    const copy = path.join(root, 'runs', 'trimmed');
    fs.cpSync(runDir, copy, { recursive: true });
    const original = loadCheckpoint(latestCheckpoint(path.join(copy, 'checkpoints'))!);
    const file = await trimCheckpointCommand({ checkpoint: copy }, () => {});
    const trimmed = loadCheckpoint(file);
    try {
      assert.deepEqual(Object.keys(trimmed.groups), ['ema']);
      assert.equal(trimmed.meta.iteration, original.meta.iteration);
      assert.equal(trimmed.meta.loader, undefined, 'no resume state');
      for (const [name, tensor] of original.groups.ema) assert.deepEqual(Array.from(trimmed.groups.ema.get(name)!.dataSync()), Array.from(tensor.dataSync()), name);
    } finally {
      disposeCheckpoint(original);
      disposeCheckpoint(trimmed);
    }
    const sampled = ect('sample', '--checkpoint', copy, '--steps', 'heun', '--n', '2', '--out', path.join(root, 'trimmed.png'));
    assert.equal(sampled.status, 0, sampled.out);
    const resumed = ect('pretrain', '--resume', '--out', copy, '--iters', String(Number(trimmed.meta.iteration) + 1), '--no-progress');
    assert.notEqual(resumed.status, 0);
    assert.match(resumed.out, /holds the EMA weights alone .* training cannot resume from it; start a new run from these weights with --init/);
  });

  it('ect trim-checkpoint refuses to trim an unfinished run in place, naming it; --out writes the trimmed copy elsewhere', async () => {
    const copy = path.join(root, 'runs', 'unfinished');
    fs.cpSync(runDir, copy, { recursive: true });
    const configFile = path.join(copy, 'config.json');
    const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    fs.writeFileSync(configFile, JSON.stringify({ ...config, iters: config.iters * 2 }));  // the run now has iterations to go
    const newest = latestCheckpoint(path.join(copy, 'checkpoints'))!;
    const before = fs.readFileSync(newest);
    await assert.rejects(trimCheckpointCommand({ checkpoint: copy }, () => {}),
      (err: Error) => err.message.startsWith(`${copy}: the run is not finished`) && /Finish the run first .*--resume.*, or write the trimmed copy elsewhere with --out/.test(err.message));
    assert.ok(fs.readFileSync(newest).equals(before), 'the checkpoint is left whole');
    const out = path.join(root, 'unfinished-ema.ckpt');
    assert.equal(await trimCheckpointCommand({ checkpoint: copy, out }, () => {}), out);
    assert.ok(fs.statSync(out).size < before.length);
    assert.ok(fs.readFileSync(newest).equals(before));
  });

  it('refuses a checkpoint with neither weights group, naming the file', async () => {
    const file = path.join(root, 'broken', 'checkpoints', 'ckpt-000000001.ckpt');
    const source = loadCheckpoint(path.join(shipped, record.checkpoint));
    saveCheckpoint(file, { meta: source.meta, groups: { optimizer: new Map([['step', tf.scalar(1)]]) } });
    disposeCheckpoint(source);
    await assert.rejects(loadRunModel(path.join(root, 'broken')), (err: Error) => err.message.includes(file) && /lacks the ema group/.test(err.message));
  });

  it('refuses an existing teacher, a run that records no command, and a tuning run, before any work', async () => {
    const ship = (flags: Record<string, unknown>) => shipTeacherCommand({ run: runDir, name: 'other', out: teachers, evalN: 1, checkN: 1, progress: false, ...flags } as never, () => {});
    await assert.rejects(ship({ name: 'mini', command: RUN_COMMAND, commit: 'ad30a99' }), /exists: a shipped teacher is not overwritten/);
    await assert.rejects(ship({ commit: 'ad30a99' }), /does not record the command that made the run: pass --command/);
    await assert.rejects(ship({ command: RUN_COMMAND, commit: 'not-a-sha' }), /not a git commit hash/);
    await assert.rejects(ship({ name: '../escape', command: RUN_COMMAND, commit: 'ad30a99' }), /a teacher's name is a folder name/);
    const tuned = path.join(root, 'runs', 'tune-like');
    const source = loadCheckpoint(path.join(shipped, record.checkpoint));
    saveCheckpoint(path.join(tuned, 'checkpoints', 'ckpt-000000004.ckpt'), { meta: { ...source.meta, config: { ...(source.meta.config as object), kind: 'tune' } }, groups: source.groups });
    disposeCheckpoint(source);
    await assert.rejects(ship({ run: tuned, command: RUN_COMMAND, commit: 'ad30a99' }), /a tune run; a teacher is a diffusion model/);
    assert.deepEqual(shippedTeachers(teachers), ['mini']);
  });

  it('documents every option in --help', () => {
    const help = ect('ship-teacher', '--help');
    assert.equal(help.status, 0);
    for (const flag of ['--run', '--name', '--out', '--eval-n', '--check-n', '--command', '--commit', '--cache-dir', '--backend', '--no-progress']) assert.ok(help.out.includes(flag), flag);
  });

  it(`scores its recorded check fd again within ${100 * FD_MARGIN}% (the quality check of data/teachers, on this teacher)`, async () => {
    await assertTeacherQuality(shipped, cacheDir);
  });
});

describe(`shipped teachers in data/teachers: Heun fd_fmnist at the recorded check count within ${100 * FD_MARGIN}% (relative) of the recorded value`, function () {
  // a 1.26M-parameter teacher at 300 images: about 25 s of Heun sampling on 2 cores, plus the test images' statistics once
  this.timeout(300000);
  const folders = shippedTeacherFolders();
  before(async function () {
    if (folders.length) requireSystemPart(this, 'dataset');
    await useTestBackend();
  });
  if (!folders.length) {
    it('(none shipped)', function () {
      console.log(`    skipped: no teacher with a ${TEACHER_FILE} in ${SHIPPED_TEACHERS_DIR} (ect ship-teacher writes one)`);
      this.skip();
    });
  }
  for (const folder of folders) {
    it(path.basename(folder), async () => { await assertTeacherQuality(folder); });
  }
});
