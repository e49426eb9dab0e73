/**
 * Samples in the ecosystem's formats: an .npz that our reader and NumPy read back to the same uint8 NHWC values
 * (and labels), a folder of PNGs that decodes to them, and a grid; all with the grids' one float-to-uint8 mapping.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { PNG } from 'pngjs';
import { createSampleWriter, encodePng } from '../lib/image/export';
import { crc32, npyHeader, NpzWriter, parseNpy, readNpz } from '../lib/image/npz';
import { toUint8Images } from '../lib/image/pixels';
import { useTestBackend } from './helpers';

const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ect-export-'));
const PYTHON = '/usr/bin/python3';

/** Whether Debian's python3 with NumPy is here (python3-numpy comes with the torch part). */
function hasNumpy(): boolean {
  return fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;
}

/** Writes `batches` through a writer of `format` as the sampler would, batch by batch; returns the uint8 values. */
function writeBatches(format: 'grid' | 'png-dir' | 'npz', out: string, batches: tf.Tensor4D[], labels?: Int32Array[]): Uint8Array {
  const n = batches.reduce((sum, b) => sum + b.shape[0], 0);
  const [, h, w, c] = batches[0].shape;
  const writer = createSampleWriter(format, out, { n, shape: [h, w, c], columns: 3 });
  batches.forEach((b, i) => writer.write(b, labels?.[i]));
  assert.equal(writer.close(), out);
  const all = tf.concat(batches, 0) as tf.Tensor4D;
  const pixels = toUint8Images(all);
  all.dispose();
  return pixels;
}

