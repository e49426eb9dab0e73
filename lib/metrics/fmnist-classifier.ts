/** A small Fashion-MNIST CNN, trained by our own code, whose penultimate layer is the `fmnist` feature network. */
import * as tf from '@tensorflow/tfjs-core';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import '../tf-gradients';
import { drawSeed, seededPermutation } from '../random';

/** Layer widths of the classifier; stored in the weights manifest so a file names its own shape. */
export interface ClassifierArch {
  imageSize: number;      // input side (28)
  channels: number;       // input channels (1)
  conv1: number;          // channels of the first 3x3 conv (28x28)
  conv2: number;          // channels of the second 3x3 conv (14x14)
  hidden: number;         // width of the penultimate dense layer = feature dimension
  classes: number;        // 10
}

export const DEFAULT_CLASSIFIER_ARCH: ClassifierArch = {
  imageSize: 28,
  channels: 1,
  conv1: 16,
  conv2: 32,
  hidden: 128,
  classes: 10,
};

/** Training options of `trainClassifier`. */
export interface ClassifierTrainOptions {
  epochs: number;         // passes over the training set
  batch: number;          // images per Adam step
  lr: number;             // Adam learning rate (decayed by cosine to 0 over the run)
  seed: number;           // weight init and shuffling
  onEpoch?: (epoch: number, meanLoss: number, seconds: number) => void;
}

export const DEFAULT_CLASSIFIER_TRAINING: ClassifierTrainOptions = {
  epochs: 6,
  batch: 128,
  lr: 2e-3,
  seed: 0,
};

/** Labelled uint8 NHWC images: the subset of lib/data's ImageDataset this module needs. */
export interface LabelledImages {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
  channels: number;
}

/** The file names inside a classifier weights directory. */
export const CLASSIFIER_MANIFEST = 'classifier.json';
export const CLASSIFIER_WEIGHTS = 'weights.bin';

/** What `classifier.json` holds next to the raw float32 weights. */
export interface ClassifierManifest {
  format: 'ect-fmnist-classifier/1';
  arch: ClassifierArch;
  weights: { name: string; shape: number[] }[]; // in file order, float32 little-endian
  weightsSha256: string;
  testAccuracy?: number;
  training?: Record<string, number | string>;
}

const PARAM_ORDER = ['conv1.w', 'conv1.b', 'conv2.w', 'conv2.b', 'fc1.w', 'fc1.b', 'fc2.w', 'fc2.b'];

function paramShapes(a: ClassifierArch): Record<string, number[]> {
  const pooledPixels = (a.imageSize / 4) * (a.imageSize / 4);
  return {
    'conv1.w': [9 * a.channels, a.conv1], // im2col layout: (dy, dx, cin) rows, as tf.conv2d's filter reshaped
    'conv1.b': [a.conv1],
    'conv2.w': [9 * a.conv1, a.conv2],
    'conv2.b': [a.conv2],
    'fc1.w': [pooledPixels * a.conv2, a.hidden],
    'fc1.b': [a.hidden],
    'fc2.w': [a.hidden, a.classes],
    'fc2.b': [a.classes],
  };
}

/**
 * 3x3 'same' convolution of the stored weights. They are kept as a [9 * cin, cout] matrix whose rows run over (dy, dx,
 * cin), which is exactly tf.conv2d's [3, 3, cin, cout] filter reshaped, so files written by earlier versions (which
 * convolved by patches x matrix) load unchanged.
 */
