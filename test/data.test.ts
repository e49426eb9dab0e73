/** Tests of the dataset readers (CIFAR-10 binary, IDX / Fashion-MNIST, synthetic) and the batch loader. */
import * as assert from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {
  BatchLoader, CIFAR10_RECORD_BYTES, epochOrder, ImageDataset, LoaderState, loadDataset,
  loadFashionMnist, readCifar10Batch, readIdxFile,
} from '../lib/data';
import { requireSystemPart } from './helpers';

/** The pixel the CIFAR test files hold for image n, channel c, row y, column x. */
function cifarPixel(n: number, c: number, y: number, x: number): number {
  return (n * 31 + c * 85 + y * 7 + x * 3) % 256;
}

/** Writes a CIFAR-10 batch file in the official layout: per record a label byte, then R, G, B planes. */
function writeCifarBatch(file: string, labels: number[], firstImage = 0): void {
  const bytes = Buffer.alloc(labels.length * CIFAR10_RECORD_BYTES);
  labels.forEach((label, i) => {
    const record = i * CIFAR10_RECORD_BYTES;
    bytes[record] = label;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) bytes[record + 1 + c * 1024 + y * 32 + x] = cifarPixel(firstImage + i, c, y, x);
      }
    }
  });
  fs.writeFileSync(file, bytes);
}

/** Writes an IDX file of unsigned bytes with the given magic number and dimensions. */
function idxBytes(magic: number, dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}

/** A tiny dataset whose image i has pixel (y, x, c) = 100 * (i % 2) + 10 * x + c + y, so flips and identity are visible. */
function tinyDataset(count: number, height = 3, width = 5, channels = 2): ImageDataset {
  const images = new Uint8Array(count * height * width * channels);
  for (let i = 0; i < count; i++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        for (let c = 0; c < channels; c++) images[((i * height + y) * width + x) * channels + c] = (i * 17 + 10 * x + c + y) % 256;
      }
    }
  }
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 256);
  return { name: 'tiny', split: 'train', source: 'test', count, height, width, channels, images, labels };
}