describe('sample export formats', () => {
  before(useTestBackend);

  // 7 images of 5x4 in [-1.3, 1.3] (clipped at both ends), in batches of 3, 3 and 1
  const images = () => [3, 3, 1].map((count, k) =>
    tf.tidy(() => tf.sub(tf.mul(tf.randomUniform([count, 5, 4, 1], 0, 1, 'float32', 10 + k), 2.6), 1.3) as tf.Tensor4D));

  it('writes .npy headers NumPy reads: magic, version 1.0, dict, data 64-byte aligned', () => {
    const header = npyHeader('|u1', [7, 5, 4, 1]);
    assert.equal(header.length % 64, 0);
    assert.equal(header.subarray(0, 8).toString('latin1'), '\x93NUMPY\x01\x00');
    assert.equal(header.readUInt16LE(8), header.length - 10);
    assert.match(header.toString('latin1'), /^.{10}\{'descr': '\|u1', 'fortran_order': False, 'shape': \(7, 5, 4, 1\), \} *\n$/s);
    assert.match(npyHeader('<i8', [7]).toString('latin1'), /'shape': \(7,\)/);
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);  // the CRC-32 check value
  });

  it('round-trips an .npz: uint8 NHWC arr_0 and int64 arr_1 labels, read back by our reader (and by NumPy when present)', function () {
    const dir = tmpDir();
    const file = path.join(dir, 'samples.npz');
    const batches = images();
    const labels = [Int32Array.from([0, 1, 2]), Int32Array.from([9, 8, 7]), Int32Array.from([5])];
    const expected = writeBatches('npz', file, batches, labels);
    const arrays = readNpz(file);
    assert.deepEqual([...arrays.keys()], ['arr_0', 'arr_1']);
    const arr0 = arrays.get('arr_0')!;
    assert.equal(arr0.dtype, '|u1');
    assert.deepEqual(arr0.shape, [7, 5, 4, 1]);
    assert.deepEqual(Array.from(arr0.data), Array.from(expected));
    assert.ok(expected.includes(0) && expected.includes(255), 'values clipped at both ends');
    const arr1 = arrays.get('arr_1')!;
    assert.deepEqual([arr1.dtype, arr1.shape], ['<i8', [7]]);
    const ids = Array.from({ length: 7 }, (_, i) => Number(Buffer.from(arr1.data).readBigInt64LE(8 * i)));
    assert.deepEqual(ids, [0, 1, 2, 9, 8, 7, 5]);
    // the same pixels as the PNG grid's mapping, clamp(x * 127.5 + 128, 0, 255) truncated
    const floats = Array.from((tf.concat(batches, 0) as tf.Tensor4D).dataSync());
    assert.deepEqual(Array.from(arr0.data), floats.map((v) => Math.floor(Math.min(255, Math.max(0, v * 127.5 + 128)))));
    // an unconditional model's npz has arr_0 only
    const plain = path.join(dir, 'plain.npz');
    writeBatches('npz', plain, batches);
    assert.deepEqual([...readNpz(plain).keys()], ['arr_0']);
    batches.forEach((b) => b.dispose());

    if (!hasNumpy()) {
      console.log(`    (NumPy check skipped: ${PYTHON} has no numpy; apt-get install python3-numpy)`);
      return;
    }
    const script = [
      'import sys, json, numpy as np',
      'with np.load(sys.argv[1]) as f:',
      '    a, l = f["arr_0"], f["arr_1"]',
      '    print(json.dumps({"files": sorted(f.files), "shape": list(a.shape), "dtype": str(a.dtype), "values": a.ravel().tolist(),',
      '                      "ldtype": str(l.dtype), "labels": l.tolist()}))',
    ].join('\n');
    const run = spawnSync(PYTHON, ['-c', script, file], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const loaded = JSON.parse(run.stdout) as { files: string[]; shape: number[]; dtype: string; values: number[]; ldtype: string; labels: number[] };
    assert.deepEqual(loaded.files, ['arr_0', 'arr_1']);
    assert.deepEqual(loaded.shape, [7, 5, 4, 1]);
    assert.equal(loaded.dtype, 'uint8');
    assert.deepEqual(loaded.values, Array.from(expected));
    assert.equal(loaded.ldtype, 'int64');
    assert.deepEqual(loaded.labels, [0, 1, 2, 9, 8, 7, 5]);
  });

  it('reads an .npz that NumPy wrote (when NumPy is present)', function () {
    if (!hasNumpy()) this.skip();
    const file = path.join(tmpDir(), 'numpy.npz');
    const run = spawnSync(PYTHON, ['-c', 'import sys, numpy as np; np.savez(sys.argv[1], np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1))', file], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const arr0 = readNpz(file).get('arr_0')!;
    assert.deepEqual([arr0.dtype, arr0.shape], ['|u1', [2, 3, 4, 1]]);
    assert.deepEqual(Array.from(arr0.data), Array.from({ length: 24 }, (_, i) => i));
  });

  it('refuses an npz that is not complete, and labels with only some batches', () => {
    const dir = tmpDir();
    const batches = images();
    const writer = createSampleWriter('npz', path.join(dir, 'short.npz'), { n: 7, shape: [5, 4, 1] });
    writer.write(batches[0]);
    assert.throws(() => writer.close(), /3 of 7 images written/);
    const mixed = createSampleWriter('npz', path.join(dir, 'mixed.npz'), { n: 7, shape: [5, 4, 1] });
    mixed.write(batches[0], Int32Array.from([1, 2, 3]));
    mixed.write(batches[1]);
    mixed.write(batches[2]);
    assert.throws(() => mixed.close(), /labels for 3 of 7 images/);
    const npz = new NpzWriter(path.join(dir, 'raw.npz'));
    npz.begin('arr_0', '|u1', [2]);
    assert.throws(() => npz.write(new Uint8Array(3)), /more data than arr_0\.npy's shape holds/);
    assert.throws(() => parseNpy(new Uint8Array(16)), /no \\x93NUMPY magic/);
    batches.forEach((b) => b.dispose());
  });

  it('round-trips a folder of PNGs: 000000.png ... in image order, 8-bit grey for one channel, RGB for three', () => {
    const dir = path.join(tmpDir(), 'pngs');
    const batches = images();
    const expected = writeBatches('png-dir', dir, batches);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['000000.png', '000001.png', '000002.png', '000003.png', '000004.png', '000005.png', '000006.png']);
    for (let i = 0; i < 7; i++) {
      const bytes = fs.readFileSync(path.join(dir, `${String(i).padStart(6, '0')}.png`));
      assert.equal(bytes[25], 0, 'IHDR colour type 0: grey, as PIL opens it in mode L');
      assert.equal(bytes[24], 8, '8-bit');
      const png = PNG.sync.read(bytes);
      assert.deepEqual([png.width, png.height], [4, 5]);
      const grey = Array.from({ length: 20 }, (_, p) => png.data[4 * p]);
      assert.deepEqual(grey, Array.from(expected.subarray(20 * i, 20 * (i + 1))), `image ${i}`);
    }
    batches.forEach((b) => b.dispose());
    // three channels: RGB, each channel in place
    const rgb = Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => (i * 37) % 256);
    const png = PNG.sync.read(encodePng(rgb, 2, 3, 3));
    assert.equal(encodePng(rgb, 2, 3, 3)[25], 2, 'IHDR colour type 2: RGB');
    assert.deepEqual(Array.from({ length: 18 }, (_, i) => png.data[4 * Math.floor(i / 3) + (i % 3)]), Array.from(rgb));
  });

  it('writes a grid with the given columns, the same pixels as the images', () => {
    const file = path.join(tmpDir(), 'grid.png');
    const batches = images();
    const expected = writeBatches('grid', file, batches);
    const png = PNG.sync.read(fs.readFileSync(file));
    // 3 columns, 3 rows of 5x4 images with 2 pixels of padding
    assert.deepEqual([png.width, png.height], [3 * 6 + 2, 3 * 7 + 2]);
    // image 4 is in row 1, column 1
    const left = 2 + 6, top = 2 + 7;
    for (let y = 0; y < 5; y++) {
      for (let x = 0; x < 4; x++) assert.equal(png.data[4 * ((top + y) * png.width + left + x)], expected[4 * 20 + y * 4 + x]);
    }
    batches.forEach((b) => b.dispose());
  });
});