function conv3x3(x: tf.Tensor4D, weight: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor4D {
  const filter = tf.reshape(weight, [3, 3, x.shape[3], weight.shape[1]]) as tf.Tensor4D;
  return tf.add(tf.conv2d(x, filter, 1, 'same'), bias);
}

/** 2x2 max pooling through reshape + max, whose gradient exists on every backend. */
function maxPool2(x: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  return tf.max(tf.reshape(x, [n, h / 2, 2, w / 2, 2, c]), [2, 4]) as tf.Tensor4D;
}

/** The Fashion-MNIST classifier: two conv+pool stages, a hidden dense layer (the features), and logits. */
export class FmnistClassifier {
  readonly params = new Map<string, tf.Variable>();

  constructor(readonly arch: ClassifierArch, seed: number, initial?: Map<string, Float32Array>) {
    if (arch.imageSize % 4 !== 0) throw new Error(`classifier imageSize must be a multiple of 4, got ${arch.imageSize}`);
    const shapes = paramShapes(arch);
    PARAM_ORDER.forEach((name, index) => {
      const shape = shapes[name];
      const fanIn = shape.length === 2 ? shape[0] : 1;
      const value = initial?.get(name);
      const init = value
        ? tf.tensor(value, shape)
        : name.endsWith('.b')
          ? tf.zeros(shape)
          : tf.randomNormal(shape, 0, Math.sqrt(2 / fanIn), 'float32', drawSeed(seed, index, 'classifier-init')); // He init for ReLU
      this.params.set(name, tf.variable(init, true)); // unnamed: tfjs variable names must be unique across instances
      init.dispose();
    });
  }

  private p<R extends tf.Rank>(name: string): tf.Tensor<R> {
    return this.params.get(name) as unknown as tf.Tensor<R>;
  }

  /** Penultimate-layer activations (ReLU of the hidden dense layer) for images in [-1, 1], NHWC. */
  features(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const [n, h, w, c] = x.shape;
      const a = this.arch;
      if (h !== a.imageSize || w !== a.imageSize || c !== a.channels) {
        throw new Error(`classifier expects ${a.imageSize}x${a.imageSize}x${a.channels} images, got ${h}x${w}x${c}`);
      }
      const h1 = maxPool2(tf.relu(conv3x3(x, this.p('conv1.w'), this.p('conv1.b'))));
      const h2 = maxPool2(tf.relu(conv3x3(h1, this.p('conv2.w'), this.p('conv2.b'))));
      const flat = tf.reshape(h2, [n, -1]);
      return tf.relu(tf.add(tf.matMul(flat, this.p<tf.Rank.R2>('fc1.w')), this.p('fc1.b'))) as tf.Tensor2D;
    });
  }

  /** Class logits for images in [-1, 1], NHWC. */
  logits(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const hidden = this.features(x);
      return tf.add(tf.matMul(hidden, this.p<tf.Rank.R2>('fc2.w')), this.p('fc2.b')) as tf.Tensor2D;
    });
  }

  /** Frees the variables. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

/** uint8 NHWC images [start, start+count) of a dataset as a float tensor in [-1, 1]. */
export function imagesToTensor(data: LabelledImages, start: number, count: number): tf.Tensor4D {
  const pixels = data.height * data.width * data.channels;
  const bytes = data.images.subarray(start * pixels, (start + count) * pixels);
  const floats = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) floats[i] = bytes[i] / 127.5 - 1;
  return tf.tensor4d(floats, [count, data.height, data.width, data.channels]);
}

/**
 * The values of a tensor, which is then disposed. Read outside tf.tidy on purpose: a typed array returned
 * from tidy is walked element by element as a tensor container (seconds for a million values).
 */
export function readAndDispose(tensor: tf.Tensor): Float32Array | Int32Array | Uint8Array {
  const values = tensor.dataSync();
  tensor.dispose();
  return values;
}

/**
 * Mean softmax cross-entropy of logits against integer labels, with its own gradient
 * (softmax - onehot) / N so that the loss needs no further registered gradients.
 */
export function crossEntropyLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const [count, classes] = logits.shape;
  const oneHot = tf.oneHot(labels, classes);
  const lossFn = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [z, target] = args as tf.Tensor[];
    const save = args[2] as tf.GradSaveFunc;
    const logProbs = tf.logSoftmax(z);
    save([logProbs, target]);
    const value = tf.div(tf.neg(tf.sum(tf.mul(target, logProbs))), count) as tf.Scalar;
    return {
      value,
      gradFunc: (dy: tf.Scalar, saved: tf.Tensor[]) => {
        const [savedLogProbs, savedTarget] = saved;
        const dz = tf.mul(dy, tf.div(tf.sub(tf.exp(savedLogProbs), savedTarget), count));
        return [dz, tf.zerosLike(savedTarget)];
      },
    };
  });
  return lossFn(logits, oneHot) as tf.Scalar;
}

/** Trains a fresh classifier with Adam and softmax cross-entropy; returns it (the caller disposes). */
export function trainClassifier(
  train: LabelledImages,
  options: Partial<ClassifierTrainOptions> = {},
  arch: ClassifierArch = DEFAULT_CLASSIFIER_ARCH,
): FmnistClassifier {
  const opts = { ...DEFAULT_CLASSIFIER_TRAINING, ...options };
  const model = new FmnistClassifier(arch, opts.seed);
  const optimizer = tf.train.adam(opts.lr);
  const pixels = train.height * train.width * train.channels;
  const stepsPerEpoch = Math.floor(train.count / opts.batch);
  const totalSteps = stepsPerEpoch * opts.epochs;
  const batchBytes = new Uint8Array(opts.batch * pixels);
  const batchLabels = new Int32Array(opts.batch);
  const variables = [...model.params.values()];
  let step = 0;
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    const started = Date.now();
    const order = seededPermutation(train.count, drawSeed(opts.seed, epoch, 'classifier-order'));
    let lossSum = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      for (let i = 0; i < opts.batch; i++) {
        const index = order[s * opts.batch + i];
        batchBytes.set(train.images.subarray(index * pixels, (index + 1) * pixels), i * pixels);
        batchLabels[i] = train.labels[index];
      }
      // cosine decay: large steps early, small steps to settle at the end
      (optimizer as unknown as { learningRate: number }).learningRate = opts.lr * 0.5 * (1 + Math.cos((Math.PI * step) / totalSteps));
      const batch: LabelledImages = { ...train, images: batchBytes, count: opts.batch };
      const loss = tf.tidy(() => {
        const x = imagesToTensor(batch, 0, opts.batch);
        const labels = tf.tensor1d(batchLabels, 'int32');
        return optimizer.minimize(() => crossEntropyLoss(model.logits(x), labels), true, variables) as tf.Scalar;
      });
      lossSum += loss.dataSync()[0];
      loss.dispose();
      step++;
    }
    opts.onEpoch?.(epoch, lossSum / stepsPerEpoch, (Date.now() - started) / 1000);
  }
  optimizer.dispose();
  return model;
}

