/**
 * A run under stress: NaN losses and NaN weights, Ctrl-C / SIGTERM and resume, two writers on one
 * folder, a killed npm parent, stale locks and left-over temporary files, checkpoints of another network, and
 * bad options. Most cases run the real `ect` command and check its exit status and its message.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { launchRun } from '../lib/train/launch';
import type { Trainer } from '../lib/train/trainer';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import {
  checkpointPath, checkpointProblem, disposeCheckpoint, latestCheckpoint, loadCheckpoint, saveCheckpoint,
} from '../lib/train/checkpoint';
import { acquireRunLock } from '../lib/runs/lock';
import { LOCK_FILE } from '../lib/runs/folder';
import { readMetrics } from '../lib/train/metrics-log';
import { tinyRunSpec, useTestBackend } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'ect.js');
const ENV = { ...process.env, ECT_BACKEND: process.env.ECT_TEST_BACKEND ?? '' };
// a 45k-parameter network at 28x28 on the synthetic shapes: tens of milliseconds a step
const TINY = ['--data', 'synthetic', '--batch', '4', '--no-progress', '--set', 'edm.heunSteps=2', '--set', 'net.modelChannels=8'];
const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ect-safety-'));

/** Runs `ect` to its end. */
function ect(...args: string[]): { status: number; out: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: ENV, timeout: 240000 });
  return { status: result.status ?? -1, out: `${result.stdout}${result.stderr}` };
}

/** A running `ect`, its output collected. */
function start(...args: string[]): { child: ChildProcess; output(): string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: ENV });
  let text = '';
  child.stdout!.on('data', (d) => { text += d; });
  child.stderr!.on('data', (d) => { text += d; });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => text, exit };
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 120000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Rows logged in a run's metrics.csv so far. */
function loggedRows(runDir: string): number {
  try {
    return readMetrics(path.join(runDir, 'metrics.csv')).rows.length;
  } catch {
    return 0;
  }
}

/** A pid no process has any more. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid!;
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Copies a checkpoint with one value of one tensor replaced by NaN; returns the tensor's label. */
function writeWithNaN(from: string, to: string, group: string): string {
  const ckpt = loadCheckpoint(from);
  const [name, tensor] = [...ckpt.groups[group]].find(([, t]) => t.size > 1)!;
  const values = tensor.dataSync().slice();
  values[1] = NaN;
  ckpt.groups[group].set(name, tf.tensor(values, tensor.shape, 'float32'));
  saveCheckpoint(to, ckpt);
  tensor.dispose();
  disposeCheckpoint(ckpt);
  return `${group}/${name}`;
}

/** The groups of two checkpoints are equal bit for bit. */
function assertSameCheckpoint(a: string, b: string): void {
  const [x, y] = [loadCheckpoint(a), loadCheckpoint(b)];
  try {
    for (const group of ['params', 'ema', 'optimizer']) {
      for (const [name, tensor] of x.groups[group]) {
        assert.deepEqual(Array.from(y.groups[group].get(name)!.dataSync()), Array.from(tensor.dataSync()), `${group}/${name} differs`);
      }
    }
  } finally {
    disposeCheckpoint(x);
    disposeCheckpoint(y);
  }
}

/** Makes the loss of the given iterations NaN (and so its gradients): a batch that overflows. */
function poisonLoss(trainer: Trainer, iterations: (iteration: number) => boolean): void {
  const loss = trainer.loss;
  const prepare = loss.prepare.bind(loss);
  loss.prepare = (net, x0, ctx) => {
    const step = prepare(net, x0, ctx);
    if (iterations(ctx.iteration)) {
      const clean = step.loss.bind(step);
      step.loss = () => tf.mul(clean(), NaN) as tf.Scalar;
    }
    return step;
  };
}

