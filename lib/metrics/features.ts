/**
 * Feature networks behind one interface: the FID Inception-v3 (a TensorFlow.js graph model the user
 * supplies, see docs/inception.md) and our Fashion-MNIST classifier (weights in data/fmnist-classifier).
 */
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { repositoryPath } from '../repository';
import { FEATURE_NAMINGS } from './columns';
import { loadClassifier, type FmnistClassifier } from './fmnist-classifier';

/** A network that maps images to feature vectors, plus what names its metrics. */
export interface FeatureNetwork {
  /** Short name: 'inception' or 'fmnist'. */
  readonly name: string;
  /** Metric column stem: 'fid' for real Inception, 'fd_fmnist' for the classifier (never called FID). */
  readonly distanceName: string;
  /** Suffix of the other metric columns: '' for Inception (kid, precision...), '_fmnist' otherwise. */
  readonly metricTag: string;
  /** SHA-256 of the weight files: part of the reference-statistics cache key. */
  readonly weightsHash: string;
  /** Feature dimension (2048 for Inception pool_3). */
  readonly dim: number;
  /** Image channels and side the network accepts as generated images (before its own resizing). */
  accepts(height: number, width: number, channels: number): string | null;
  /** Features [N, dim] of images in [-1, 1], NHWC; the caller disposes both tensors. */
  embed(images: tf.Tensor4D): Promise<tf.Tensor2D>;
  dispose(): void;
}

/** Side of the FID Inception input. */
export const INCEPTION_SIZE = 299;

/**
 * The FID reference's input pipeline, from images in [-1, 1]: quantise to uint8 as saved images are
 * (clamp(x * 127.5 + 128, 0, 255), truncated), grey to RGB, bilinear resize to 299x299 with the legacy
 * TensorFlow rule (align_corners = false, no half-pixel centres, as the 2015 graph's ResizeBilinear),
 * then (pixel - 128) / 128, which is what the graph's Sub and Mul nodes compute before the first conv.
 */
export function inceptionPreprocess(images: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const channels = images.shape[3];
    if (channels !== 1 && channels !== 3) throw new Error(`Inception features need 1 or 3 channels, got ${channels}`);
    let pixels = tf.floor(tf.clipByValue(tf.add(tf.mul(images, 127.5), 128), 0, 255)) as tf.Tensor4D;
    if (channels === 1) pixels = tf.tile(pixels, [1, 1, 1, 3]);
    const resized = tf.image.resizeBilinear(pixels, [INCEPTION_SIZE, INCEPTION_SIZE], false, false);
    return tf.div(tf.sub(resized, 128), 128) as tf.Tensor4D;
  });
}

/** SHA-256 over files in the given order (name and content), hex. */
export function hashFiles(files: string[]): string {
  const hash = crypto.createHash('sha256');
  for (const file of files) {
    hash.update(path.basename(file));
    hash.update(fs.readFileSync(file));
  }
  return hash.digest('hex');
}

interface GraphModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology?: unknown;
  weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  signature?: unknown;
  userDefinedMetadata?: { [key: string]: {} };
  modelInitializer?: unknown;
}

/** Reads a TensorFlow.js graph model directory (model.json + weight shards) from disk; returns the model and its weights hash. */
export async function loadGraphModelDir(dir: string): Promise<{ model: GraphModel; weightsHash: string }> {
  const modelPath = path.join(dir, 'model.json');
  if (!fs.existsSync(modelPath)) {
    throw new Error(`${modelPath}: not found; a TensorFlow.js graph model directory holds model.json and its .bin shards (see docs/inception.md)`);
  }
  let json: GraphModelJson;
  try {
    json = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
  } catch (err) {
    throw new Error(`${modelPath}: not valid JSON (${(err as Error).message})`);
  }
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new Error(`${modelPath}: no modelTopology or weightsManifest; is this a tensorflowjs_converter graph model?`);
  }
  if (json.format !== undefined && json.format !== 'graph-model') {
    throw new Error(`${modelPath}: format "${json.format}", expected "graph-model" (convert with --output_format=tfjs_graph_model)`);
  }
  const shardFiles = json.weightsManifest.flatMap((group) => group.paths.map((p) => path.join(dir, p)));
  for (const shard of shardFiles) if (!fs.existsSync(shard)) throw new Error(`${shard}: weight shard listed in ${modelPath} not found`);
  const buffers = shardFiles.map((shard) => fs.readFileSync(shard));
  const weightData = new Uint8Array(buffers.reduce((sum, b) => sum + b.length, 0));
  let offset = 0;
  for (const b of buffers) {
    weightData.set(b, offset);
    offset += b.length;
  }
  const weightSpecs = json.weightsManifest.flatMap((group) => group.weights);
  const handler: tf.io.IOHandler = {
    load: async () => ({
      modelTopology: json.modelTopology as tf.io.ModelArtifacts['modelTopology'],
      format: json.format,
      generatedBy: json.generatedBy,
      convertedBy: json.convertedBy,
      weightSpecs,
      weightData: weightData.buffer as ArrayBuffer,
      signature: json.signature as tf.io.ModelArtifacts['signature'],
      userDefinedMetadata: json.userDefinedMetadata,
      modelInitializer: json.modelInitializer as tf.io.ModelArtifacts['modelInitializer'],
    }),
  };
  let model: GraphModel;
  try {
    model = await loadGraphModel(handler);
  } catch (err) {
    throw new Error(`${modelPath}: TensorFlow.js could not build the graph model (${(err as Error).message})`);
  }
  return { model, weightsHash: hashFiles([modelPath, ...shardFiles]) };
}