/** Fraction of correctly classified images. */
export function classifierAccuracy(model: FmnistClassifier, data: LabelledImages, batch = 500): number {
  let correct = 0;
  for (let start = 0; start < data.count; start += batch) {
    const count = Math.min(batch, data.count - start);
    const predicted = readAndDispose(tf.tidy(() => tf.argMax(model.logits(imagesToTensor(data, start, count)), 1)));
    for (let i = 0; i < count; i++) if (predicted[i] === data.labels[start + i]) correct++;
  }
  return correct / data.count;
}

/** SHA-256 of a byte buffer, hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/** Writes `classifier.json` and `weights.bin` into dir (created if needed); returns the manifest. */
export function saveClassifier(
  model: FmnistClassifier,
  dir: string,
  extra: Pick<ClassifierManifest, 'testAccuracy' | 'training'> = {},
): ClassifierManifest {
  const shapes = paramShapes(model.arch);
  const arrays = PARAM_ORDER.map((name) => model.params.get(name)!.dataSync() as Float32Array);
  const total = arrays.reduce((sum, a) => sum + a.length, 0);
  const all = new Float32Array(total);
  let offset = 0;
  for (const a of arrays) {
    all.set(a, offset);
    offset += a.length;
  }
  const bytes = new Uint8Array(all.buffer);
  const manifest: ClassifierManifest = {
    format: 'ect-fmnist-classifier/1',
    arch: model.arch,
    weights: PARAM_ORDER.map((name) => ({ name, shape: shapes[name] })),
    weightsSha256: sha256Hex(bytes),
    ...extra,
  };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, CLASSIFIER_WEIGHTS), bytes);
  fs.writeFileSync(path.join(dir, CLASSIFIER_MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

/** Reads a classifier written by `saveClassifier`; checks sizes and the weights hash. */
export function loadClassifier(dir: string): { model: FmnistClassifier; manifest: ClassifierManifest } {
  const manifestPath = path.join(dir, CLASSIFIER_MANIFEST);
  const weightsPath = path.join(dir, CLASSIFIER_WEIGHTS);
  if (!fs.existsSync(manifestPath)) {
    throw new Error(`${manifestPath}: classifier manifest not found (train one with \`ect train-classifier --out ${dir}\`)`);
  }
  let manifest: ClassifierManifest;
  try {
    manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  } catch (err) {
    throw new Error(`${manifestPath}: not valid JSON (${(err as Error).message})`);
  }
  if (manifest.format !== 'ect-fmnist-classifier/1') {
    throw new Error(`${manifestPath}: unknown format ${JSON.stringify(manifest.format)}, expected "ect-fmnist-classifier/1"`);
  }
  if (!fs.existsSync(weightsPath)) throw new Error(`${weightsPath}: classifier weights file not found`);
  const buffer = fs.readFileSync(weightsPath);
  const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const expected = paramShapes(manifest.arch);
  const floatsNeeded = PARAM_ORDER.reduce((sum, name) => sum + expected[name].reduce((a, b) => a * b, 1), 0);
  if (bytes.length !== floatsNeeded * 4) {
    throw new Error(`${weightsPath}: ${bytes.length} bytes, expected ${floatsNeeded * 4} for the architecture in ${CLASSIFIER_MANIFEST}`);
  }
  const hash = sha256Hex(bytes);
  if (hash !== manifest.weightsSha256) {
    throw new Error(`${weightsPath}: SHA-256 ${hash.slice(0, 12)}... does not match the manifest's ${manifest.weightsSha256.slice(0, 12)}... (corrupt or replaced file)`);
  }
  const floats = new Float32Array(bytes.slice().buffer);
  const initial = new Map<string, Float32Array>();
  let offset = 0;
  for (const name of PARAM_ORDER) {
    const size = expected[name].reduce((a, b) => a * b, 1);
    initial.set(name, floats.subarray(offset, offset + size));
    offset += size;
  }
  return { model: new FmnistClassifier(manifest.arch, 0, initial), manifest };
}
