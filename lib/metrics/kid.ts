/** Kernel distance (KID): unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets. */
import * as tf from '@tensorflow/tfjs-core';
import { readAndDispose } from './fmnist-classifier';
import { seededPermutation } from '../random';

/** Options of `kernelDistance`; the defaults follow the usual KID protocol (100 subsets of 1000). */
export interface KidOptions {
  subsets: number;        // number of random subset pairs averaged
  subsetSize: number;     // samples per subset (capped by the smaller set)
  seed: number;           // subset sampling
}

export const DEFAULT_KID_OPTIONS: KidOptions = { subsets: 100, subsetSize: 1000, seed: 0 };

/** Mean and standard deviation of the per-subset MMD^2 estimates. */
export interface KidResult {
  mean: number;
  std: number;
  subsets: number;
  subsetSize: number;
}

/** Rows `indices` of a row-major feature matrix as a tensor. */
function gatherRows(features: Float32Array, dim: number, indices: Uint32Array, count: number): tf.Tensor2D {
  const out = new Float32Array(count * dim);
  for (let r = 0; r < count; r++) out.set(features.subarray(indices[r] * dim, (indices[r] + 1) * dim), r * dim);
  return tf.tensor2d(out, [count, dim]);
}

/**
 * Sum of all entries and of the diagonal of k(A, B) = (A B^T / dim + 1)^3: the Gram matrix comes from
 * a tf matMul (B transposed explicitly: the wasm backend's transposed matMul is slow), the kernel and
 * the sums are done here in Float64.
 */
function kernelSums(a: tf.Tensor2D, b: tf.Tensor2D, dim: number): { total: number; diagonal: number } {
  const gram = readAndDispose(tf.tidy(() => tf.matMul(a, tf.transpose(b))));
  const m = a.shape[0];
  const square = b.shape[0] === m;
  let total = 0;
  let diagonal = 0;
  for (let i = 0; i < gram.length; i++) {
    const base = gram[i] / dim + 1;
    total += base * base * base;
  }
  if (square) {
    for (let i = 0; i < m; i++) {
      const base = gram[i * m + i] / dim + 1;
      diagonal += base * base * base;
    }
  }
  return { total, diagonal };
}

/**
 * KID between two row-major feature sets: for each subset pair of size m,
 * MMD^2_u = [sum_{i!=j} k(x_i,x_j) + sum_{i!=j} k(y_i,y_j)] / (m(m-1)) - 2 sum_{i,j} k(x_i,y_j) / m^2.
 */
export function kernelDistance(
  real: Float32Array,
  realCount: number,
  fake: Float32Array,
  fakeCount: number,
  dim: number,
  options: Partial<KidOptions> = {},
): KidResult {
  const opts = { ...DEFAULT_KID_OPTIONS, ...options };
  if (real.length !== realCount * dim || fake.length !== fakeCount * dim) {
    throw new Error(`kernelDistance: feature arrays do not match ${realCount} and ${fakeCount} rows of dimension ${dim}`);
  }
  const m = Math.min(opts.subsetSize, realCount, fakeCount);
  if (m < 2) throw new Error(`kernelDistance: needs at least 2 samples in each set, got ${realCount} and ${fakeCount}`);
  const estimates: number[] = [];
  for (let s = 0; s < opts.subsets; s++) {
    const realRows = seededPermutation(realCount, opts.seed * 1_000_003 + 2 * s);
    const fakeRows = seededPermutation(fakeCount, opts.seed * 1_000_003 + 2 * s + 1);
    const x = gatherRows(real, dim, realRows, m);
    const y = gatherRows(fake, dim, fakeRows, m);
    const xx = kernelSums(x, x, dim);
    const yy = kernelSums(y, y, dim);
    const xy = kernelSums(x, y, dim);
    x.dispose();
    y.dispose();
    estimates.push((xx.total - xx.diagonal + yy.total - yy.diagonal) / (m * (m - 1)) - (2 * xy.total) / (m * m));
  }
  const mean = estimates.reduce((a, b) => a + b, 0) / estimates.length;
  const variance = estimates.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(estimates.length - 1, 1);
  return { mean, std: Math.sqrt(variance), subsets: opts.subsets, subsetSize: m };
}