describe('run safety', function () {
  this.timeout(600000);
  let teacher: string;   // a 2-iteration width-8 EDM teacher of the CLI cases

  before(async () => {
    await useTestBackend();
    teacher = path.join(tmpDir(), 'teacher');
    const made = ect('pretrain', '--config', 'fmnist-edm-tiny', '--iters', '2', '--out', teacher, ...TINY);
    assert.equal(made.status, 0, made.out);
  });

  describe('non-finite losses and weights', () => {
    const tinyData = () => makeSyntheticDataset('train', { count: 32, height: 8, width: 8, channels: 1, seed: 1 });

    it('stops at a NaN loss by default: names the iteration, the loss and the cause; the last good checkpoint stays the newest', async () => {
      const dir = tmpDir();
      // eager steps: the NaN is injected into loss.prepare, which a replayed step does not call (test/step-replay.test.ts has its own)
      const run = await launchRun(tinyRunSpec('pretrain', dir, { iters: 8, ckptEvery: 2 }, { stepReplay: false }), { dataset: tinyData() });
      poisonLoss(run.trainer, (i) => i === 5);  // the 6th step
      await assert.rejects(run.trainer.run(), (err: Error) => {
        assert.match(err.message, /^iteration 6: the loss is NaN; no weight was changed, and the run stops\. Likely cause: /);
        assert.ok(err.message.includes(checkpointPath(path.join(dir, 'checkpoints'), 4)), err.message);
        assert.match(err.message, /--on-non-finite skip/);
        return true;
      });
      run.dispose();
      assert.equal(latestCheckpoint(path.join(dir, 'checkpoints')), checkpointPath(path.join(dir, 'checkpoints'), 4));
      assert.equal(checkpointProblem(checkpointPath(path.join(dir, 'checkpoints'), 4)), null);
      assert.deepEqual(readMetrics(path.join(dir, 'metrics.csv')).rows.map((r) => Number(r.iter)), [1, 2, 3, 4, 5], 'no row for the NaN step');
      assert.ok(!fs.existsSync(path.join(dir, LOCK_FILE)), 'the lock is released');
    });

    it('--on-non-finite skip: skips a bad batch without touching the weights, counts skips in metrics.csv, and stops when every batch is bad', async () => {
      const dir = tmpDir();
      const run = await launchRun(tinyRunSpec('pretrain', dir, { iters: 8, onNonFinite: 'skip' }, { stepReplay: false }), { dataset: tinyData() });
      poisonLoss(run.trainer, (i) => i === 2 || i === 3);  // steps 3 and 4
      const weightsAfter: Record<number, number[]> = {};
      const someParam = [...run.trainer.net.params.values()][0];
      const result = await run.trainer.run({ onStep: (s) => { weightsAfter[s.iteration] = Array.from(someParam.dataSync()); } });
      assert.equal(result.iteration, 8);
      assert.deepEqual(weightsAfter[4], weightsAfter[2], 'two skipped steps changed a weight');
      assert.notDeepEqual(weightsAfter[5], weightsAfter[4]);
      const { rows } = readMetrics(path.join(dir, 'metrics.csv'));
      assert.deepEqual(rows.map((r) => r.skipped), ['0', '0', '1', '2', '2', '2', '2', '2']);
      assert.deepEqual(rows.map((r) => r.loss === 'NaN'), [false, false, true, true, false, false, false, false], 'a NaN loss is written as NaN');
      run.dispose();

      const broken = await launchRun(tinyRunSpec('pretrain', tmpDir(), { iters: 30, onNonFinite: 'skip' }, { stepReplay: false }), { dataset: tinyData() });
      poisonLoss(broken.trainer, (i) => i >= 3);
      await assert.rejects(broken.trainer.run(), /iteration 13: the loss is NaN; the last 10 batches were all non-finite.*Likely cause: every batch fails/);
      broken.dispose();
    });

    it('ect tune --lr 1e4 diverges and exits non-zero with the iteration, the loss and the learning rate', () => {
      const out = path.join(tmpDir(), 'run');
      const run = ect('tune', '--config', 'fmnist-ect-tiny', '--init', teacher, '--out', out, '--iters', '30', '--lr', '1e4', ...TINY);
      assert.equal(run.status, 1, run.out);
      assert.match(run.out, /ect: iteration \d+: the loss is (NaN|Infinity)/);
      assert.match(run.out, /the loss diverged .*: the learning rate \(optimizer\.lr = 10000\) is likely too high/);
      assert.doesNotMatch(run.out, /^done/m);
    });

    it('refuses a checkpoint with a NaN weight for --init and for ect sample, naming the tensor; --resume skips it for an older one', () => {
      const dir = tmpDir();
      const poisoned = path.join(dir, 'poisoned.ckpt');
      const label = writeWithNaN(latestCheckpoint(path.join(teacher, 'checkpoints'))!, poisoned, 'ema');
      const tensorNamed = new RegExp(`checkpoint ${poisoned.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor ${label.replace(/\./g, '\\.')} holds 1 NaN or infinite value`);
      const init = ect('tune', '--config', 'fmnist-ect-tiny', '--init', poisoned, '--out', path.join(dir, 'tune'), '--iters', '2', ...TINY);
      assert.equal(init.status, 1, init.out);
      assert.match(init.out, tensorNamed);
      const sample = ect('sample', '--checkpoint', poisoned, '--n', '4', '--out', path.join(dir, 'grid.png'));
      assert.equal(sample.status, 1, sample.out);
      assert.match(sample.out, tensorNamed);
      assert.ok(!fs.existsSync(path.join(dir, 'grid.png')));

      // a run whose two newest checkpoints are unusable: one cut short, one with a NaN weight
      const run = path.join(dir, 'run');
      assert.equal(ect('tune', '--config', 'fmnist-ect-tiny', '--init', teacher, '--out', run, '--iters', '2', '--ckpt-every', '1', ...TINY).status, 0);
      const checkpoints = path.join(run, 'checkpoints');
      writeWithNaN(checkpointPath(checkpoints, 2), checkpointPath(checkpoints, 3), 'params');
      fs.copyFileSync(checkpointPath(checkpoints, 2), checkpointPath(checkpoints, 4));
      fs.truncateSync(checkpointPath(checkpoints, 4), fs.statSync(checkpointPath(checkpoints, 4)).size - 1000);
      const resumed = ect('tune', '--resume', '--out', run, '--iters', '5', ...TINY);
      assert.equal(resumed.status, 0, resumed.out);
      assert.match(resumed.out, /--resume: skipping checkpoint \S+ckpt-000000004\.ckpt is truncated .*set it aside as ckpt-000000004\.ckpt\.rejected/);
      assert.match(resumed.out, /--resume: skipping checkpoint \S+ckpt-000000003\.ckpt: tensor params\/\S+ holds 1 NaN/);
      assert.match(resumed.out, /resuming at 2/);
      assert.ok(fs.existsSync(checkpointPath(checkpoints, 5)));
    });
  });

  describe('signals, locks and parents', () => {
    it('Ctrl-C checkpoints and exits 130, a second writer is refused meanwhile, and the resumed run equals an uninterrupted one; SIGTERM exits 143', async () => {
      const dir = tmpDir();
      // enough steps that the run cannot finish while the test checks the lock (it is also paused meanwhile)
      const iters = 200;
      const run = (name: string, ...more: string[]) => ['tune', '--config', 'fmnist-ect-tiny', '--init', teacher, '--out', path.join(dir, name), '--iters', String(iters), '--log-every', '1', '--ckpt-every', '25', ...TINY, ...more];
      const full = ect(...run('full'));
      assert.equal(full.status, 0, full.out);

      const parts = path.join(dir, 'parts');
      const first = start(...run('parts'));
      await waitFor(() => loggedRows(parts) >= 5, 'five logged steps');
      // paused (SIGSTOP) while the second writers are tried: a fast machine would otherwise finish the run first
      first.child.kill('SIGSTOP');
      const lock = JSON.parse(fs.readFileSync(path.join(parts, LOCK_FILE), 'utf8')) as { pid: number; host: string; command: string };
      assert.deepEqual([lock.pid, lock.host], [first.child.pid, os.hostname()]);
      assert.match(lock.command, /tune --config fmnist-ect-tiny/);
      for (const second of [ect(...run('parts')), ect('tune', '--resume', '--out', parts, ...TINY)]) {
        assert.equal(second.status, 1, second.out);
        assert.match(second.out, new RegExp(`${parts} is in use by pid ${first.child.pid} on ${os.hostname()} .*two runs cannot write one folder`));
      }
      first.child.kill('SIGINT');  // pending until the run continues
      first.child.kill('SIGCONT');
      assert.equal(await first.exit, 130, first.output());
      assert.match(first.output(), /SIGINT: stopping after this step and writing a checkpoint/);
      const stoppedAt = Number(/stopped at iteration (\d+); resume with --resume/.exec(first.output())![1]);
      assert.ok(stoppedAt >= 5 && stoppedAt < iters, first.output());
      assert.equal(latestCheckpoint(path.join(parts, 'checkpoints')), checkpointPath(path.join(parts, 'checkpoints'), stoppedAt));
      assert.ok(!fs.existsSync(path.join(parts, LOCK_FILE)), 'the lock is released');

      const resumed = ect('tune', '--resume', '--out', parts, ...TINY);
      assert.equal(resumed.status, 0, resumed.out);
      assertSameCheckpoint(checkpointPath(path.join(dir, 'full', 'checkpoints'), iters), checkpointPath(path.join(parts, 'checkpoints'), iters));
      const losses = (name: string) => readMetrics(path.join(dir, name, 'metrics.csv')).rows.map((r) => [r.iter, r.loss]);
      assert.deepEqual(losses('parts'), losses('full'));

      const again = start('tune', '--resume', '--out', parts, '--iters', String(100 * iters), ...TINY);
      await waitFor(() => loggedRows(parts) >= iters + 5, 'five more logged steps');
      again.child.kill('SIGTERM');
      assert.equal(await again.exit, 143, again.output());
      assert.match(again.output(), /SIGTERM: stopping after this step and writing a checkpoint[\s\S]*stopped at iteration \d+/);
    });

    it('a second Ctrl-C quits at once with 130', async () => {
      const script = `const { watchStopRequests } = require(${JSON.stringify(path.join(ROOT, 'dist', 'cli', 'stop-requests.js'))});
        watchStopRequests(console.log); console.log('ready'); setInterval(() => {}, 1000);`;
      const child = spawn(process.execPath, ['-e', script]);
      let text = '';
      child.stdout.on('data', (d) => { text += d; });
      const exit = new Promise<number | null>((resolve) => child.on('exit', resolve));
      await waitFor(() => text.includes('ready'), 'the listener');
      child.kill('SIGINT');
      await waitFor(() => text.includes('stopping after this step'), 'the first Ctrl-C');
      child.kill('SIGINT');
      assert.equal(await exit, 130);
      assert.match(text, /SIGINT again: quitting at once, without a checkpoint/);
    });

    it('does not outlive an npm parent that is killed: it checkpoints and exits', async function () {
      if (spawnSync('npm', ['--version']).status !== 0) this.skip();
      const dir = tmpDir();
      const out = path.join(dir, 'run');
      const log = path.join(dir, 'log.txt');
      const fd = fs.openSync(log, 'w');
      // as `npx ect` runs it: npm -> sh -c -> node; the shell also records the exit status of ect
      const command = [process.execPath, BIN, 'tune', '--config', 'fmnist-ect-tiny', '--init', teacher, '--out', out, '--iters', '100000', '--log-every', '1', ...TINY]
        .map((a) => `'${a}'`).join(' ');
      const npm = spawn('npm', ['exec', '--', 'sh', '-c', `${command}; echo "exit status $?"`], { cwd: ROOT, env: ENV, stdio: ['ignore', fd, fd] });
      fs.closeSync(fd);
      await waitFor(() => loggedRows(out) >= 3, 'three logged steps');
      const trainer = (JSON.parse(fs.readFileSync(path.join(out, LOCK_FILE), 'utf8')) as { pid: number }).pid;
      npm.kill('SIGKILL');
      await waitFor(() => !running(trainer), 'the trainer to exit', 60000);
      await waitFor(() => fs.readFileSync(log, 'utf8').includes('exit status'), 'its exit status', 10000);
      const text = fs.readFileSync(log, 'utf8');
      assert.match(text, new RegExp(`the npm process that started this one \\(pid ${npm.pid}\\) is gone: stopping after this step and writing a checkpoint`));
      assert.match(text, /stopped at iteration \d+; resume with --resume/);
      assert.match(text, /exit status 129/);
      assert.ok(latestCheckpoint(path.join(out, 'checkpoints')), 'a checkpoint was written');
      assert.ok(!fs.existsSync(path.join(out, LOCK_FILE)), 'the lock is released');
    });

    it('takes over a stale lock and removes left-over temporary files; refuses a lock of another host', () => {
      const out = path.join(tmpDir(), 'run');
      assert.equal(ect('tune', '--config', 'fmnist-ect-tiny', '--init', teacher, '--out', out, '--iters', '2', ...TINY).status, 0);
      const dead = deadPid();
      fs.writeFileSync(path.join(out, LOCK_FILE), JSON.stringify({ pid: dead, host: os.hostname(), started: '2026-01-01T00:00:00.000Z', command: 'ect.js tune (killed)' }));
      const leftovers = [path.join(out, 'checkpoints', `ckpt-000000003.ckpt.tmp-${dead}`), path.join(out, `metrics.csv.tmp-${dead}`)];
      for (const file of leftovers) fs.writeFileSync(file, Buffer.alloc(1 << 20));
      const resumed = ect('tune', '--resume', '--out', out, '--iters', '3', ...TINY);
      assert.equal(resumed.status, 0, resumed.out);
      assert.match(resumed.out, new RegExp(`taking over the lock of pid ${dead} on ${os.hostname()} \\(ect\\.js tune \\(killed\\), since 2026-01-01T00:00:00\\.000Z\\): that process is gone`));
      assert.match(resumed.out, /removed 2 temporary file\(s\) of killed writers \(2\.1 MB\): .*ckpt-000000003\.ckpt\.tmp-/);
      for (const file of leftovers) assert.ok(!fs.existsSync(file), file);
      assert.ok(!fs.existsSync(path.join(out, LOCK_FILE)));

      const lockFile = path.join(out, LOCK_FILE);
      fs.writeFileSync(lockFile, JSON.stringify({ pid: 1, host: 'elsewhere.example', started: '2026-01-01T00:00:00.000Z', command: 'ect.js tune' }));
      const refused = ect('tune', '--resume', '--out', out, '--iters', '4', ...TINY);
      assert.equal(refused.status, 1, refused.out);
      assert.match(refused.out, new RegExp(`in use by pid 1 on elsewhere\\.example .*cannot tell whether that process still runs\\. If you are sure it does not, delete ${lockFile}`));
      assert.throws(() => acquireRunLock(out, 'test'), /elsewhere\.example/);
      fs.rmSync(lockFile);
      acquireRunLock(out, 'test').release();
    });
  });

  describe('checkpoints of another network', () => {
    it('--init refuses flags its checkpoint cannot honour, naming the field and where it was set; the preset\'s network yields', () => {
      const dir = tmpDir();
      const wider = ect('tune', '--config', 'fmnist-ect-tiny', '--init', teacher, '--out', path.join(dir, 'a'), '--iters', '2', ...TINY, '--set', 'net.modelChannels=16');
      assert.equal(wider.status, 1, wider.out);
      assert.match(wider.out, /ect: --set net\.modelChannels=16: net\.modelChannels 16 \(the --init checkpoint \S+ has 8\): a tuning run keeps the architecture of the model it starts from/);
      assert.ok(!fs.existsSync(path.join(dir, 'a')), 'a launch that failed leaves no folder');
      // the preset's network (fmnist-tiny: 16 channels) is the default for runs without --init: the teacher's replaces it
      const preset = ect('tune', '--config', 'fmnist-ect-tiny', '--init', teacher, '--out', path.join(dir, 'b'), '--iters', '2', '--data', 'synthetic', '--batch', '4');
      assert.equal(preset.status, 0, preset.out);
      const recorded = JSON.parse(fs.readFileSync(path.join(dir, 'b', 'config.json'), 'utf8'));
      assert.equal(recorded.net.modelChannels, 8);
      assert.equal(recorded.net.dropout, 0.1, 'the dropout stays the tuning preset\'s own');
    });

    it('--resume refuses a checkpoint of another architecture, listing the fields, and an --init that is not the run\'s', () => {
      const out = path.join(tmpDir(), 'run');
      assert.equal(ect('tune', '--config', 'fmnist-ect-tiny', '--init', teacher, '--out', out, '--iters', '2', ...TINY).status, 0);
      const wider = ect('tune', '--resume', '--out', out, '--iters', '4', ...TINY, '--set', 'net.modelChannels=16', '--set', 'net.numBlocks=2');
      assert.equal(wider.status, 1, wider.out);
      assert.match(wider.out, /ckpt-000000002\.ckpt: the checkpoint does not match this config in net\.modelChannels \(checkpoint 8, this run 16\), net\.numBlocks \(checkpoint 1, this run 2\)/);
      // a width-16 run's folder holding this width-8 checkpoint
      const config = path.join(out, 'config.json');
      fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('"modelChannels": 8', '"modelChannels": 16'));
      const foreign = ect('tune', '--resume', '--out', out, '--iters', '4', '--data', 'synthetic', '--no-progress');
      assert.equal(foreign.status, 1, foreign.out);
      assert.match(foreign.out, /does not match this config in net\.modelChannels \(checkpoint 8, this run 16\)/);
      fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('"modelChannels": 16', '"modelChannels": 8'));
      const otherTeacher = ect('tune', '--resume', '--init', out, '--out', out, '--iters', '4', ...TINY);
      assert.equal(otherTeacher.status, 1, otherTeacher.out);
      assert.match(otherTeacher.out, new RegExp(`--init ${out}: the run in ${out} started from ${teacher}, and a resumed run continues from its own weights`));
      assert.doesNotMatch(fs.readFileSync(config, 'utf8'), new RegExp(`"init": "\\.\\./run"`), 'config.json keeps its teacher');
    });
  });

  describe('bad options', () => {
    it('rejects each bad option or config value at once, naming the flag or the file', () => {
      const dir = tmpDir();
      const file = path.join(dir, 'a-file');
      fs.writeFileSync(file, 'x');
      const pretrain = (...args: string[]) => ect('pretrain', '--config', 'fmnist-edm-tiny', '--out', path.join(dir, 'run'), ...TINY, ...args);
      const cases: Array<[{ status: number; out: string }, RegExp]> = [
        [pretrain('--set', 'edm.sigmaMin=100'), /--set edm\.sigmaMin=100: edm\.sigmaMin must be below edm\.sigmaMax \(80\), got 100/],
        [pretrain('--set', 'data.flip="yes"'), /--set data\.flip="yes": data\.flip must be true or false, got "yes"/],
        [pretrain('--set', 'evalEvery=-1'), /--set evalEvery=-1: evalEvery must be a number >= 0, got -1/],
        [pretrain('--eval-every', '-1'), /--eval-every must be a number >= 0, got '-1'/],
        [pretrain('--eval-every', 'soon'), /--eval-every must be a number >= 0, got 'soon'/],
        [pretrain('--iters', '0'), /--iters must be a positive integer, got '0'/],
        [pretrain('--batch', '0'), /--batch must be a positive integer, got '0'/],
        [pretrain('--on-non-finite', 'ignore'), /option '--on-non-finite <policy>' argument 'ignore' is invalid\. Allowed choices are stop, skip/],
        [ect('pretrain', '--config', 'fmnist-edm-tiny', '--out', file, ...TINY), new RegExp(`--out ${file}: ${file} is a file, not a folder`)],
        [ect('pretrain', '--config', 'fmnist-edm-tiny', '--out', path.join(file, 'run'), ...TINY), new RegExp(`--out ${file}/run: cannot create it, ${file} is a file`)],
        [ect('sample', '--checkpoint', teacher, '--batch', '0'), /--batch must be a positive integer, got '0'/],
        [ect('sample', '--checkpoint', teacher, '--n', '0'), /--n must be a positive integer, got '0'/],
        [ect('sample', '--checkpoint', teacher, '--steps', '3'), /--steps must be 1, 2 or heun, got '3'/],
        [ect('sample', '--checkpoint', teacher, '--steps', '2', '--mid-t', '100', '--out', path.join(dir, 'g.png')), /--mid-t 100: an intermediate time must be below the model's edm\.sigmaMax \(80\)/],
        [ect('sample', '--checkpoint', teacher, '--out', dir), new RegExp(`--out ${dir}: ${dir} is a folder; name a file`)],
      ];
      for (const [result, message] of cases) {
        assert.equal(result.status, 1, result.out);
        assert.match(result.out, message);
      }
      assert.ok(!fs.existsSync(path.join(dir, 'run')), 'no run folder was made');
    });

    it('names a cut-short config.json on resume', () => {
      const out = path.join(tmpDir(), 'run');
      assert.equal(ect('pretrain', '--config', 'fmnist-edm-tiny', '--out', out, '--iters', '2', ...TINY).status, 0);
      const config = path.join(out, 'config.json');
      fs.writeFileSync(config, fs.readFileSync(config, 'utf8').slice(0, 100));
      const resumed = ect('pretrain', '--resume', '--out', out, '--iters', '3', ...TINY);
      assert.equal(resumed.status, 1, resumed.out);
      assert.match(resumed.out, new RegExp(`ect: ${config}: not valid JSON \\(.*\\); if it was cut short, delete it: --resume then uses the config recorded in the checkpoint`));
    });

    it('names an --out this user cannot write', function () {
      const dir = tmpDir();
      fs.chmodSync(dir, 0o755);
      const readOnly = path.join(dir, 'read-only');
      fs.mkdirSync(readOnly, { mode: 0o555 });
      fs.chmodSync(readOnly, 0o555);
      // root writes anywhere: run the command as nobody when the tests run as root
      const asNobody = process.getuid?.() === 0;
      if (asNobody && spawnSync('setpriv', ['--version']).status !== 0) this.skip();
      const command = [process.execPath, BIN, 'pretrain', '--config', 'fmnist-edm-tiny', '--out', path.join(readOnly, 'run'), ...TINY];
      const result = asNobody
        ? spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...command], { encoding: 'utf8', env: ENV })
        : spawnSync(command[0], command.slice(1), { encoding: 'utf8', env: ENV });
      assert.equal(result.status, 1, `${result.stdout}${result.stderr}`);
      assert.match(`${result.stdout}${result.stderr}`, new RegExp(`--out ${readOnly}/run: cannot create it, ${readOnly} is not writable by this user \\(EACCES\\)`));
    });
  });
});
