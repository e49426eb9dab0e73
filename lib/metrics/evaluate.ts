/**
 * Sample-quality evaluation of a model, the one used in training, by `ect eval` and by the notebooks: picks
 * the feature network for the run's dataset, loads (or computes and caches) the reference statistics,
 * generates images from fixed evaluation noise and scores them as metric columns for metrics.csv.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { toUint8Images } from '../image/pixels';
import type { RunConfig } from '../config/types';
import { limitDataset, loadDataset, type ImageDataset, type Split } from '../data';
import { DEFAULT_SAMPLE_SEED, generateImages, samplerLabel, type ImageLabels, type SampleSteps, type SamplerModel } from '../sample';
import { evaluationColumns, FEATURE_NAMINGS, type FeatureNaming } from './columns';
import { ClassifierFeatureNetwork, DEFAULT_CLASSIFIER_DIR, InceptionFeatureNetwork, type FeatureNetwork } from './features';
import { imagesToTensor } from './fmnist-classifier';
import { frechetDistance } from './frechet';
import { DEFAULT_KID_OPTIONS, kernelDistance, type KidOptions } from './kid';
import { precisionRecall } from './precision-recall';
import { embedStream, loadOrComputeReference, type EmbeddedSet, type ReferenceStats } from './reference';
import { assertSameFeatures, readReferenceFile } from './reference-file';

/** Options of `createRunEvaluator`; every field has a default. */
export interface RunEvaluatorOptions {
  inceptionDir?: string;          // TF.js graph model of the FID Inception (default $ECT_INCEPTION_DIR)
  classifierDir?: string;         // Fashion-MNIST classifier weights (default data/fmnist-classifier)
  cacheDir?: string;              // reference statistics cache (default $ECT_CACHE_DIR or ~/.cache/ect-workbench/reference-stats)
  referenceSplit?: Split;          // statistics of this split (the paper: the training set)
  referenceLimit?: number;        // use only the first N images of that split (0 or absent: all; quick checks)
  referenceImages?: ImageDataset; // that split, whole, already loaded (the launcher's: a run reads its training split once)
  referenceFile?: string;         // reference statistics from this file (`ect ref`) instead of the dataset; made with the same features
  keepFeatures?: number;          // features kept per set for KID and precision/recall (10000)
  batch?: number;                 // images generated and embedded per call (250); does not change the images
  kid?: Partial<KidOptions>;      // KID subsets (100 subsets of up to 1000)
  onInfo?: (message: string) => void;        // e.g. "reference statistics computed ..."
  onUnavailable?: (reason: string) => void;  // why createRunEvaluator returned null
}

/** How one evaluation samples: how many images, from which noise, with which sampler settings. */
export interface EvaluateOptions {
  n: number;                      // generated images
  seed?: number;                  // evaluation noise seed (DEFAULT_SAMPLE_SEED): image i's noise depends on (seed, i) only
  midT?: number[];                // intermediate times of 2-step sampling (default: the model's)
  labels?: ImageLabels;           // a conditional model's classes: one for all, or one per image (default: drawn per image from the seed)
  label?: string;                 // column suffix (default: the sampler's, heun / 1step / 2step)
  onProgress?: (done: number, total: number) => void;
}

/** Scores generated images against one dataset's reference statistics. */
export interface SampleEvaluator {
  readonly featureNetwork: FeatureNetwork;
  readonly reference: ReferenceStats;
  /** The metric columns evaluate() returns for a sampler label (lib/metrics/columns.ts). */
  columns(label: string): string[];
  /**
   * Generates opts.n images of the model with the given sampler from the fixed evaluation noise of opts.seed
   * and returns the metric columns. The same checkpoint scores the same wherever it is evaluated.
   */
  evaluate(model: SamplerModel, steps: SampleSteps, opts: EvaluateOptions): Promise<Record<string, number>>;
  /**
   * Scores n images from any source (generate(count, offset) returns images offset .. offset+count-1 in [-1, 1], freed
   * here), as their 8-bit pixels (asSavedImages).
   */
  scoreImages(generate: (count: number, offset: number) => tf.Tensor4D, n: number, label: string,
    onProgress?: (done: number, total: number) => void): Promise<Record<string, number>>;
  dispose(): void;
}

