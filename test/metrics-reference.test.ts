/** Tests of the reference-statistics cache: computed once, reused, and recomputed when stale or corrupt; and the evaluator's columns. */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type { FeatureNetwork } from '../lib/metrics/features';
import { featureStats } from '../lib/metrics/frechet';
import { createRunEvaluator, scoreFeatures } from '../lib/metrics/evaluate';
import { embedDataset, embedStream, loadOrComputeReference, referenceCachePaths, type ReferenceImages } from '../lib/metrics/reference';
import { tinyRunConfig } from './helpers';

/** A feature network the test controls: per-image channel means and mean squares, scaled by `gain`; counts its calls. */
class CountingNetwork implements FeatureNetwork {
  readonly name = 'toy';
  readonly distanceName = 'fd_toy';
  readonly metricTag = '_toy';
  readonly dim = 2;
  calls = 0;
  constructor(readonly weightsHash: string, private readonly gain = 1) {}
  accepts(_h: number, _w: number, c: number): string | null {
    return c === 1 ? null : `toy network takes 1 channel, got ${c}`;
  }
  async embed(images: tf.Tensor4D): Promise<tf.Tensor2D> {
    this.calls++;
    return tf.tidy(() => {
      const flat = tf.reshape(images, [images.shape[0], -1]);
      return tf.mul(tf.stack([tf.mean(flat, 1), tf.mean(tf.square(flat), 1)], 1), this.gain) as tf.Tensor2D;
    });
  }
  dispose(): void {}
}

function toyDataset(count: number, seed: number): ReferenceImages {
  const images = new Uint8Array(count * 16);
  let state = seed;
  for (let i = 0; i < images.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    images[i] = (state >>> 16) & 255;
  }
  return { name: 'toyset', split: 'train', count, height: 4, width: 4, channels: 1, images };
}

describe('metrics: reference statistics cache', () => {
  let cacheDir: string;
  before(async () => {
    await tf.setBackend('cpu');
  });
  beforeEach(() => {
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-refstats-'));
  });
  afterEach(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  it('computes once, then reads the same statistics from disk without running the network', async () => {
    const data = toyDataset(120, 1);
    const net = new CountingNetwork('weights-a');
    const first = await loadOrComputeReference(net, data, { cacheDir, batch: 50, keep: 40 });
    assert.equal(first.source, 'computed');
    assert.equal(net.calls, 3);
    const second = await loadOrComputeReference(net, data, { cacheDir, batch: 50, keep: 40 });
    assert.equal(second.source, 'cache');
    assert.equal(net.calls, 3, 'the cache hit must not embed again');
    assert.deepEqual(Array.from(second.reference.stats.mean), Array.from(first.reference.stats.mean));
    assert.deepEqual(Array.from(second.reference.stats.cov), Array.from(first.reference.stats.cov));
    assert.equal(second.reference.featureRows, 40);
    assert.deepEqual(Array.from(second.reference.features), Array.from(first.reference.features));
  });

  it('matches statistics computed directly from all features', async () => {
    const data = toyDataset(90, 2);
    const net = new CountingNetwork('w');
    const { reference } = await loadOrComputeReference(net, data, { cacheDir, batch: 32, keep: 1000 });
    const all = await net.embed(tf.tidy(() => tf.sub(tf.div(tf.tensor4d(data.images, [90, 4, 4, 1], 'float32'), 127.5), 1) as tf.Tensor4D));
    const direct = featureStats(all.dataSync(), 90, 2);
    all.dispose();
    direct.cov.forEach((v, i) => assert.ok(Math.abs(v - reference.stats.cov[i]) < 1e-6 * (Math.abs(v) + 1e-3)));
    assert.equal(reference.featureRows, 90, 'keep larger than the set keeps every row');
  });

  it('detects a stale cache when the weights or the images change, and recomputes', async () => {
    const data = toyDataset(60, 3);
    await loadOrComputeReference(new CountingNetwork('weights-a'), data, { cacheDir, batch: 30 });
    const newWeights = await loadOrComputeReference(new CountingNetwork('weights-b', 2), data, { cacheDir, batch: 30 });
    assert.equal(newWeights.source, 'computed');
    assert.match(newWeights.note, /stale cache recomputed .*weightsHash "weights-a" -> "weights-b"/);
    const changed = toyDataset(60, 4);
    const newImages = await loadOrComputeReference(new CountingNetwork('weights-b', 2), changed, { cacheDir, batch: 30 });
    assert.equal(newImages.source, 'computed');
    assert.match(newImages.note, /imagesSha256/);
  });

  it('recomputes a cache whose binary file was corrupted', async () => {
    const data = toyDataset(40, 5);
    const net = new CountingNetwork('w');
    const first = await loadOrComputeReference(net, data, { cacheDir, batch: 40 });
    const { bin } = referenceCachePaths(cacheDir, first.reference.key);
    const bytes = fs.readFileSync(bin);
    bytes[10] ^= 0xff;
    fs.writeFileSync(bin, bytes);
    const again = await loadOrComputeReference(net, data, { cacheDir, batch: 40 });
    assert.equal(again.source, 'computed');
    assert.match(again.note, /SHA-256 does not match/);
  });

  it('rejects generated images the network cannot take, naming the shapes', async () => {
    const net = new CountingNetwork('w');
    const rgb = { ...toyDataset(8, 6), channels: 3, images: new Uint8Array(8 * 48) };
    await assert.rejects(embedDataset(net, rgb, { batch: 4 }), /toy network takes 1 channel, got 3/);
  });
});

describe('metrics: run evaluator', () => {
  it('names the columns by feature network and sampler, and disposes the generated images', async () => {
    await tf.setBackend('cpu');
    const net = new CountingNetwork('w');
    const data = toyDataset(200, 7);
    const reference = await embedDataset(net, data, { batch: 100 });
    const before = tf.memory().numTensors;
    const generate = (count: number, offset: number) => tf.randomUniform([count, 4, 4, 1], -1, 1, 'float32', offset) as tf.Tensor4D;
    const generated = await embedStream(net, generate, 200, { batch: 64, keep: 150 });
    assert.equal(tf.memory().numTensors, before, 'generated batches and features are freed');
    assert.equal(generated.stats.count, 200);
    assert.equal(generated.featureRows, 150);
    const columns = scoreFeatures(net, { key: {} as never, ...reference }, generated, '2step', { subsets: 5, subsetSize: 50 });
    assert.deepEqual(Object.keys(columns).sort(), ['fd_toy_2step', 'kid_std_toy_2step', 'kid_toy_2step', 'precision_toy_2step', 'recall_toy_2step']);
    Object.values(columns).forEach((v) => assert.ok(Number.isFinite(v)));
  });

  it('returns null with a reason for a dataset without a feature network, and for CIFAR-10 without Inception weights', async () => {
    let reason = '';
    assert.equal(await createRunEvaluator(tinyRunConfig('tune'), { onUnavailable: (why) => (reason = why) }), null);
    assert.match(reason, /no feature network for dataset "synthetic"/);
    const saved = process.env.ECT_INCEPTION_DIR;
    delete process.env.ECT_INCEPTION_DIR;
    try {
      const cifar = tinyRunConfig('tune', { data: { name: 'cifar10', flip: false } });
      assert.equal(await createRunEvaluator(cifar, { onUnavailable: (why) => (reason = why) }), null);
      assert.match(reason, /ECT_INCEPTION_DIR/);
    } finally {
      if (saved !== undefined) process.env.ECT_INCEPTION_DIR = saved;
    }
  });
});
