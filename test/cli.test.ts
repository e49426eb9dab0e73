/** The `ect` command line as a user runs it: help text, clear errors, and a tiny pretrain -> tune -> sample chain. */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { readNpz } from '../lib/image/npz';
import { requireSystemPart } from './helpers';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'ect.js');

function ect(...args: string[]): { status: number; out: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ECT_BACKEND: process.env.ECT_TEST_BACKEND ?? '' } });
  return { status: result.status ?? -1, out: `${result.stdout}${result.stderr}` };
}

describe('ect command line', () => {
  it('documents every option of every command in --help', () => {
    const main = ect('--help');
    assert.equal(main.status, 0);
    for (const command of ['pretrain', 'tune', 'sample', 'demo', 'eval', 'train-classifier']) assert.ok(main.out.includes(command), command);
    const tune = ect('tune', '--help').out;
    for (const flag of ['--config', '--data', '--data-dir', '--backend', '--seed', '--iters', '--batch', '--out', '--resume', '--init', '--set', '--eval-every']) {
      assert.ok(tune.includes(flag), `tune --help lacks ${flag}`);
    }
    const sample = ect('sample', '--help').out;
    for (const flag of ['--checkpoint', '--steps', '--n', '--out', '--mid-t', '--class', '--format', 'png-dir', 'npz']) assert.ok(sample.includes(flag), `sample --help lacks ${flag}`);
  });

  it('fails clearly on a missing --init, a missing checkpoint, a bad --steps and a bad preset value', () => {
    const noInit = ect('tune', '--config', 'fmnist-ect-tiny', '--out', fs.mkdtempSync(path.join(os.tmpdir(), 'ect-cli-')));
    assert.notEqual(noInit.status, 0);
    assert.match(noInit.out, /needs --init/);
    const missing = ect('sample', '--checkpoint', '/nonexistent/run', '--out', path.join(os.tmpdir(), 'ect-cli-missing.png'));
    assert.notEqual(missing.status, 0);
    assert.match(missing.out, /\/nonexistent\/run: no such file or directory/);
    assert.match(ect('sample', '--checkpoint', os.tmpdir(), '--steps', '3').out, /--steps must be 1, 2 or heun/);
    assert.match(ect('pretrain', '--config', 'fmnist-edm-tiny', '--set', 'batch=-3').out, /batch must be a positive integer, got -3/);
  });

  it('pretrains, tunes and samples a tiny synthetic model end to end', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-cli-'));
    const common = ['--data', 'synthetic', '--batch', '4', '--no-progress', '--set', 'edm.heunSteps=2'];
    const teacher = ect('pretrain', '--config', 'fmnist-edm-tiny', '--iters', '2', '--out', path.join(dir, 't'), ...common);
    assert.equal(teacher.status, 0, teacher.out);
    assert.match(teacher.out, /backend \w+/);
    const tuned = ect('tune', '--config', 'fmnist-ect-tiny', '--iters', '2', '--init', path.join(dir, 't'), '--out', path.join(dir, 'e'), ...common);
    assert.equal(tuned.status, 0, tuned.out);
    for (const f of ['config.json', 'metrics.csv', 'samples/final-1step.png', 'samples/final-2step.png']) assert.ok(fs.existsSync(path.join(dir, 'e', f)), f);
    const grid = path.join(dir, 'grid.png');
    const sampled = ect('sample', '--checkpoint', path.join(dir, 'e'), '--steps', '2', '--n', '9', '--out', grid);
    assert.equal(sampled.status, 0, sampled.out);
    const png = PNG.sync.read(fs.readFileSync(grid));
    assert.ok(png.width >= 3 * 28 && png.height >= 3 * 28, `${png.width}x${png.height}`);
    // the same seed (0, the default) gives the same images in another process
    const again = path.join(dir, 'again.png');
    assert.equal(ect('sample', '--checkpoint', path.join(dir, 'e'), '--steps', '2', '--n', '9', '--seed', '0', '--out', again).status, 0);
    assert.ok(fs.readFileSync(again).equals(fs.readFileSync(grid)), 'two `ect sample --seed 0` drew different images');
    // ... and the run's own final grid is `ect sample --n 64` of its last checkpoint
    const final = path.join(dir, 'final.png');
    assert.equal(ect('sample', '--checkpoint', path.join(dir, 'e'), '--steps', '1', '--n', '64', '--out', final).status, 0);
    assert.ok(fs.readFileSync(final).equals(fs.readFileSync(path.join(dir, 'e', 'samples', 'final-1step.png'))), 'the run\'s grid is not ect sample\'s');
    // an unconditional model takes no class
    const classed = ect('sample', '--checkpoint', path.join(dir, 'e'), '--class', '1', '--out', path.join(dir, 'class.png'));
    assert.notEqual(classed.status, 0);
    assert.match(classed.out, /--class: .* is an unconditional model \(net\.labelDim 0\)/);
  });

  it('samples a class-conditional model by class, per class, as PNGs and as .npz, and scores its class accuracy', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-cli-'));
    const run = path.join(dir, 'cond');
    const teacher = ect('pretrain', '--config', 'fmnist-edm-tiny-cond', '--data', 'synthetic', '--batch', '4', '--iters', '2', '--out', run,
      '--no-progress', '--set', 'edm.heunSteps=2');
    assert.equal(teacher.status, 0, teacher.out);
    const sample = (...args: string[]) => ect('sample', '--checkpoint', run, '--steps', 'heun', ...args);
    // one row per class: 10 rows of 2 images of 28x28 with 2 pixels of padding
    const grid = path.join(dir, 'per-class.png');
    const perClass = sample('--class', 'all', '--n', '20', '--out', grid);
    assert.equal(perClass.status, 0, perClass.out);
    const png = PNG.sync.read(fs.readFileSync(grid));
    assert.deepEqual([png.width, png.height], [2 * 30 + 2, 10 * 30 + 2]);
    // one class as .npz (with its labels) and as PNG files: the same uint8 images
    const npzFile = path.join(dir, 'three.npz');
    assert.equal(sample('--class', '3', '--n', '5', '--batch', '2', '--format', 'npz', '--out', npzFile).status, 0);
    const arrays = readNpz(npzFile);
    assert.deepEqual(arrays.get('arr_0')!.shape, [5, 28, 28, 1]);
    assert.deepEqual(Array.from({ length: 5 }, (_, i) => Number(Buffer.from(arrays.get('arr_1')!.data).readBigInt64LE(8 * i))), [3, 3, 3, 3, 3]);
    const pngDir = path.join(dir, 'three');
    assert.equal(sample('--class', '3', '--n', '5', '--format', 'png-dir', '--out', pngDir).status, 0);
    assert.equal(fs.readdirSync(pngDir).length, 5);
    const fourth = PNG.sync.read(fs.readFileSync(path.join(pngDir, '000004.png')));
    assert.deepEqual(Array.from({ length: 784 }, (_, p) => fourth.data[4 * p]), Array.from(arrays.get('arr_0')!.data.subarray(4 * 784)));
    // errors name the flag
    assert.match(sample('--class', '10', '--out', path.join(dir, 'x.png')).out, /--class 10: the model's classes are 0\.\.9/);
    assert.match(sample('--class', 'all', '--n', '15', '--out', path.join(dir, 'x.png')).out, /--class all: --n must be a multiple of the 10 classes/);
    assert.match(sample('--class', 'some').out, /--class must be a non-negative integer, got 'some'/);
    // the class accuracy figure of the closing note, on this model (chance level: it trained two steps)
    const scored = ect('eval', '--checkpoint', run, '--steps', 'heun', '--n', '20', '--class-accuracy', '--no-progress');
    assert.equal(scored.status, 0, scored.out);
    assert.match(scored.out, /assigned to the class asked for: \d+\.\d% \(chance 10%; the classifier on 256 real test images: \d+\.\d%\)/);
  });
  it('ect demo tunes the shipped teacher and draws teacher | 1 step | 2 steps from the same noise', function () {
    requireSystemPart(this, 'dataset');
    this.timeout(600000);
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-demo-'));
    try {
      const missing = ect('demo', '--teacher', 'no-such-teacher', '--out', out);
      assert.notEqual(missing.status, 0);
      assert.match(missing.out, /--teacher no-such-teacher: neither a run folder nor a shipped teacher \(shipped in data\/teachers\/: fmnist-edm-base/);
      const demo = ect('demo', '--out', out, '--tune-iters', '2', '--eval-n', '40', '--no-progress');
      assert.equal(demo.status, 0, demo.out);
      assert.match(demo.out, /demo: about [\d.]+ min on the \w+ backend here/);
      assert.match(demo.out, /ECT tuning of the teacher data\/teachers\/fmnist-edm-base/);
      assert.match(demo.out, /fd_fmnist_1step = [\d.]+, fd_fmnist_2step = [\d.]+ \(40 samples against the 10k test images/);
      const config = JSON.parse(fs.readFileSync(path.join(out, 'ect', 'config.json'), 'utf8'));
      assert.equal(config.evalSplit, 'test');
      assert.equal(config.ema.beta, 0.99);
      const grids = ['comparison', 'teacher-heun', 'ect-1step', 'ect-2step'].map((name) => PNG.sync.read(fs.readFileSync(path.join(out, 'grids', `${name}.png`))));
      const [comparison, ...single] = grids;
      assert.equal(comparison.width, single.reduce((w, g) => w + g.width, 0) + 2 * 12, 'three 8x8 grids and two gaps');
      assert.ok(single.every((g) => g.width === 8 * 30 + 2 && g.height === 8 * 30 + 2), 'each: 64 images of 28 pixels, 2-pixel borders');
      const again = ect('demo', '--out', out, '--tune-iters', '2', '--eval-n', '40', '--no-progress');
      assert.equal(again.status, 0, again.out);
      assert.match(again.out, /reusing .*ect \(finished, 2 iterations/);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
