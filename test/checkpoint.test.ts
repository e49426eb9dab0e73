/** Tests of the checkpoint format: exact round trip, corruption and truncation detection, atomic save, latest/prune. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {
  Checkpoint, assertParamsMatch, checkpointPath, disposeCheckpoint, latestCheckpoint, loadCheckpoint, pruneCheckpoints, saveCheckpoint,
} from '../lib/train/checkpoint';

/** A small checkpoint with awkward values (subnormals, -0, extremes, NaN, int32 bounds) in three groups. */
function sampleCheckpoint(): Checkpoint {
  return {
    meta: { iteration: 1234, config: { batch: 8, lr: 1e-4 }, rng: { state: [1, 2, 3] }, loader: { epoch: 2, cursor: 17 } },
    groups: {
      params: new Map<string, tf.Tensor>([
        ['enc.16x16_block1.conv0.weight', tf.tensor4d([0.1, -0.2, 1e-40, -0, 3.4e38, NaN, Math.PI, -1], [2, 2, 1, 2])],
        ['enc.16x16_block1.conv0.bias', tf.tensor1d([0.5, -0.5])],
        ['scalar', tf.scalar(42.25)],
        ['empty', tf.zeros([0, 3])],
      ]),
      ema: new Map<string, tf.Tensor>([['enc.16x16_block1.conv0.bias', tf.tensor1d([0.25, -0.75])]]),
      counters: new Map<string, tf.Tensor>([['seen', tf.tensor1d([2147483647, -2147483648, 0], 'int32')]]),
    },
  };
}