/** Metric columns of a generated feature set against a reference: FD (or FID), KID and its std, precision, recall. */
export function scoreFeatures(
  net: FeatureNaming & Pick<FeatureNetwork, 'dim'>,
  reference: ReferenceStats,
  generated: EmbeddedSet,
  label: string,
  kid: Partial<KidOptions> = {},
): Record<string, number> {
  const columns = evaluationColumns(net, label);
  const kidResult = kernelDistance(reference.features, reference.featureRows, generated.features, generated.featureRows, net.dim, kid);
  const pr = precisionRecall(reference.features, reference.featureRows, generated.features, generated.featureRows, net.dim);
  return {
    [columns.fd]: frechetDistance(reference.stats, generated.stats),
    [columns.kid]: kidResult.mean,
    [columns.kid_std]: kidResult.std,
    [columns.precision]: pr.precision,
    [columns.recall]: pr.recall,
  };
}

/** A feature network's name (FeatureNetwork.name, recorded in every reference): the networks lib/metrics/columns.ts names. */
type FeatureNetworkName = keyof typeof FEATURE_NAMINGS;

/** The feature network of a name (a reference file records it), or the reason it cannot be loaded here. */
export async function loadFeatureNetwork(name: string, opts: Pick<RunEvaluatorOptions, 'classifierDir' | 'inceptionDir'> = {}): Promise<FeatureNetwork | { unavailable: string }> {
  switch (name) {
    case 'fmnist':
      return ClassifierFeatureNetwork.load(opts.classifierDir ?? DEFAULT_CLASSIFIER_DIR);
    case 'inception': {
      const dir = opts.inceptionDir ?? process.env.ECT_INCEPTION_DIR;
      if (!dir) {
        return { unavailable: 'FID needs the Inception-v3 weights as a TF.js graph model: set ECT_INCEPTION_DIR or --inception (see docs/inception.md)' };
      }
      return InceptionFeatureNetwork.load(dir);
    }
    default:
      return { unavailable: `no feature network named "${name}" (known: ${Object.keys(FEATURE_NAMINGS).join(', ')})` };
  }
}

/** The feature network of each dataset: the Fashion-MNIST classifier's (fd_fmnist), Inception's (FID). */
const DATASET_FEATURES: Record<string, FeatureNetworkName> = { 'fashion-mnist': 'fmnist', cifar10: 'inception' };

/** The feature network for a run's dataset, or the reason there is none. */
export async function featureNetworkFor(cfg: Pick<RunConfig, 'data'>, opts: RunEvaluatorOptions = {}): Promise<FeatureNetwork | { unavailable: string }> {
  const name = DATASET_FEATURES[cfg.data.name];
  if (!name) return { unavailable: `no feature network for dataset "${cfg.data.name}"` };
  const picked = await loadFeatureNetwork(name, opts);
  return 'unavailable' in picked && cfg.data.name === 'cifar10' ? { unavailable: `CIFAR-10 ${picked.unavailable}` } : picked;
}

/**
 * Generated images as a saved file holds them: quantised to uint8 (lib/image/pixels.ts, the one mapping of every
 * writer) and read back as dataset images are (imagesToTensor). Every image is scored this way, so a checkpoint scores
 * the same in `ect eval`, in training, and from its samples saved by `ect sample --format npz|png-dir`. Frees `images`.
 */
export function asSavedImages(images: tf.Tensor4D): tf.Tensor4D {
  const [count, height, width, channels] = images.shape;
  try {
    return imagesToTensor({ images: toUint8Images(images), count, height, width, channels, labels: new Uint8Array(0) }, 0, count);
  } finally {
    images.dispose();
  }
}

