/**
 * Scoring anything (`ect fd`), shared reference statistics (`ect ref`), EDM-style seed ranges (`ect sample --seeds`):
 * a saved .npz or PNG folder scores exactly as `ect eval` of the same checkpoint and seeds, a reference file written
 * and read gives the same number as the cached statistics, and one made with other features is refused.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'child_process';
import { buildProgram, sampleCommand, type SampleFlags } from '../cli/ect';
import { countProgress } from '../cli/progress';
import { evalCommand } from '../cli/commands/metrics';
import Papa from 'papaparse';
import { fdCommand, refCommand } from '../cli/commands/score';
import { initBackend } from '../lib/backend/select';
import { loadDataset } from '../lib/data';
import { NpzWriter, readNpz } from '../lib/image/npz';
import { toUint8Images } from '../lib/image/pixels';
import { readImageSet } from '../lib/image/read';
import { assertSameFeatures, readReferenceFile, writeReferenceFile } from '../lib/metrics/reference-file';
import type { ReferenceStats } from '../lib/metrics/reference';
import { UNet } from '../lib/nn/unet';
import { generateImages, parseSeedRanges, samplerModelFor, sampleSeedRanges, seedIndices } from '../lib/sample';
import { disposeModel, loadRunModel, samplerModelOf } from '../lib/runs/model';
import { Trainer } from '../lib/train/trainer';
import { TINY_NET, requireSystemPart, tinyRunConfig, useTestBackend } from './helpers';

describe('scoring: seed ranges', () => {
  before(useTestBackend);

  it('parses EDM\'s --seeds lists and refuses bad or overlapping ones', () => {
    assert.deepEqual(parseSeedRanges('0-63,100-199'), [{ start: 0, count: 64 }, { start: 100, count: 100 }]);
    assert.deepEqual(parseSeedRanges('7'), [{ start: 7, count: 1 }]);
    assert.deepEqual(seedIndices(parseSeedRanges('3-4,9')), [3, 4, 9]);
    assert.throws(() => parseSeedRanges('5-2'), /ends before it starts/);
    assert.throws(() => parseSeedRanges('0-9,5-12'), /5 is drawn twice/);
    assert.throws(() => parseSeedRanges('a-3'), /'a-3' is not a number or a range/);
  });

  it('image s is the same whichever range draws it, and whatever the batch', () => {
    const net = new UNet(TINY_NET, 0);
    const model = samplerModelFor(net, new Map(net.params), tinyRunConfig('tune'));
    try {
      const all = generateImages(model, 1, 12, { seed: 5 });
      const ranges = parseSeedRanges('9-11,2-4');
      const parts = [...sampleSeedRanges(model, 1, ranges, { seed: 5, batch: 2 })].map((b) => b.images);
      const drawn = tf.concat(parts, 0);
      const expected = tf.gather(all, seedIndices(ranges));
      assert.deepEqual(Array.from(drawn.dataSync()), Array.from(expected.dataSync()));
      [all, drawn, expected, ...parts].forEach((t) => t.dispose());
    } finally {
      net.dispose();
    }
  });
});

describe('scoring: defaults and progress', () => {
  it('ect eval, ect fd and ect ref compare with the test split unless told otherwise', () => {
    const program = buildProgram();
    for (const [command, flag] of [['eval', '--reference-split'], ['fd', '--split'], ['ref', '--split']]) {
      const option = program.commands.find((c) => c.name() === command)?.options.find((o) => o.long === flag);
      assert.equal(option?.defaultValue, 'test', `${command} ${flag}`);
    }
  });

  it('without a terminal, progress is a line at each tenth of the images', () => {
    const lines: string[] = [];
    const progress = countProgress('sampling', 100, true, (line) => lines.push(line));
    for (let done = 8; done <= 100; done += 8) progress.update(done);
    progress.update(100);
    progress.stop();
    assert.equal(lines.length, 10, lines.join('\n'));
    assert.match(lines[0], /^sampling 16\/100 images \| [0-9.]+ img\/s \| ETA /);
    assert.match(lines[9], /^sampling 100\/100 images/);
    const none: string[] = [];
    countProgress('sampling', 100, false, (line) => none.push(line)).update(100);
    assert.deepEqual(none, []);
  });

  it('reads an .npz that NumPy compressed (np.savez_compressed), when NumPy is here', function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-npz-'));
    try {
      const file = path.join(dir, 'compressed.npz');
      const made = spawnSync('python3', ['-c', `import numpy as np; np.savez_compressed(${JSON.stringify(file)}, np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))`], { encoding: 'utf8' });
      if (made.status !== 0) this.skip();
      const images = readImageSet(file);
      assert.deepEqual([images.count, images.height, images.width, images.channels], [2, 4, 4, 3]);
      assert.deepEqual(Array.from(images.images), Array.from({ length: 96 }, (_, i) => i));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('scoring: reference files', () => {
  const reference: ReferenceStats = {
    key: { format: 'ect-reference-stats/1', dataset: 'fashion-mnist', split: 'test', count: 3, imagesSha256: 'ab', featureNetwork: 'fmnist', weightsHash: 'cd', featuresKept: 2 },
    stats: { count: 3, dim: 2, mean: Float64Array.from([0.5, -1 / 3]), cov: Float64Array.from([1, 0.25, 0.25, 2]) },
    features: Float32Array.from([1, 2, 3, 4]),
    featureRows: 2,
  };
  let dir: string;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-ref-file-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('round-trips exactly, with mu and sigma where EDM\'s fid.py looks for them', () => {
    const file = path.join(dir, 'ref.npz');
    writeReferenceFile(file, reference);
    assert.deepEqual(readReferenceFile(file), reference);
    const arrays = readNpz(file);
    assert.deepEqual(arrays.get('mu')?.shape, [2]);
    assert.deepEqual(arrays.get('sigma')?.shape, [2, 2]);
  });

  it('refuses a reference made with other features, and a file without its record', () => {
    const net = { name: 'fmnist', weightsHash: 'cd', dim: 2 };
    assertSameFeatures(reference, net, 'ref.npz');
    assert.throws(() => assertSameFeatures(reference, { ...net, weightsHash: 'ef' }, 'ref.npz'), /ref.npz: made with the 'fmnist' features .* only comparable under the features it was made with/);
    assert.throws(() => assertSameFeatures(reference, { ...net, name: 'inception' }, 'ref.npz'), /but these images are embedded with 'inception'/);
    const bare = path.join(dir, 'edm-ref.npz');
    const npz = new NpzWriter(bare);
    npz.begin('mu', '<f8', [2]);
    npz.write(new Uint8Array(reference.stats.mean.buffer));
    npz.close();
    assert.throws(() => readReferenceFile(bare), /edm-ref.npz: no 'meta' record, so the feature network .* is unknown/);
  });
});

describe('scoring: ect fd and ect ref on Fashion-MNIST samples', function () {
  this.timeout(600000);
  let dir: string;
  let runDir: string;
  let cacheDir: string;
  let previousBackend: string;
  const quiet = () => undefined;
  const QUICK = { split: 'test' as const, referenceLimit: 300, batch: 20, backend: 'wasm', progress: false };

  before(async function () {
    requireSystemPart(this, 'dataset');
    previousBackend = tf.getBackend() ?? 'cpu';
    await initBackend('wasm');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-fd-'));
    cacheDir = path.join(dir, 'cache');
    runDir = path.join(dir, 'run');
    const cfg = tinyRunConfig('tune', {
      data: { name: 'fashion-mnist', flip: false, limit: 16 }, net: { ...TINY_NET, resolution: 28, channelMult: [1, 2], attnResolutions: [] }, batch: 2, iters: 1, ckptEvery: 1,
    });
    const trainer = await Trainer.create(cfg, { runDir, dataset: loadDataset(cfg.data, 'train') });
    await trainer.run({});
    trainer.dispose();
  });
  after(async () => {
    if (!dir) return;
    fs.rmSync(dir, { recursive: true, force: true });
    await tf.setBackend(previousBackend);
  });

  const sample = (format: 'npz' | 'png-dir', out: string, seeds: string) => sampleCommand({
    checkpoint: runDir, steps: '1', seeds: parseSeedRanges(seeds), out, seed: 0, batch: 16, format, progress: false, backend: 'wasm',
  } as SampleFlags, quiet);

  it('the fd of a saved .npz and of a PNG folder equals ect eval\'s on the same checkpoint and seeds', async () => {
    const npz = path.join(dir, 'samples.npz');
    const pngs = path.join(dir, 'samples');
    await sample('npz', npz, '0-39');
    await sample('png-dir', pngs, '0-19,20-39');
    assert.deepEqual(fs.readdirSync(pngs).slice(0, 2), ['000000.png', '000001.png']);
    assert.ok(Buffer.from(readImageSet(pngs).images).equals(Buffer.from(readImageSet(npz).images)), 'both formats hold the same pixels');
    const lines: string[] = [];
    const evaluated = await evalCommand({
      checkpoint: runDir, steps: '1', n: 40, seed: 0, cacheDir, referenceSplit: 'test', referenceLimit: 300, batch: 20, backend: 'wasm', progress: false, append: false,
    }, (line) => lines.push(line));
    assert.match(lines[0], /^against the test split/, 'the first line says what the numbers are against');
    const table = path.join(dir, 'fd-table.csv');
    const fromNpz = await fdCommand(npz, { ...QUICK, cacheDir, steps: '1', seed: 0, table }, quiet);
    const fromPngs = await fdCommand(pngs, { ...QUICK, cacheDir, steps: '1', seed: 0 }, quiet);
    const fromCheckpoint = await fdCommand(runDir, { ...QUICK, cacheDir, steps: '1', seed: 0, n: 40, table }, quiet);
    const rows = Papa.parse<Record<string, string>>(fs.readFileSync(table, 'utf8'), { header: true, skipEmptyLines: true }).data;
    assert.deepEqual(rows.map((r) => [r.source, r.sampler, r.n, r.features]), [[npz, 'images', '40', 'fmnist'], [runDir, '1step', '40', 'fmnist']]);
    assert.equal(Number(rows[0].fd_fmnist), Number(fromNpz.fd_fmnist.toPrecision(7)), '--table holds the printed numbers (7 significant digits)');
    assert.equal(Number(rows[1].fd_fmnist_1step), Number(fromCheckpoint.fd_fmnist_1step.toPrecision(7)));
    assert.match(rows[1].feature_sha256, /^[0-9a-f]{12}$/);
    assert.ok(evaluated.fd_fmnist_1step > 0);
    assert.equal(fromNpz.fd_fmnist, evaluated.fd_fmnist_1step);
    assert.equal(fromNpz.kid_fmnist, evaluated.kid_fmnist_1step);
    assert.equal(fromNpz.precision_fmnist, evaluated.precision_fmnist_1step);
    assert.deepEqual(fromPngs, fromNpz);
    assert.deepEqual(fromCheckpoint, evaluated);
  });

  it('ect sample --heun-steps samples the teacher\'s Heun with that many steps (and only Heun)', async () => {
    const npz = path.join(dir, 'heun.npz');
    await sampleCommand({ checkpoint: runDir, steps: 'heun', heunSteps: 2, n: 4, out: npz, seed: 0, batch: 4, format: 'npz', progress: false, backend: 'wasm' } as SampleFlags, quiet);
    const model = await loadRunModel(runDir);
    try {
      const sampler = samplerModelOf(model);
      const twoSteps = generateImages({ ...sampler, edm: { ...sampler.edm, heunSteps: 2 } }, 'heun', 4);
      const own = generateImages(sampler, 'heun', 4);
      const written = readImageSet(npz).images;
      assert.ok(Buffer.from(toUint8Images(twoSteps)).equals(Buffer.from(written)), '2 Heun steps');
      assert.ok(!Buffer.from(toUint8Images(own)).equals(Buffer.from(written)), `the run's own ${sampler.edm.heunSteps} steps differ`);
      twoSteps.dispose();
      own.dispose();
    } finally {
      disposeModel(model);
    }
    await assert.rejects(sampleCommand({ checkpoint: runDir, steps: '1', heunSteps: 2, n: 4, out: path.join(dir, 'x.npz'), seed: 0, batch: 4, format: 'npz', progress: false } as SampleFlags, quiet),
      /--heun-steps: only the Heun sampler/);
  });

  it('a first-time reference says so, and about how long it takes, before the work', async () => {
    const lines: string[] = [];
    await fdCommand(path.join(dir, 'samples.npz'), { ...QUICK, cacheDir: path.join(dir, 'fresh-cache'), steps: '1', seed: 0 }, (line) => lines.push(line));
    const computing = lines.findIndex((l) => /none to reuse .*computing them once from 300 images/.test(l));
    const estimate = lines.findIndex((l) => /about \d+ s for 300 images \(timed on the second batch\)/.test(l));
    const computed = lines.findIndex((l) => /computed: /.test(l));
    assert.ok(computing >= 0 && computing < estimate && estimate < computed, lines.join('\n'));
  });

  it('a reference written by ect ref and read elsewhere gives the same number; one of other features is refused', async () => {
    const npz = path.join(dir, 'samples.npz');
    const refFile = path.join(dir, 'fmnist-test300.npz');
    const otherCache = path.join(dir, 'other-cache');   // another machine: nothing cached
    await refCommand({ ...QUICK, data: 'fashion-mnist', out: refFile, cacheDir: otherCache }, quiet);
    const ref = readReferenceFile(refFile);
    assert.equal(ref.key.split, 'test');
    assert.equal(ref.key.count, 300);
    assert.equal(ref.key.featureNetwork, 'fmnist');
    const withSplit = await fdCommand(npz, { ...QUICK, cacheDir, steps: '1', seed: 0 }, quiet);
    const withFile = await fdCommand(npz, { ...QUICK, ref: refFile, steps: '1', seed: 0, cacheDir: path.join(dir, 'unused') }, quiet);
    assert.deepEqual(withFile, withSplit);
    const evaluated = await evalCommand({
      checkpoint: runDir, steps: '1', n: 40, seed: 0, ref: refFile, referenceSplit: 'test', batch: 20, backend: 'wasm', progress: false, append: false,
    }, quiet);
    assert.equal(evaluated.fd_fmnist_1step, withFile.fd_fmnist);
    // the same statistics, recorded as made with other classifier weights
    const forged = path.join(dir, 'forged.npz');
    writeReferenceFile(forged, { ...ref, key: { ...ref.key, weightsHash: '0'.repeat(64) } });
    await assert.rejects(fdCommand(npz, { ...QUICK, ref: forged, steps: '1', seed: 0 }, quiet), /forged.npz: made with the 'fmnist' features \(weights SHA-256 000000000000/);
  });
});
