/**
 * Tests of the Inception feature path without the real weights: the FID preprocessing against our own
 * legacy-bilinear reference, and the graph-model loader on a tiny model of the same interface that the
 * test writes in tensorflowjs_converter's format.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { INCEPTION_SIZE, InceptionFeatureNetwork, inceptionPreprocess } from '../lib/metrics/features';

const b64 = (text: string) => Buffer.from(text).toString('base64');
const dims = (shape: number[]) => ({ dim: shape.map((size) => ({ size: String(size) })) });

/** A graph model [N, 299, 299, 3] -> conv 3x3 stride 2 -> ReLU -> mean over space = "pool_3" [N, 1, 1, 4]. */
function writeTinyGraphModel(dir: string, kernel: Float32Array): void {
  const float = { type: 'DT_FLOAT' };
  const modelJson = {
    format: 'graph-model',
    generatedBy: 'ect-workbench test',
    convertedBy: 'hand-written in the tensorflowjs_converter format',
    modelTopology: {
      node: [
        { name: 'images', op: 'Placeholder', attr: { dtype: float, shape: { shape: dims([-1, INCEPTION_SIZE, INCEPTION_SIZE, 3]) } } },
        { name: 'kernel', op: 'Const', attr: { dtype: float, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dims([3, 3, 3, 4]) } } } },
        {
          name: 'conv', op: 'Conv2D', input: ['images', 'kernel'],
          attr: { T: float, strides: { list: { i: ['1', '2', '2', '1'] } }, padding: { s: b64('VALID') }, data_format: { s: b64('NHWC') }, dilations: { list: { i: ['1', '1', '1', '1'] } } },
        },
        { name: 'relu', op: 'Relu', input: ['conv'], attr: { T: float } },
        { name: 'axes', op: 'Const', attr: { dtype: { type: 'DT_INT32' }, value: { tensor: { dtype: 'DT_INT32', tensorShape: dims([2]) } } } },
        { name: 'pool_3', op: 'Mean', input: ['relu', 'axes'], attr: { T: float, Tidx: { type: 'DT_INT32' }, keep_dims: { b: true } } },
      ],
      library: {},
      versions: { producer: 1 },
    },
    weightsManifest: [{
      paths: ['group1-shard1of1.bin'],
      weights: [{ name: 'kernel', shape: [3, 3, 3, 4], dtype: 'float32' }, { name: 'axes', shape: [2], dtype: 'int32' }],
    }],
  };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(modelJson));
  const axes = new Int32Array([1, 2]);
  fs.writeFileSync(path.join(dir, 'group1-shard1of1.bin'), Buffer.concat([Buffer.from(kernel.buffer), Buffer.from(axes.buffer)]));
}

/** Legacy TensorFlow bilinear resize (align_corners = false, half_pixel_centers = false) of one HWC image, in plain numbers. */
function legacyResize(pixels: Float32Array, size: number, channels: number, out: number): Float64Array {
  const result = new Float64Array(out * out * channels);
  const scale = size / out;
  for (let y = 0; y < out; y++) {
    const sy = y * scale;
    const y0 = Math.floor(sy);
    const y1 = Math.min(y0 + 1, size - 1);
    const fy = sy - y0;
    for (let x = 0; x < out; x++) {
      const sx = x * scale;
      const x0 = Math.floor(sx);
      const x1 = Math.min(x0 + 1, size - 1);
      const fx = sx - x0;
      for (let c = 0; c < channels; c++) {
        const at = (yy: number, xx: number) => pixels[(yy * size + xx) * channels + c];
        const top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
        const bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
        result[(y * out + x) * channels + c] = top + (bottom - top) * fy;
      }
    }
  }
  return result;
}

function randomImages(shape: [number, number, number, number], seed: number): tf.Tensor4D {
  return tf.tidy(() => tf.clipByValue(tf.randomNormal(shape, 0, 0.6, 'float32', seed), -1.2, 1.2) as tf.Tensor4D);
}

