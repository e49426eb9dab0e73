/**
 * Reference statistics as one file to share (`ect ref` writes it, `ect eval --ref` and `ect fd --ref` read it): an
 * .npz holding `mu` and `sigma` as EDM's fid.py reference does, the kept features for KID and precision/recall, and
 * `meta`, a JSON record of what they are (dataset, split, image count and hash, feature network and its weights'
 * digest). A reference is used only with the feature network it was made with.
 */
import * as fs from 'node:fs';
import { NpzWriter, readNpz, type NpyArray } from '../image/npz';
import type { FeatureNetwork } from './features';
import type { ReferenceKey, ReferenceStats } from './reference';

/** The `meta` record's format tag; a file without it (say, EDM's own reference) has no feature network to check. */
export const REFERENCE_FILE_FORMAT = 'ect-reference-file/1';

/** The JSON record stored as `meta` (uint8 bytes of UTF-8 JSON). */
export interface ReferenceFileMeta {
  format: typeof REFERENCE_FILE_FORMAT;
  key: ReferenceKey;          // dataset, split, count, images' SHA-256, feature network and its weights' SHA-256
  count: number;              // images the mean and covariance are over
  dim: number;                // feature dimension
  featureRows: number;        // rows of `features`
}

function bytesOf(values: Float64Array | Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** Writes a reference to `file` (.npz): mu, sigma (float64), features (float32), meta (JSON). */
export function writeReferenceFile(file: string, reference: ReferenceStats): void {
  const { stats } = reference;
  const meta: ReferenceFileMeta = { format: REFERENCE_FILE_FORMAT, key: reference.key, count: stats.count, dim: stats.dim, featureRows: reference.featureRows };
  const metaBytes = Buffer.from(JSON.stringify(meta), 'utf8');
  const temporary = `${file}.tmp-${process.pid}`;
  const npz = new NpzWriter(temporary);
  npz.begin('mu', '<f8', [stats.dim]);
  npz.write(bytesOf(stats.mean));
  npz.begin('sigma', '<f8', [stats.dim, stats.dim]);
  npz.write(bytesOf(stats.cov));
  npz.begin('features', '<f4', [reference.featureRows, stats.dim]);
  if (reference.featureRows) npz.write(bytesOf(reference.features));
  npz.begin('meta', '|u1', [metaBytes.length]);
  npz.write(metaBytes);
  npz.close();
  fs.renameSync(temporary, file);  // a crash leaves no half-written reference under the name
}

/** An array of the file, checked for its dtype and shape. */
function arrayOf(arrays: Map<string, NpyArray>, name: string, dtype: NpyArray['dtype'], shape: number[], file: string): NpyArray {
  const array = arrays.get(name);
  if (!array) throw new Error(`${file}: no '${name}' array; a reference file of \`ect ref\` holds mu, sigma, features and meta`);
  if (array.dtype !== dtype || array.shape.join() !== shape.join()) {
    throw new Error(`${file}: '${name}' is ${array.dtype} (${array.shape.join(', ')}), expected ${dtype} (${shape.join(', ')})`);
  }
  return array;
}

/** Reads a reference file written by writeReferenceFile; errors name the file and what is wrong with it. */
export function readReferenceFile(file: string): ReferenceStats {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such reference file (make one with \`ect ref\`)`);
  const arrays = readNpz(file);
  const metaArray = arrays.get('meta');
  if (!metaArray) {
    throw new Error(`${file}: no 'meta' record, so the feature network its statistics were made with is unknown ` +
      '(an EDM or guided-diffusion reference?); make one with `ect ref`, which records it');
  }
  let meta: ReferenceFileMeta;
  try {
    meta = JSON.parse(Buffer.from(metaArray.data).toString('utf8')) as ReferenceFileMeta;
  } catch (err) {
    throw new Error(`${file}: its 'meta' record is not JSON (${(err as Error).message})`);
  }
  if (meta.format !== REFERENCE_FILE_FORMAT) throw new Error(`${file}: meta.format is ${JSON.stringify(meta.format)}, expected ${REFERENCE_FILE_FORMAT}`);
  const { dim, featureRows } = meta;
  // copies (new Uint8Array, not a Buffer's slice, which is a view): the bytes sit at any offset of the file, typed arrays need theirs aligned
  const copy = (array: NpyArray) => new Uint8Array(array.data).buffer;
  const mean = new Float64Array(copy(arrayOf(arrays, 'mu', '<f8', [dim], file)));
  const cov = new Float64Array(copy(arrayOf(arrays, 'sigma', '<f8', [dim, dim], file)));
  const features = new Float32Array(copy(arrayOf(arrays, 'features', '<f4', [featureRows, dim], file)));
  return { key: meta.key, stats: { count: meta.count, dim, mean, cov }, features, featureRows };
}

/**
 * Throws unless `reference` was made with `net`: the same feature network and the same weights (their SHA-256).
 * Statistics of other features would give a number that means nothing.
 */
export function assertSameFeatures(reference: ReferenceStats, net: Pick<FeatureNetwork, 'name' | 'weightsHash' | 'dim'>, file: string): void {
  const { featureNetwork, weightsHash } = reference.key;
  if (featureNetwork !== net.name || weightsHash !== net.weightsHash || reference.stats.dim !== net.dim) {
    throw new Error(`${file}: made with the '${featureNetwork}' features (weights SHA-256 ${weightsHash.slice(0, 12)}..., ${reference.stats.dim} dimensions), ` +
      `but these images are embedded with '${net.name}' (weights SHA-256 ${net.weightsHash.slice(0, 12)}..., ${net.dim} dimensions); ` +
      'a reference is only comparable under the features it was made with: use the same --classifier or --inception, or make the reference again with `ect ref`');
  }
}
