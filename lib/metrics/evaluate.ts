/**
 * Sample-quality evaluation of a run: picks the feature network for its dataset, loads (or computes and
 * caches) the reference statistics, and scores generated images as metric columns for metrics.csv.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { RunConfig } from '../config/types';
import { limitDataset, loadDataset } from '../data';
import { ClassifierFeatureNetwork, DEFAULT_CLASSIFIER_DIR, InceptionFeatureNetwork, type FeatureNetwork } from './features';
import { frechetDistance } from './frechet';
import { DEFAULT_KID_OPTIONS, kernelDistance, type KidOptions } from './kid';
import { precisionRecall } from './precision-recall';
import { embedStream, loadOrComputeReference, type EmbeddedSet, type ReferenceStats } from './reference';

/** Options of `createRunEvaluator`; every field has a default. */
export interface RunEvaluatorOptions {
  inceptionDir?: string;          // TF.js graph model of the FID Inception (default $ECT_INCEPTION_DIR)
  classifierDir?: string;         // Fashion-MNIST classifier weights (default data/fmnist-classifier)
  cacheDir?: string;              // reference statistics cache (default $ECT_CACHE_DIR or ~/.cache/ect-workbench/reference-stats)
  referenceSplit?: 'train' | 'test'; // statistics of this split (the paper: the training set)
  referenceLimit?: number;        // use only the first N images of that split (0 or absent: all; quick checks)
  keepFeatures?: number;          // features kept per set for KID and precision/recall (10000)
  batch?: number;                 // images per feature-network call (250)
  kid?: Partial<KidOptions>;      // KID subsets (100 subsets of up to 1000)
  onInfo?: (message: string) => void;        // e.g. "reference statistics computed ..."
  onUnavailable?: (reason: string) => void;  // why createRunEvaluator returned null
}

/** Scores generated images against one dataset's reference statistics. */
export interface RunEvaluator {
  readonly featureNetwork: FeatureNetwork;
  readonly reference: ReferenceStats;
  /** Generates n images via generate(count, offset) (disposed here) and returns metric columns named with `label`. */
  evaluate(
    generate: (count: number, offset: number) => tf.Tensor4D,
    n: number,
    label: string,
    onProgress?: (done: number, total: number) => void,
  ): Promise<Record<string, number>>;
  dispose(): void;
}

/** Metric columns of a generated feature set against a reference: FD (or FID), KID and its std, precision, recall. */
export function scoreFeatures(
  net: Pick<FeatureNetwork, 'distanceName' | 'metricTag' | 'dim'>,
  reference: ReferenceStats,
  generated: EmbeddedSet,
  label: string,
  kid: Partial<KidOptions> = {},
): Record<string, number> {
  const suffix = label ? `_${label}` : '';
  const kidResult = kernelDistance(reference.features, reference.featureRows, generated.features, generated.featureRows, net.dim, kid);
  const pr = precisionRecall(reference.features, reference.featureRows, generated.features, generated.featureRows, net.dim);
  return {
    [`${net.distanceName}${suffix}`]: frechetDistance(reference.stats, generated.stats),
    [`kid${net.metricTag}${suffix}`]: kidResult.mean,
    [`kid_std${net.metricTag}${suffix}`]: kidResult.std,
    [`precision${net.metricTag}${suffix}`]: pr.precision,
    [`recall${net.metricTag}${suffix}`]: pr.recall,
  };
}

/** The feature network for a run's dataset, or the reason there is none. */
export async function featureNetworkFor(cfg: RunConfig, opts: RunEvaluatorOptions = {}): Promise<FeatureNetwork | { unavailable: string }> {
  switch (cfg.data.name) {
    case 'fashion-mnist':
      return ClassifierFeatureNetwork.load(opts.classifierDir ?? DEFAULT_CLASSIFIER_DIR);
    case 'cifar10': {
      const dir = opts.inceptionDir ?? process.env.ECT_INCEPTION_DIR;
      if (!dir) {
        return { unavailable: 'CIFAR-10 FID needs the Inception-v3 weights as a TF.js graph model: set ECT_INCEPTION_DIR or --inception (see docs/inception.md)' };
      }
      return InceptionFeatureNetwork.load(dir);
    }
    default:
      return { unavailable: `no feature network for dataset "${cfg.data.name}"` };
  }
}

/**
 * The evaluator for a run: null (with the reason passed to opts.onUnavailable) when its dataset has no
 * feature network here. Errors in a supplied network or dataset are thrown, not hidden.
 */
export async function createRunEvaluator(cfg: RunConfig, opts: RunEvaluatorOptions = {}): Promise<RunEvaluator | null> {
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
    // the reference is the whole split (unless referenceLimit), whatever data.limit the run trained on
    const dataset = limitDataset(loadDataset({ ...cfg.data, limit: undefined }, opts.referenceSplit ?? 'train'), opts.referenceLimit);
    const lookup = await loadOrComputeReference(net, dataset, { cacheDir: opts.cacheDir, keep, batch });
    opts.onInfo?.(lookup.source === 'cache'
      ? `reference statistics (${net.name}, ${dataset.name} ${dataset.split}) from ${lookup.note}`
      : `reference statistics (${net.name}, ${dataset.name} ${dataset.split}) computed: ${lookup.note}`);
    const reference = lookup.reference;
    return {
      featureNetwork: net,
      reference,
      async evaluate(generate, n, label, onProgress) {
        const generated = await embedStream(net, generate, n, { batch, keep, seed: 1, onProgress });
        return scoreFeatures(net, reference, generated, label, kid);
      },
      dispose: () => net.dispose(),
    };
  } catch (err) {
    net.dispose();
    throw err;
  }
}