describe('data', () => {
  let tmp: string;
  before(async () => {
    await tf.setBackend('cpu');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-data-test-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  describe('CIFAR-10 binary reader', () => {
    it('converts planar records to NHWC and keeps the labels', () => {
      const file = path.join(tmp, 'batch.bin');
      writeCifarBatch(file, [3, 9, 0]);
      const batch = readCifar10Batch(file);
      assert.strictEqual(batch.count, 3);
      assert.deepStrictEqual(Array.from(batch.labels), [3, 9, 0]);
      for (let n = 0; n < 3; n++) {
        for (let y = 0; y < 32; y++) {
          for (let x = 0; x < 32; x++) {
            for (let c = 0; c < 3; c++) {
              const got = batch.images[((n * 32 + y) * 32 + x) * 3 + c];
              if (got !== cifarPixel(n, c, y, x)) assert.fail(`image ${n} (${y}, ${x}, ${c}): ${got} != ${cifarPixel(n, c, y, x)}`);
            }
          }
        }
      }
      // spot check against the raw file: the green value of image 1 at row 2, column 5
      const raw = fs.readFileSync(file);
      assert.strictEqual(batch.images[((1 * 32 + 2) * 32 + 5) * 3 + 1], raw[CIFAR10_RECORD_BYTES + 1 + 1024 + 2 * 32 + 5]);
    });

    it('rejects a truncated file, naming it', () => {
      const file = path.join(tmp, 'truncated.bin');
      writeCifarBatch(file, [1, 2]);
      fs.truncateSync(file, 2 * CIFAR10_RECORD_BYTES - 1);
      assert.throws(() => readCifar10Batch(file), (err: Error) => err.message.includes(file) && err.message.includes('3073'));
    });

    it('rejects records of the wrong size (no label byte), naming the file', () => {
      const file = path.join(tmp, 'norecordlabel.bin');
      fs.writeFileSync(file, Buffer.alloc(3072 * 4));
      assert.throws(() => readCifar10Batch(file), (err: Error) => err.message.includes(file) && err.message.includes(String(3072 * 4)));
    });

    it('rejects a label above 9, naming the file and the record', () => {
      const file = path.join(tmp, 'badlabel.bin');
      writeCifarBatch(file, [1, 12]);
      assert.throws(() => readCifar10Batch(file), (err: Error) => err.message.includes(file) && /record 1\b/.test(err.message) && err.message.includes('12'));
    });

    it('loads the train split from five batch files through loadDataset, with limit', () => {
      const dir = path.join(tmp, 'cifar-10-batches-bin');
      fs.mkdirSync(dir);
      for (let i = 1; i <= 5; i++) writeCifarBatch(path.join(dir, `data_batch_${i}.bin`), [i, i + 1], 2 * (i - 1));
      writeCifarBatch(path.join(dir, 'test_batch.bin'), [7]);
      const train = loadDataset({ name: 'cifar10', dir, flip: false }, 'train');
      assert.strictEqual(train.count, 10);
      assert.deepStrictEqual([train.height, train.width, train.channels], [32, 32, 3]);
      assert.deepStrictEqual(Array.from(train.labels), [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
      // image 7 (second of batch 4): red value at row 31, column 0
      assert.strictEqual(train.images[((7 * 32 + 31) * 32 + 0) * 3 + 0], cifarPixel(7, 0, 31, 0));
      const limited = loadDataset({ name: 'cifar10', dir, flip: false, limit: 3 }, 'train');
      assert.strictEqual(limited.count, 3);
      assert.strictEqual(limited.images.length, 3 * 3072);
      const test = loadDataset({ name: 'cifar10', dir, flip: false, limit: 3 }, 'test');
      assert.deepStrictEqual(Array.from(test.labels), [7]);

      fs.rmSync(path.join(dir, 'data_batch_3.bin'));
      assert.throws(() => loadDataset({ name: 'cifar10', dir, flip: false }, 'train'),
        (err: Error) => err.message.includes(path.join(dir, 'data_batch_3.bin')) && err.message.includes('missing'));
    });

    it('says where it looked when the folder is missing', () => {
      const dir = path.join(tmp, 'no-such-cifar');
      assert.throws(() => loadDataset({ name: 'cifar10', dir, flip: false }, 'test'), (err: Error) => err.message.includes(dir));
    });
  });

  describe('IDX reader and Fashion-MNIST', () => {
    const count = 4;
    const rows = 6;
    const cols = 5;
    const pixels = Uint8Array.from({ length: count * rows * cols }, (_, i) => (i * 13) % 256);
    const labelValues = Uint8Array.from([9, 0, 4, 2]);

    function writeSplit(dir: string, gzip: boolean): void {
      fs.mkdirSync(dir, { recursive: true });
      const suffix = gzip ? '.gz' : '';
      const pack = (b: Buffer) => (gzip ? zlib.gzipSync(b) : b);
      fs.writeFileSync(path.join(dir, `train-images-idx3-ubyte${suffix}`), pack(idxBytes(2051, [count, rows, cols], pixels)));
      fs.writeFileSync(path.join(dir, `train-labels-idx1-ubyte${suffix}`), pack(idxBytes(2049, [count], labelValues)));
    }

    for (const gzip of [false, true]) {
      it(`reads images and labels ${gzip ? 'gzipped' : 'uncompressed'}`, () => {
        const dir = path.join(tmp, gzip ? 'fm-gz' : 'fm-plain');
        writeSplit(dir, gzip);
        const data = loadDataset({ name: 'fashion-mnist', dir, flip: false }, 'train');
        assert.deepStrictEqual([data.count, data.height, data.width, data.channels], [count, rows, cols, 1]);
        assert.deepStrictEqual(Array.from(data.images), Array.from(pixels));
        assert.deepStrictEqual(Array.from(data.labels), Array.from(labelValues));
        assert.strictEqual(data.classNames?.[9], 'Ankle boot');
      });
    }

    it('rejects a bad magic number, naming the file', () => {
      const file = path.join(tmp, 'badmagic-idx3-ubyte');
      fs.writeFileSync(file, idxBytes(2049, [count * rows * cols], pixels));
      assert.throws(() => readIdxFile(file, 2051), (err: Error) => err.message.includes(file) && err.message.includes('2049') && err.message.includes('2051'));
    });

    it('rejects a truncated file and a count mismatch, naming the files', () => {
      const dir = path.join(tmp, 'fm-bad');
      writeSplit(dir, false);
      const imagesFile = path.join(dir, 'train-images-idx3-ubyte');
      fs.truncateSync(imagesFile, fs.statSync(imagesFile).size - 7);
      assert.throws(() => loadFashionMnist('train', dir), (err: Error) => err.message.includes(imagesFile) && err.message.includes('truncated'));
      writeSplit(dir, false);
      const labelsFile = path.join(dir, 'train-labels-idx1-ubyte');
      fs.writeFileSync(labelsFile, idxBytes(2049, [3], labelValues.subarray(0, 3)));
      assert.throws(() => loadFashionMnist('train', dir), (err: Error) => err.message.includes(labelsFile) && err.message.includes('3 labels'));
    });

    it('loads the real Fashion-MNIST when it is installed (60000 train, 10000 test, 28x28)', function () {
      requireSystemPart(this, 'dataset');
      const train = loadDataset({ name: 'fashion-mnist', flip: false }, 'train');
      const test = loadDataset({ name: 'fashion-mnist', flip: false }, 'test');
      assert.deepStrictEqual([train.count, train.height, train.width, train.channels], [60000, 28, 28, 1]);
      assert.deepStrictEqual([test.count, test.height, test.width, test.channels], [10000, 28, 28, 1]);
      const perClass = new Array(10).fill(0);
      for (const label of train.labels) perClass[label]++;
      assert.deepStrictEqual(perClass, new Array(10).fill(6000));   // Fashion-MNIST is balanced
      assert.strictEqual(loadDataset({ name: 'fashion-mnist', flip: false, limit: 100 }, 'train').count, 100);
    });
  });

  describe('synthetic dataset', () => {
    it('is drawn at a network\'s resolution and channels when given one (so a model of any size can be tuned on it)', () => {
      const shaped = loadDataset({ name: 'synthetic', flip: false, limit: 64 }, 'train', { resolution: 64, imageChannels: 3 });
      assert.deepStrictEqual([shaped.height, shaped.width, shaped.channels, shaped.count], [64, 64, 3, 64]);
      const fashion = loadDataset({ name: 'synthetic', flip: false }, 'train', { resolution: 28, imageChannels: 1 });
      assert.ok(Buffer.from(fashion.images).equals(Buffer.from(loadDataset({ name: 'synthetic', flip: false }, 'train').images)), 'the default size is unchanged');
    });

    it('is deterministic, balanced, and differs between splits', () => {
      const a = loadDataset({ name: 'synthetic', flip: false }, 'train');
      const b = loadDataset({ name: 'synthetic', flip: false }, 'train');
      const test = loadDataset({ name: 'synthetic', flip: false }, 'test');
      assert.deepStrictEqual([a.height, a.width, a.channels], [28, 28, 1]);
      assert.ok(Buffer.from(a.images).equals(Buffer.from(b.images)));
      assert.ok(!Buffer.from(a.images.subarray(0, 784)).equals(Buffer.from(test.images.subarray(0, 784))));
      const perClass = new Array(10).fill(0);
      for (const label of a.labels) perClass[label]++;
      assert.ok(Math.max(...perClass) - Math.min(...perClass) <= 1, `classes unbalanced: ${perClass}`);
      // every image has both background and a shape
      for (let n = 0; n < a.count; n++) {
        const image = a.images.subarray(n * 784, (n + 1) * 784);
        assert.ok(Math.max(...image) >= 150 && Math.min(...image) < 40, `image ${n} has no visible shape`);
      }
    });

    it('applies limit to the training split and rejects a bad limit', () => {
      assert.strictEqual(loadDataset({ name: 'synthetic', flip: false, limit: 10 }, 'train').count, 10);
      assert.throws(() => loadDataset({ name: 'synthetic', flip: false, limit: -1 }, 'train'), /data\.limit/);
      assert.throws(() => loadDataset({ name: 'synthetic', flip: false, limit: 2.5 }, 'train'), /data\.limit/);
    });
  });

  describe('BatchLoader', () => {
    /** Reads a batch back as image indices (the tiny dataset's pixel (0, 0, 0) is 17 i mod 256) and flip flags. */
    function decode(batch: tf.Tensor4D, data: ImageDataset): Array<{ index: number; flipped: boolean }> {
      const values = batch.dataSync();
      const [n, h, w, c] = batch.shape;
      const result = [];
      for (let b = 0; b < n; b++) {
        const base = b * h * w * c;
        const firstColumn = Math.round((values[base] + 1) * 127.5);
        const lastColumn = Math.round((values[base + (w - 1) * c] + 1) * 127.5);
        const flipped = firstColumn > lastColumn;
        const zeroColumn = flipped ? lastColumn : firstColumn;
        const index = Array.from({ length: data.count }, (_, i) => i).find((i) => (i * 17) % 256 === zeroColumn);
        assert.ok(index !== undefined, 'batch pixel matches no image');
        result.push({ index, flipped });
      }
      return result;
    }

    it('visits every image once per epoch and reshuffles each epoch', () => {
      const data = tinyDataset(12);
      const loader = new BatchLoader(data, { batch: 4, seed: 5, flip: false });
      const epochs: number[][] = [];
      for (let e = 0; e < 3; e++) {
        const seen: number[] = [];
        for (let b = 0; b < 3; b++) {
          const batch = loader.next();
          seen.push(...decode(batch.images, data).map((d) => d.index));
          batch.images.dispose();
        }
        assert.deepStrictEqual([...seen].sort((p, q) => p - q), Array.from({ length: 12 }, (_, i) => i));
        epochs.push(seen);
      }
      assert.notDeepStrictEqual(epochs[0], epochs[1]);
      assert.notDeepStrictEqual(epochs[1], epochs[2]);
      assert.strictEqual(loader.imagesSeen, 36);
    });

    it('yields each image\'s label with it, in the seeded order of each epoch', () => {
      const data = { ...tinyDataset(10), labels: Uint8Array.from({ length: 10 }, (_, i) => (i * 7) % 10) };
      const loader = new BatchLoader(data, { batch: 4, seed: 11, flip: true });
      // 5 batches of 4 = two epochs of 10: batch 2 runs across the epoch boundary
      const order = [...epochOrder(10, 11, 0), ...epochOrder(10, 11, 1)];
      for (let b = 0; b < 5; b++) {
        const batch = loader.next();
        const expected = order.slice(4 * b, 4 * b + 4);
        assert.deepStrictEqual(decode(batch.images, data).map((d) => d.index), expected, `batch ${b}: images`);
        assert.deepStrictEqual(Array.from(batch.labels), expected.map((i) => data.labels[i]), `batch ${b}: labels`);
        batch.images.dispose();
      }
    });

    it('is deterministic for a seed and differs between seeds', () => {
      const data = tinyDataset(10);
      const draw = (seed: number) => {
        const loader = new BatchLoader(data, { batch: 4, seed, flip: true });
        const out: number[] = [];
        for (let i = 0; i < 8; i++) {
          const batch = loader.next();
          out.push(...batch.images.dataSync(), ...batch.labels);
          batch.images.dispose();
        }
        return out;
      };
      assert.deepStrictEqual(draw(1), draw(1));
      assert.notDeepStrictEqual(draw(1), draw(2));
    });

    it('resumes from a JSON state with exactly the batches of an uninterrupted run', () => {
      const data = tinyDataset(10);
      const options = { batch: 4, seed: 3, flip: true };
      const uninterrupted = new BatchLoader(data, options);
      const expected: number[][] = [];
      for (let i = 0; i < 12; i++) {
        const batch = uninterrupted.next();
        expected.push([...batch.images.dataSync(), ...batch.labels]);
        batch.images.dispose();
      }
      // stop after 5 batches (mid-epoch: 20 images of 10), save through JSON, continue in a new loader
      const first = new BatchLoader(data, options);
      for (let i = 0; i < 5; i++) first.next().images.dispose();
      const saved: LoaderState = JSON.parse(JSON.stringify(first.getState()));
      const resumed = new BatchLoader(data, options);
      resumed.setState(saved);
      for (let i = 5; i < 12; i++) {
        const batch = resumed.next();
        assert.deepStrictEqual([...batch.images.dataSync(), ...batch.labels], expected[i], `batch ${i} (images and labels) differs after resume`);
        batch.images.dispose();
      }
      assert.throws(() => new BatchLoader(tinyDataset(11), options).setState(saved), /11 images/);
    });

    it('flips horizontally about half the time when enabled, never when disabled', () => {
      const data = tinyDataset(10);
      const count = (flip: boolean) => {
        const loader = new BatchLoader(data, { batch: 10, seed: 9, flip });
        let flipped = 0;
        for (let i = 0; i < 20; i++) {
          const batch = loader.next();
          const values = batch.images.dataSync();
          const decoded = decode(batch.images, data);
          // a mirrored image keeps its label (the tiny dataset's label of image i is i)
          assert.deepStrictEqual(Array.from(batch.labels), decoded.map((d) => data.labels[d.index]));
          // each image equals its source, either as is or mirrored left-right, pixel for pixel
          decoded.forEach(({ index, flipped: mirrored }, b) => {
            for (let y = 0; y < 3; y++) {
              for (let x = 0; x < 5; x++) {
                for (let c = 0; c < 2; c++) {
                  const sourceX = mirrored ? 4 - x : x;
                  const want = data.images[((index * 3 + y) * 5 + sourceX) * 2 + c] / 127.5 - 1;
                  assert.ok(Math.abs(values[((b * 3 + y) * 5 + x) * 2 + c] - want) < 1e-6);
                }
              }
            }
          });
          flipped += decoded.filter((d) => d.flipped).length;
          batch.images.dispose();
        }
        return flipped;
      };
      assert.strictEqual(count(false), 0);
      const flipped = count(true);
      assert.ok(flipped > 60 && flipped < 140, `${flipped} of 200 images flipped`);
    });

    it('scales uint8 to [-1, 1] as uint8 / 127.5 - 1 and leaks no tensors', () => {
      const images = Uint8Array.from([0, 255, 128, 1]);
      const data: ImageDataset = { name: 'four', split: 'train', source: 'test', count: 1, height: 2, width: 2, channels: 1, images, labels: Uint8Array.from([0]) };
      const before = tf.memory().numTensors;
      const loader = new BatchLoader(data, { batch: 1, seed: 0, flip: false });
      const { images: batch } = loader.next();
      assert.deepStrictEqual(batch.shape, [1, 2, 2, 1]);
      assert.strictEqual(batch.dtype, 'float32');
      const values = Array.from(batch.dataSync());
      assert.deepStrictEqual(values, [0, 255, 128, 1].map((u) => Math.fround(u / 127.5 - 1)));
      assert.strictEqual(values[0], -1);
      assert.strictEqual(values[1], 1);
      batch.dispose();
      assert.strictEqual(tf.memory().numTensors, before);
    });
  });
});
