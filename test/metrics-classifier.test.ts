/** Tests of the Fashion-MNIST classifier: it learns, its files round-trip and are checked, and the committed one is >= 90% accurate. */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { loadDataset } from '../lib/data';
import { DEFAULT_CLASSIFIER_DIR } from '../lib/metrics/features';
import {
  classifierAccuracy, CLASSIFIER_MANIFEST, CLASSIFIER_WEIGHTS, imagesToTensor, loadClassifier, saveClassifier, trainClassifier,
} from '../lib/metrics/fmnist-classifier';
import { trainClassifierCommand } from '../cli/commands/metrics';
import { registerWasmTrainingKernels } from '../lib/backend/wasm-kernels';
import { requireSystemPart } from './helpers';

describe('metrics: Fashion-MNIST classifier', () => {
  let previousBackend: string;
  let dir: string;
  const train = () => loadDataset({ name: 'fashion-mnist', flip: false, limit: 512 }, 'train');

  before(async function () {
    requireSystemPart(this, 'dataset');
    previousBackend = tf.getBackend() ?? 'cpu';
    await tf.setBackend('wasm');
    registerWasmTrainingKernels();  // the convolutions' gradients on wasm, as initBackend registers them
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-classifier-'));
  });
  after(async () => {
    if (!dir) return;  // skipped
    fs.rmSync(dir, { recursive: true, force: true });
    await tf.setBackend(previousBackend);
  });

  it('learns: the training loss falls over two epochs and no tensor leaks', () => {
    const losses: number[] = [];
    const before = tf.memory().numTensors;
    const model = trainClassifier(train(), { epochs: 2, batch: 64, seed: 3, onEpoch: (_e, loss) => losses.push(loss) });
    assert.ok(losses[1] < losses[0], `epoch losses ${losses}`);
    assert.equal(tf.memory().numTensors, before + model.params.size, 'only the parameters stay');
    model.dispose();
  });

  it('`ect train-classifier` builds the widths it is given, and the saved file names them', async () => {
    const out = path.join(dir, 'wide');
    const lines: string[] = [];
    await trainClassifierCommand({
      out, epochs: 1, batch: 128, lr: 2e-3, seed: 5, limit: 512, backend: 'wasm', conv1: 8, conv2: 12, hidden: 24,
    }, (line) => lines.push(line));
    const { model, manifest } = loadClassifier(out);
    assert.deepEqual([manifest.arch.conv1, manifest.arch.conv2, manifest.arch.hidden], [8, 12, 24]);
    const x = imagesToTensor({ ...train(), count: 4 }, 0, 4);
    assert.deepEqual(model.features(x).shape, [4, 24], 'the feature dimension is the hidden width');
    [x, model].forEach((t) => t.dispose());
    assert.ok(lines.some((line) => line.includes('convs 8/12, 24 features')), lines.join('\n'));
  });

  it('round-trips through its files, and rejects corrupt or missing ones by file name', () => {
    const model = trainClassifier(train(), { epochs: 1, batch: 128, seed: 1 });
    const out = path.join(dir, 'saved');
    saveClassifier(model, out, { testAccuracy: 0.5 });
    const { model: loaded, manifest } = loadClassifier(out);
    assert.equal(manifest.testAccuracy, 0.5);
    const x = imagesToTensor({ ...train(), count: 8 }, 0, 8);
    const a = model.logits(x).dataSync();
    const b = loaded.logits(x).dataSync();
    a.forEach((v, i) => assert.equal(b[i], v));
    [x, model, loaded].forEach((t) => t.dispose());

    const weights = path.join(out, CLASSIFIER_WEIGHTS);
    const bytes = fs.readFileSync(weights);
    bytes[100] ^= 1;
    fs.writeFileSync(weights, bytes);
    assert.throws(() => loadClassifier(out), /weights\.bin: SHA-256 .* does not match the manifest/);
    fs.writeFileSync(weights, bytes.subarray(0, 1000));
    assert.throws(() => loadClassifier(out), /weights\.bin: 1000 bytes, expected \d+/);
    fs.rmSync(path.join(out, CLASSIFIER_MANIFEST));
    assert.throws(() => loadClassifier(out), /classifier\.json: classifier manifest not found/);
  });

  it('the committed weights give the features the patch-matrix convolution of earlier versions gave', () => {
    // the earlier path: 3x3 'same' convolution as (9 shifted copies concatenated) x (the stored [9 cin, cout] matrix)
    const patchConv = (x: tf.Tensor4D, w: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor4D => {
      const [n, h, wd, c] = x.shape;
      const padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]);
      const shifts: tf.Tensor4D[] = [];
      for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) shifts.push(tf.slice(padded, [0, dy, dx, 0], [n, h, wd, c]));
      return tf.reshape(tf.add(tf.matMul(tf.reshape(tf.concat(shifts, 3), [n * h * wd, 9 * c]), w), b), [n, h, wd, w.shape[1]]);
    };
    const pool = (x: tf.Tensor4D) => tf.max(tf.reshape(x, [x.shape[0], x.shape[1] / 2, 2, x.shape[2] / 2, 2, x.shape[3]]), [2, 4]) as tf.Tensor4D;
    const { model } = loadClassifier(DEFAULT_CLASSIFIER_DIR);
    const x = imagesToTensor({ ...loadDataset({ name: 'fashion-mnist', flip: false, limit: 64 }, 'test') }, 0, 64);
    const p = (name: string) => model.params.get(name)! as unknown as tf.Tensor;
    const [now, before] = tf.tidy(() => {
      const h1 = pool(tf.relu(patchConv(x, p('conv1.w') as tf.Tensor2D, p('conv1.b') as tf.Tensor1D)));
      const h2 = pool(tf.relu(patchConv(h1, p('conv2.w') as tf.Tensor2D, p('conv2.b') as tf.Tensor1D)));
      const old = tf.relu(tf.add(tf.matMul(tf.reshape(h2, [64, -1]), p('fc1.w') as tf.Tensor2D), p('fc1.b')));
      return [model.features(x).dataSync(), old.dataSync()];
    });
    let worst = 0;
    let scale = 0;
    now.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - before[i])); scale = Math.max(scale, Math.abs(before[i])); });
    // float32 sums of 9 * cin and 7 * 7 * conv2 products in another order: differences of a few ulps of the largest feature
    assert.ok(worst <= 1e-5 * scale, `largest difference ${worst} against features up to ${scale}`);
    assert.ok(scale > 0);
    x.dispose();
    model.dispose();
  });

  it('the committed weights classify >= 90% of the 10,000 test images correctly', () => {
    const { model, manifest } = loadClassifier(DEFAULT_CLASSIFIER_DIR);
    const accuracy = classifierAccuracy(model, loadDataset({ name: 'fashion-mnist', flip: false }, 'test'));
    model.dispose();
    assert.ok(accuracy >= 0.9, `measured test accuracy ${accuracy}`);
    assert.ok(Math.abs(accuracy - (manifest.testAccuracy ?? 0)) < 1e-3, `measured ${accuracy}, recorded ${manifest.testAccuracy}`);
  });
});
