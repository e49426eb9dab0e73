/**
 * Reference statistics of a dataset split under a feature network, computed once and cached on disk.
 * The cache file records its key (dataset, split, image bytes' hash, feature network, weights' hash);
 * a cache whose key no longer matches is stale and is recomputed.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { FeatureNetwork } from './features';
import { imagesToTensor, type LabelledImages } from './fmnist-classifier';
import { seededPermutation } from '../random';
import { StatsAccumulator, type FeatureStats } from './frechet';

/** The images a reference is computed from (lib/data's ImageDataset fits). */
export interface ReferenceImages extends Omit<LabelledImages, 'labels'> {
  name: string;
  split: string;
}

/** What identifies a reference: any change here makes a cached file stale. */
export interface ReferenceKey {
  format: 'ect-reference-stats/1';
  dataset: string;
  split: string;
  count: number;
  imagesSha256: string;
  featureNetwork: string;
  weightsHash: string;
  featuresKept: number;
}

/** Mean and covariance of all reference features, plus a random subset of the features themselves (for KID and precision/recall). */
export interface ReferenceStats {
  key: ReferenceKey;
  stats: FeatureStats;
  features: Float32Array;    // featureRows x stats.dim, row-major
  featureRows: number;
}

/** Statistics and kept features of a feature set. */
export interface EmbeddedSet {
  stats: FeatureStats;
  features: Float32Array;
  featureRows: number;
}

/** Options of embedding a dataset or a stream of generated images. */
export interface EmbedOptions {
  batch: number;                  // images per feature-network call
  keep: number;                   // features kept for KID and precision/recall (a seeded random subset)
  seed: number;                   // which rows are kept
  onProgress?: (done: number, total: number) => void;
}

export const DEFAULT_EMBED_OPTIONS: EmbedOptions = { batch: 250, keep: 10000, seed: 0 };

/** Where reference statistics are cached unless told otherwise: $ECT_CACHE_DIR or ~/.cache/ect-workbench/reference-stats. */
export function defaultCacheDir(): string {
  return process.env.ECT_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'ect-workbench', 'reference-stats');
}

/**
 * Embeds `total` images produced batch by batch by `nextBatch(count, offset)` (the tensors are disposed
 * here), accumulating Float64 statistics and keeping a seeded random subset of the features.
 */
export async function embedStream(
  net: FeatureNetwork,
  nextBatch: (count: number, offset: number) => tf.Tensor4D,
  total: number,
  options: Partial<EmbedOptions> = {},
): Promise<EmbeddedSet> {
  const opts = { ...DEFAULT_EMBED_OPTIONS, ...options };
  if (!Number.isInteger(total) || total < 2) throw new Error(`feature statistics need at least 2 images, got ${total}`);
  const keepRows = Math.min(opts.keep, total);
  const keptSlot = new Int32Array(total).fill(-1);
  seededPermutation(total, opts.seed).subarray(0, keepRows).sort().forEach((row, slot) => (keptSlot[row] = slot));
  const accumulator = new StatsAccumulator(net.dim);
  const kept = new Float32Array(keepRows * net.dim);
  for (let offset = 0; offset < total; offset += opts.batch) {
    const count = Math.min(opts.batch, total - offset);
    const images = nextBatch(count, offset);
    let features: Float32Array;
    try {
      const [n, h, w, c] = images.shape;
      if (n !== count) throw new Error(`expected a batch of ${count} images, got ${n}`);
      const problem = net.accepts(h, w, c);
      if (problem) throw new Error(problem);
      const embedded = await net.embed(images);
      features = embedded.dataSync() as Float32Array;
      embedded.dispose();
    } finally {
      images.dispose();
    }
    accumulator.add(features, count);
    for (let r = 0; r < count; r++) {
      const slot = keptSlot[offset + r];
      if (slot >= 0) kept.set(features.subarray(r * net.dim, (r + 1) * net.dim), slot * net.dim);
    }
    opts.onProgress?.(offset + count, total);
  }
  return { stats: accumulator.finish(), features: kept, featureRows: keepRows };
}

/** Embeds every image of a uint8 dataset. */
export function embedDataset(net: FeatureNetwork, data: ReferenceImages, options: Partial<EmbedOptions> = {}): Promise<EmbeddedSet> {
  return embedStream(net, (count, offset) => imagesToTensor({ ...data, labels: new Uint8Array(0) }, offset, count), data.count, options);
}

/** The cache key of a dataset under a feature network. */
export function referenceKey(net: FeatureNetwork, data: ReferenceImages, featuresKept: number): ReferenceKey {
  return {
    format: 'ect-reference-stats/1',
    dataset: data.name,
    split: data.split,
    count: data.count,
    imagesSha256: crypto.createHash('sha256').update(data.images.subarray(0, data.count * data.height * data.width * data.channels)).digest('hex'),
    featureNetwork: net.name,
    weightsHash: net.weightsHash,
    featuresKept: Math.min(featuresKept, data.count),
  };
}