describe('checkpoint', () => {
  let dir: string;

  before(async () => {
    await tf.setBackend('cpu');
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-ckpt-test-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('names checkpoints by zero-padded iteration', () => {
    assert.equal(checkpointPath('/runs/a/checkpoints', 1234), path.join('/runs/a/checkpoints', 'ckpt-000001234.ckpt'));
    assert.throws(() => checkpointPath(dir, -1), /integer >= 0/);
  });

  it('round-trips meta and tensors exactly (bit for bit, dtype and shape)', () => {
    const original = sampleCheckpoint();
    const file = checkpointPath(path.join(dir, 'nested'), 1234);
    saveCheckpoint(file, original);
    const loaded = loadCheckpoint(file);
    assert.deepEqual(loaded.meta, original.meta);
    assert.deepEqual(Object.keys(loaded.groups).sort(), ['counters', 'ema', 'params']);
    for (const [group, members] of Object.entries(original.groups)) {
      assert.deepEqual([...loaded.groups[group].keys()], [...members.keys()]);
      for (const [name, tensor] of members) {
        const back = loaded.groups[group].get(name)!;
        assert.equal(back.dtype, tensor.dtype, `${group}/${name} dtype`);
        assert.deepEqual(back.shape, tensor.shape, `${group}/${name} shape`);
        // compare the raw bits so that NaN, -0 and subnormals count
        const bits = (t: tf.Tensor): number[] => Array.from(new Uint32Array(t.dataSync().slice().buffer));
        assert.deepEqual(bits(back), bits(tensor), `${group}/${name} bits`);
      }
    }
    disposeCheckpoint(original);
    disposeCheckpoint(loaded);
  });

  it('stores float32 data little-endian right after an 8-byte aligned header', () => {
    const file = path.join(dir, 'one.ckpt');
    const value = tf.tensor1d([1.5]);
    saveCheckpoint(file, { meta: {}, groups: { params: new Map([['x', value]]) } });
    value.dispose();
    const bytes = fs.readFileSync(file);
    assert.equal(bytes.subarray(0, 7).toString('latin1'), 'ECTCKPT');
    const dataStart = 16 + bytes.readUInt32LE(12);
    assert.equal(dataStart % 8, 0);
    assert.equal(bytes.readFloatLE(dataStart), 1.5);
    assert.equal(bytes.length, dataStart + 4 + 32);
  });

  it('detects a truncated file and names it', () => {
    const file = path.join(dir, 'ckpt-000000001.ckpt');
    const original = sampleCheckpoint();
    saveCheckpoint(file, original);
    disposeCheckpoint(original);
    const size = fs.statSync(file).size;
    fs.truncateSync(file, size - 40);
    assert.throws(() => loadCheckpoint(file), (err: Error) => err.message.includes(file) && /truncated/.test(err.message));
    fs.truncateSync(file, 20);
    assert.throws(() => loadCheckpoint(file), (err: Error) => err.message.includes(file) && /truncated/.test(err.message));
  });

  it('detects a flipped byte anywhere (header, data, checksum) and names the file', () => {
    const file = path.join(dir, 'ckpt-000000001.ckpt');
    const original = sampleCheckpoint();
    saveCheckpoint(file, original);
    disposeCheckpoint(original);
    const good = fs.readFileSync(file);
    const dataStart = 16 + good.readUInt32LE(12);
    for (const position of [20, dataStart + 5, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[position] ^= 0x10;
      fs.writeFileSync(file, bad);
      assert.throws(() => loadCheckpoint(file), (err: Error) => err.message.includes(file) && /corrupt|checksum/.test(err.message), `flip at ${position}`);
    }
  });

  it('rejects a file with the wrong magic, a missing file and an unknown version', () => {
    const notCkpt = path.join(dir, 'weights.bin');
    fs.writeFileSync(notCkpt, Buffer.from('PK\u0003\u0004 this is a zip, not a checkpoint'));
    assert.throws(() => loadCheckpoint(notCkpt), (err: Error) => err.message.includes(notCkpt) && /wrong magic/.test(err.message));
    const missing = path.join(dir, 'nope.ckpt');
    assert.throws(() => loadCheckpoint(missing), (err: Error) => err.message.includes(missing) && /does not exist/.test(err.message));
    const file = path.join(dir, 'v.ckpt');
    saveCheckpoint(file, { meta: {}, groups: {} });
    const bytes = fs.readFileSync(file);
    bytes.writeUInt32LE(99, 8);
    fs.writeFileSync(file, bytes);
    assert.throws(() => loadCheckpoint(file), /format version 99/);
  });

  it('a crash between write and rename leaves the previous checkpoint intact and loadable', () => {
    const file = checkpointPath(dir, 100);
    const first = sampleCheckpoint();
    saveCheckpoint(file, first);
    disposeCheckpoint(first);
    // simulate a process that died mid-save: a partial temporary file next to the real one
    const partial = fs.readFileSync(file).subarray(0, 50);
    fs.writeFileSync(`${file}.tmp-99999`, partial);
    fs.writeFileSync(`${checkpointPath(dir, 200)}.tmp-99999`, partial);
    const loaded = loadCheckpoint(file);
    assert.equal(loaded.meta.iteration, 1234);
    disposeCheckpoint(loaded);
    assert.equal(latestCheckpoint(dir), file, 'temporary files are not checkpoints');
    // and a later save replaces the file without leaving its own temporary behind
    const second = sampleCheckpoint();
    second.meta.iteration = 5678;
    saveCheckpoint(file, second);
    disposeCheckpoint(second);
    const reloaded = loadCheckpoint(file);
    assert.equal(reloaded.meta.iteration, 5678);
    disposeCheckpoint(reloaded);
    assert.ok(!fs.existsSync(`${file}.tmp-${process.pid}`));
  });

  it('finds the latest checkpoint and prunes all but the newest N', () => {
    assert.equal(latestCheckpoint(path.join(dir, 'absent')), null);
    assert.equal(latestCheckpoint(dir), null);
    for (const iteration of [5, 1000, 20, 999]) saveCheckpoint(checkpointPath(dir, iteration), { meta: { iteration }, groups: {} });
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a checkpoint');
    assert.equal(latestCheckpoint(dir), checkpointPath(dir, 1000));
    pruneCheckpoints(dir, 2);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['ckpt-000000999.ckpt', 'ckpt-000001000.ckpt', 'notes.txt']);
    pruneCheckpoints(dir, 5);
    assert.equal(fs.readdirSync(dir).length, 3);
    assert.throws(() => pruneCheckpoints(dir, -1), /keep must be an integer >= 0/);
  });

  it('lists missing, unexpected and wrong-shape parameters in the mismatch error', () => tf.tidy(() => {
    const file = '/runs/x/checkpoints/ckpt-000000010.ckpt';
    const expected = new Map([['a.weight', { shape: [3, 3] }], ['b.bias', { shape: [4] }], ['c.weight', { shape: [2] }]]);
    const found = new Map<string, tf.Tensor>([['a.weight', tf.zeros([3, 3])], ['b.bias', tf.zeros([5])], ['z.extra', tf.zeros([1])]]);
    assert.throws(() => assertParamsMatch(file, expected, found), (err: Error) => {
      assert.ok(err.message.includes(file), 'names the file');
      assert.match(err.message, /missing \(1\): c\.weight/);
      assert.match(err.message, /unexpected \(1\): z\.extra/);
      assert.match(err.message, /wrong shape \(1\): b\.bias \(checkpoint \[5\], expected \[4\]\)/);
      assert.ok(!err.message.includes('a.weight'), 'a matching parameter is not listed');
      return true;
    });
    found.delete('z.extra');
    found.set('c.weight', tf.zeros([2]));
    found.set('b.bias', tf.zeros([4]));
    assert.doesNotThrow(() => assertParamsMatch(file, expected, found));
  }));
});