/** Reference statistics for an evaluator: from a file of `ect ref`, else the dataset split's (cached), announced through onInfo. */
async function referenceFor(net: FeatureNetwork, cfg: Pick<RunConfig, 'data'>, opts: RunEvaluatorOptions, keep: number, batch: number): Promise<ReferenceStats> {
  if (opts.referenceFile) {
    const reference = readReferenceFile(opts.referenceFile);
    assertSameFeatures(reference, net, opts.referenceFile);
    const { dataset, split, count } = reference.key;
    opts.onInfo?.(`reference statistics (${net.name}, ${dataset} ${split}, ${count} images) from ${opts.referenceFile}`);
    return reference;
  }
  // the reference is the whole split (unless referenceLimit), whatever data.limit the run trained on
  const split = opts.referenceSplit ?? 'train';
  if (opts.referenceImages && (opts.referenceImages.split !== split || opts.referenceImages.name !== cfg.data.name)) {
    throw new Error(`reference images: the ${opts.referenceImages.name} ${opts.referenceImages.split} split was given for the ${cfg.data.name} ${split} split`);
  }
  const dataset = limitDataset(opts.referenceImages ?? loadDataset({ ...cfg.data, limit: undefined }, split), opts.referenceLimit);
  const what = `reference statistics (${net.name}, ${dataset.name} ${dataset.split})`;
  let started = 0;
  let firstBatch: { done: number; at: number } | null = null;
  const lookup = await loadOrComputeReference(net, dataset, {
    cacheDir: opts.cacheDir, keep, batch,
    onCompute: (why) => {
      opts.onInfo?.(`${what}: none to reuse (${why}); computing them once from ${dataset.count} images, then cached`);
      started = Date.now();
    },
    // the time it will take, said after the second batch (the first one warms the backend up) rather than at the end
    onProgress: (done, total) => {
      if (!firstBatch) {
        firstBatch = { done, at: Date.now() };
      } else if (done < total && done - firstBatch.done <= batch) {
        const perImage = (Date.now() - firstBatch.at) / 1000 / (done - firstBatch.done);
        const seconds = (Date.now() - started) / 1000 + perImage * (total - done);
        opts.onInfo?.(`${what}: about ${Math.ceil(seconds)} s for ${total} images (timed on the second batch)`);
      }
    },
  });
  opts.onInfo?.(lookup.source === 'cache' ? `${what} from ${lookup.note}` : `${what} computed: ${lookup.note}`);
  return lookup.reference;
}

/**
 * The evaluator for a run: null (with the reason passed to opts.onUnavailable) when its dataset has no
 * feature network here. Errors in a supplied network or dataset are thrown, not hidden.
 */
export async function createRunEvaluator(cfg: Pick<RunConfig, 'data'>, opts: RunEvaluatorOptions = {}): Promise<SampleEvaluator | null> {
  const picked = await featureNetworkFor(cfg, opts);
  if ('unavailable' in picked) {
    opts.onUnavailable?.(picked.unavailable);
    return null;
  }
  const net = picked;
  const keep = opts.keepFeatures ?? 10000;
  const batch = opts.batch ?? 250;
  const kid = { ...DEFAULT_KID_OPTIONS, ...opts.kid };
  try {
    const reference = await referenceFor(net, cfg, opts, keep, batch);
    const scoreImages: SampleEvaluator['scoreImages'] = async (generate, n, label, onProgress) => {
      const generated = await embedStream(net, (count, offset) => asSavedImages(generate(count, offset)), n, { batch, keep, seed: 1, onProgress });
      return scoreFeatures(net, reference, generated, label, kid);
    };
    return {
      featureNetwork: net,
      reference,
      columns: (label) => Object.values(evaluationColumns(net, label)),
      scoreImages,
      evaluate: (model, steps, { n, seed = DEFAULT_SAMPLE_SEED, midT, labels, label = samplerLabel(steps), onProgress }) => {
        if (typeof labels === 'object' && labels.length !== n) throw new Error(`evaluate: ${labels.length} class labels for ${n} images`);
        // chunk k holds images offset .. offset+count-1 of the seed (and their classes), whatever the batch size
        const chunkLabels = (offset: number, count: number) => (typeof labels === 'object' ? Array.prototype.slice.call(labels, offset, offset + count) as number[] : labels);
        return scoreImages((count, offset) => generateImages(model, steps, count, { seed, start: offset, batch: count, midT, labels: chunkLabels(offset, count) }),
          n, label, onProgress);
      },
      dispose: () => net.dispose(),
    };
  } catch (err) {
    net.dispose();
    throw err;
  }
}