/** The cache files of a dataset split and feature network (the key inside decides whether they are current). */
export function referenceCachePaths(cacheDir: string, key: Pick<ReferenceKey, 'dataset' | 'split' | 'count' | 'featureNetwork'>): { json: string; bin: string } {
  const stem = path.join(cacheDir, `${key.dataset}-${key.split}${key.count}-${key.featureNetwork}`);
  return { json: `${stem}.json`, bin: `${stem}.bin` };
}

/** Fields in which two keys differ (empty: the same key). */
function keyDifferences(stored: Partial<ReferenceKey>, wanted: ReferenceKey): string[] {
  return (Object.keys(wanted) as (keyof ReferenceKey)[])
    .filter((field) => stored[field] !== wanted[field])
    .map((field) => `${field} ${JSON.stringify(stored[field])} -> ${JSON.stringify(wanted[field])}`);
}

/** Writes a reference: the binary first, then the JSON header naming its hash (a crash leaves no half-valid pair). */
export function saveReference(cacheDir: string, reference: ReferenceStats): void {
  fs.mkdirSync(cacheDir, { recursive: true });
  const { json, bin } = referenceCachePaths(cacheDir, reference.key);
  const { stats } = reference;
  const body = Buffer.concat([
    Buffer.from(stats.mean.buffer, stats.mean.byteOffset, stats.mean.byteLength),
    Buffer.from(stats.cov.buffer, stats.cov.byteOffset, stats.cov.byteLength),
    Buffer.from(reference.features.buffer, reference.features.byteOffset, reference.features.byteLength),
  ]);
  fs.writeFileSync(`${bin}.tmp-${process.pid}`, body);
  fs.renameSync(`${bin}.tmp-${process.pid}`, bin);
  const header = { key: reference.key, count: stats.count, dim: stats.dim, featureRows: reference.featureRows, binSha256: crypto.createHash('sha256').update(body).digest('hex') };
  fs.writeFileSync(`${json}.tmp-${process.pid}`, JSON.stringify(header, null, 2) + '\n');
  fs.renameSync(`${json}.tmp-${process.pid}`, json);
}

/** Result of a cache lookup: the reference, or why it could not be used. */
export type CachedReference = { reference: ReferenceStats } | { missing: string } | { stale: string };

/** Reads the cached reference for `key`; says whether it is missing, stale (key differs) or corrupt. */
export function readCachedReference(cacheDir: string, key: ReferenceKey): CachedReference {
  const { json, bin } = referenceCachePaths(cacheDir, key);
  if (!fs.existsSync(json) || !fs.existsSync(bin)) return { missing: `no cached reference at ${json}` };
  let header: { key: Partial<ReferenceKey>; count: number; dim: number; featureRows: number; binSha256: string };
  try {
    header = JSON.parse(fs.readFileSync(json, 'utf8'));
  } catch (err) {
    return { stale: `${json}: unreadable (${(err as Error).message})` };
  }
  const differences = keyDifferences(header.key ?? {}, key);
  if (differences.length) return { stale: `${json}: ${differences.join('; ')}` };
  const body = fs.readFileSync(bin);
  const d = header.dim;
  const expectedBytes = 8 * (d + d * d) + 4 * header.featureRows * d;
  if (body.length !== expectedBytes) return { stale: `${bin}: ${body.length} bytes, expected ${expectedBytes}` };
  if (crypto.createHash('sha256').update(body).digest('hex') !== header.binSha256) return { stale: `${bin}: SHA-256 does not match ${json}` };
  const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength).slice();
  const mean = new Float64Array(bytes.buffer, 0, d);
  const cov = new Float64Array(bytes.buffer, 8 * d, d * d);
  const features = new Float32Array(bytes.buffer, 8 * (d + d * d), header.featureRows * d);
  return { reference: { key, stats: { count: header.count, dim: d, mean, cov }, features, featureRows: header.featureRows } };
}

/** A reference and where it came from. */
export interface ReferenceLookup {
  reference: ReferenceStats;
  source: 'cache' | 'computed';
  note: string;              // why it was computed (missing or stale cache), or the file it came from
}

/**
 * Loads the cached reference statistics of `data` under `net`, computing and caching them when missing or stale
 * (`onCompute` hears why before that starts; `onProgress` follows the embedding).
 */
export async function loadOrComputeReference(
  net: FeatureNetwork,
  data: ReferenceImages,
  options: Partial<EmbedOptions> & { cacheDir?: string; onCompute?: (why: string) => void } = {},
): Promise<ReferenceLookup> {
  const opts = { ...DEFAULT_EMBED_OPTIONS, ...options };
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const key = referenceKey(net, data, opts.keep);
  const cached = readCachedReference(cacheDir, key);
  if ('reference' in cached) return { reference: cached.reference, source: 'cache', note: referenceCachePaths(cacheDir, key).json };
  options.onCompute?.('missing' in cached ? cached.missing : cached.stale);  // before the work, so that it can be announced
  const embedded = await embedDataset(net, data, opts);
  const reference: ReferenceStats = { key, ...embedded };
  saveReference(cacheDir, reference);
  return { reference, source: 'computed', note: 'missing' in cached ? cached.missing : `stale cache recomputed (${cached.stale})` };
}
