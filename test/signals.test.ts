/**
 * Signals honoured everywhere: a second Ctrl-C ends the process within a second even in the middle of a long step
 * (the terminal signals the whole process group), and a SIGTERM during the final grids is not swallowed: the run is
 * checkpointed, the rest of the grids skipped, and the command exits 143 saying so.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkpointPath } from '../lib/train/checkpoint';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'ect.js');
const ENV = { ...process.env, ECT_BACKEND: process.env.ECT_TEST_BACKEND ?? '' };
const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ect-signals-'));

/** A running `ect` in a process group of its own (as a terminal's foreground job is), its output collected. */
function startGroup(...args: string[]): { child: ChildProcess; output(): string; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: ENV, detached: true });
  let text = '';
  child.stdout!.on('data', (d) => { text += d; });
  child.stderr!.on('data', (d) => { text += d; });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  return { child, output: () => text, exit };
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 120000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('signals', function () {
  this.timeout(240000);

  it('a second Ctrl-C ends the process within a second in the middle of a step of many seconds', async () => {
    const out = path.join(tmpDir(), 'run');
    // a 64-channel network at batch 128 on 28x28 images: a step takes seconds on a CPU (batch 32 took 1.3 s on a 2-core
    // Zen 4, too close to the 0.7 s the test spends inside it); the run is killed within the first step, so the size
    // of the step costs the test nothing
    const run = startGroup('pretrain', '--config', 'fmnist-edm-tiny', '--data', 'synthetic', '--iters', '5', '--batch', '128', '--no-progress',
      '--set', 'net.modelChannels=64', '--out', out);
    try {
      await waitFor(() => /parameters, synthetic/.test(run.output()), 'the run to start');
      await new Promise((resolve) => setTimeout(resolve, 500));  // inside the first step
      process.kill(-run.child.pid!, 'SIGINT');  // Ctrl-C: the terminal signals the foreground group
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.doesNotMatch(run.output(), /iter 1\/5/, 'still in the first step (the test needs steps longer than a second)');
      const second = Date.now();
      process.kill(-run.child.pid!, 'SIGINT');
      const ended = await Promise.race([run.exit, new Promise<null>((resolve) => setTimeout(() => resolve(null), 5000))]);
      assert.ok(ended, `still running 5 s after the second Ctrl-C:\n${run.output()}`);
      assert.ok(ended.at - second < 1000, `ended ${ended.at - second} ms after the second Ctrl-C`);
      assert.match(run.output(), /SIGINT again: quitting at once, without a checkpoint/);
      assert.ok(!fs.existsSync(checkpointPath(path.join(out, 'checkpoints'), 1)), 'no checkpoint');
    } finally {
      try { process.kill(-run.child.pid!, 'SIGKILL'); } catch { /* ended */ }
    }
  });

  it('SIGTERM during the final grids: the run is checkpointed, the rest skipped, and the command exits 143 saying so', async () => {
    const out = path.join(tmpDir(), 'run');
    // the final Heun grid of 64 images at batch 2 with 40 steps: 32 batches, long enough to be signalled in
    const run = startGroup('pretrain', '--config', 'fmnist-edm-tiny', '--data', 'synthetic', '--iters', '2', '--batch', '2', '--no-progress',
      '--log-every', '1', '--set', 'edm.heunSteps=40', '--out', out);
    try {
      await waitFor(() => /iter 2\/2/.test(run.output()), 'the last iteration');
      run.child.kill('SIGTERM');
      const ended = await run.exit;
      assert.equal(ended.code, 143, run.output());
      assert.match(run.output(), /SIGTERM after the last iteration: .* is finished and checkpointed; what was left of its final grids and evaluation was skipped/);
      assert.ok(fs.existsSync(checkpointPath(path.join(out, 'checkpoints'), 2)), 'the final checkpoint');
      assert.doesNotMatch(run.output(), /^done:/m);
    } finally {
      try { process.kill(-run.child.pid!, 'SIGKILL'); } catch { /* ended */ }
    }
  });
});