describe('metrics: Inception feature network (without the real weights)', () => {
  let dir: string;
  const kernel = Float32Array.from({ length: 3 * 3 * 3 * 4 }, (_, i) => Math.sin(i * 1.7) * 0.5);

  before(async () => {
    await tf.setBackend('cpu');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-inception-'));
    writeTinyGraphModel(path.join(dir, 'model'), kernel);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('preprocesses as the FID reference: uint8 quantisation, legacy bilinear resize to 299, (p - 128) / 128', () => {
    const images = randomImages([1, 32, 32, 3], 5); // includes values outside [-1, 1], which clamp
    const values = images.dataSync();
    const quantised = Float32Array.from(values, (v) => Math.floor(Math.min(Math.max(v * 127.5 + 128, 0), 255)));
    const expected = legacyResize(quantised, 32, 3, INCEPTION_SIZE).map((p) => (p - 128) / 128);
    const actual = inceptionPreprocess(images);
    assert.deepEqual(actual.shape, [1, INCEPTION_SIZE, INCEPTION_SIZE, 3]);
    const got = actual.dataSync();
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - expected[i]));
    assert.ok(worst < 1e-5, `largest difference ${worst}`);
    images.dispose();
    actual.dispose();
  });

  it('maps the ends of [-1, 1] to pixel 0 and 255, and grey images to three equal channels', () => {
    const grey = tf.tensor4d([-1, 1, 0.25, -0.5], [1, 2, 2, 1]);
    const out = inceptionPreprocess(grey);
    const values = out.dataSync();
    assert.equal(values[0], -1); // pixel 0 at the top-left output
    assert.equal(values[1], values[0]);
    assert.equal(values[2], values[0]);
    assert.equal(Array.from(values).reduce((m, v) => Math.max(m, v), -Infinity), (255 - 128) / 128);
    grey.dispose();
    out.dispose();
  });

  it('loads a graph model directory and returns its pool features for generated images', async () => {
    const net = await InceptionFeatureNetwork.load(path.join(dir, 'model'));
    assert.equal(net.dim, 4);
    assert.equal(net.distanceName, 'fid');
    assert.match(net.weightsHash, /^[0-9a-f]{64}$/);
    const images = randomImages([3, 32, 32, 3], 9);
    const before = tf.memory().numTensors;
    const features = await net.embed(images);
    assert.equal(tf.memory().numTensors, before + 1, 'only the features tensor survives');
    assert.deepEqual(features.shape, [3, 4]);
    // the same computation written directly
    const expected = tf.tidy(() => {
      const conv = tf.conv2d(inceptionPreprocess(images), tf.tensor4d(kernel, [3, 3, 3, 4]), 2, 'valid');
      return tf.mean(tf.relu(conv), [1, 2]);
    });
    const got = features.dataSync();
    const want = expected.dataSync();
    want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) < 1e-5 * Math.max(1, Math.abs(w)), `feature ${i}: ${got[i]} vs ${w}`));
    [images, features, expected].forEach((t) => t.dispose());
    net.dispose();
  });

  it('changes its weights hash when a weight shard changes', async () => {
    const copy = path.join(dir, 'changed');
    writeTinyGraphModel(copy, kernel.map((v) => v * 2));
    const a = await InceptionFeatureNetwork.load(path.join(dir, 'model'));
    const b = await InceptionFeatureNetwork.load(copy);
    assert.notEqual(a.weightsHash, b.weightsHash);
    a.dispose();
    b.dispose();
  });

  it('names the file and the problem for a missing model, bad JSON or a missing shard', async () => {
    await assert.rejects(InceptionFeatureNetwork.load(path.join(dir, 'nowhere')), /nowhere[/\\]model\.json: not found/);
    const bad = path.join(dir, 'bad');
    fs.mkdirSync(bad);
    fs.writeFileSync(path.join(bad, 'model.json'), '{ not json');
    await assert.rejects(InceptionFeatureNetwork.load(bad), /bad[/\\]model\.json: not valid JSON/);
    const noShard = path.join(dir, 'no-shard');
    writeTinyGraphModel(noShard, kernel);
    fs.rmSync(path.join(noShard, 'group1-shard1of1.bin'));
    await assert.rejects(InceptionFeatureNetwork.load(noShard), /group1-shard1of1\.bin: weight shard listed in .*model\.json not found/);
  });
});