/** Runs a graph model synchronously, or asynchronously when it has control flow or dynamic shapes. */
async function runGraphModel(model: GraphModel, input: tf.Tensor): Promise<tf.Tensor> {
  try {
    return model.execute(input) as tf.Tensor;
  } catch (err) {
    if (!/executeAsync/.test((err as Error).message)) throw err;
    return (await model.executeAsync(input)) as tf.Tensor;
  }
}

/** Inception-v3 pool_3 features from a graph model whose one input is the normalised 299x299 RGB batch. */
export class InceptionFeatureNetwork implements FeatureNetwork {
  readonly name = 'inception';
  readonly distanceName = FEATURE_NAMINGS.inception.distanceName;
  readonly metricTag = FEATURE_NAMINGS.inception.metricTag;

  private constructor(
    private readonly model: GraphModel,
    readonly weightsHash: string,
    readonly dim: number,
    readonly source: string,
  ) {}

  /** Loads the model from `dir` and checks it on one blank image: it must map [1, 299, 299, 3] to one vector. */
  static async load(dir: string): Promise<InceptionFeatureNetwork> {
    const { model, weightsHash } = await loadGraphModelDir(dir);
    if (model.inputs.length !== 1 || model.outputs.length !== 1) {
      model.dispose();
      throw new Error(`${dir}: expected one input and one output (pool_3), found ${model.inputs.length} inputs and ${model.outputs.length} outputs`);
    }
    const probe = tf.zeros([1, INCEPTION_SIZE, INCEPTION_SIZE, 3]) as tf.Tensor4D;
    let dim: number;
    try {
      const out = await runGraphModel(model, probe);
      dim = out.size;
      out.dispose();
    } catch (err) {
      model.dispose();
      throw new Error(`${dir}: the model does not run on a [1, 299, 299, 3] batch (${(err as Error).message})`);
    } finally {
      probe.dispose();
    }
    return new InceptionFeatureNetwork(model, weightsHash, dim, dir);
  }

  accepts(_height: number, _width: number, channels: number): string | null {
    return channels === 1 || channels === 3 ? null : `Inception features need 1 or 3 channels, got ${channels}`;
  }

  async embed(images: tf.Tensor4D): Promise<tf.Tensor2D> {
    const input = inceptionPreprocess(images);
    try {
      const out = await runGraphModel(this.model, input);
      const flat = tf.reshape(out, [images.shape[0], -1]) as tf.Tensor2D; // pool_3 is [N, 1, 1, 2048]
      out.dispose();
      return flat;
    } finally {
      input.dispose();
    }
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** Default location of the committed Fashion-MNIST classifier (relative to the package root). */
export const DEFAULT_CLASSIFIER_DIR = repositoryPath('data', 'fmnist-classifier');

/** Features of our Fashion-MNIST classifier's penultimate layer; its distance is `fd_fmnist`, not FID. */
export class ClassifierFeatureNetwork implements FeatureNetwork {
  readonly name = 'fmnist';
  readonly distanceName = FEATURE_NAMINGS.fmnist.distanceName;
  readonly metricTag = FEATURE_NAMINGS.fmnist.metricTag;
  readonly dim: number;

  constructor(private readonly classifier: FmnistClassifier, readonly weightsHash: string, readonly testAccuracy?: number) {
    this.dim = classifier.arch.hidden;
  }

  /** Loads the classifier from `dir` (default: data/fmnist-classifier). */
  static load(dir: string = DEFAULT_CLASSIFIER_DIR): ClassifierFeatureNetwork {
    const { model, manifest } = loadClassifier(dir);
    return new ClassifierFeatureNetwork(model, manifest.weightsSha256, manifest.testAccuracy);
  }

  accepts(height: number, width: number, channels: number): string | null {
    const a = this.classifier.arch;
    return height === a.imageSize && width === a.imageSize && channels === a.channels
      ? null
      : `the Fashion-MNIST classifier takes ${a.imageSize}x${a.imageSize}x${a.channels} images, got ${height}x${width}x${channels}`;
  }

  async embed(images: tf.Tensor4D): Promise<tf.Tensor2D> {
    return this.classifier.features(images);
  }

  dispose(): void {
    this.classifier.dispose();
  }
}
