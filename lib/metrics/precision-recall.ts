/**
 * Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
 * reaching each sample's k-th nearest neighbour; precision = share of generated samples inside the
 * real manifold, recall = share of real samples inside the generated one.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface PrecisionRecallOptions {
  k: number;              // neighbour whose distance is the ball radius (3 in the paper)
  blockRows: number;      // rows of the distance matrix computed at once (bounds memory)
}

export const DEFAULT_PRECISION_RECALL_OPTIONS: PrecisionRecallOptions = { k: 3, blockRows: 1024 };

export interface PrecisionRecall {
  precision: number;
  recall: number;
}

/** Squared Euclidean distances between rows of `a` and rows of `b`, clamped at 0 against rounding. */
function squaredDistances(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const aNorms = tf.sum(tf.square(a), 1, true);
    const bNorms = tf.reshape(tf.sum(tf.square(b), 1), [1, -1]);
    // ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b
    return tf.relu(tf.sub(tf.add(aNorms, bNorms), tf.mul(2, tf.matMul(a, b, false, true)))) as tf.Tensor2D;
  });
}

/** Squared distance of each row to its k-th nearest other row of the same set. */
export function kthNeighbourRadii(points: tf.Tensor2D, k: number, blockRows: number): Float32Array {
  const n = points.shape[0];
  if (n <= k) throw new Error(`precision/recall: need more than k = ${k} samples per set, got ${n}`);
  const radii = new Float32Array(n);
  for (let start = 0; start < n; start += blockRows) {
    const rows = Math.min(blockRows, n - start);
    const block = tf.tidy(() => {
      const distances = squaredDistances(tf.slice(points, [start, 0], [rows, -1]), points);
      // the k+1 smallest include the point itself at distance 0
      return tf.neg(tf.topk(tf.neg(distances), k + 1).values).dataSync();
    });
    for (let r = 0; r < rows; r++) radii[start + r] = block[r * (k + 1) + k];
  }
  return radii;
}

/** Share of `queries` rows that fall inside at least one ball (centre row of `centres`, squared radius). */
function coverage(queries: tf.Tensor2D, centres: tf.Tensor2D, radii: Float32Array, blockRows: number): number {
  const n = queries.shape[0];
  const radiiRow = tf.tensor2d(radii, [1, radii.length]);
  let inside = 0;
  for (let start = 0; start < n; start += blockRows) {
    const rows = Math.min(blockRows, n - start);
    const margins = tf.tidy(() =>
      tf.min(tf.sub(squaredDistances(tf.slice(queries, [start, 0], [rows, -1]), centres), radiiRow), 1).dataSync(),
    );
    for (let r = 0; r < rows; r++) if (margins[r] <= 0) inside++;
  }
  radiiRow.dispose();
  return inside / n;
}

/** Precision and recall of generated features against real features (row-major, dimension `dim`). */
export function precisionRecall(
  real: Float32Array,
  realCount: number,
  fake: Float32Array,
  fakeCount: number,
  dim: number,
  options: Partial<PrecisionRecallOptions> = {},
): PrecisionRecall {
  const opts = { ...DEFAULT_PRECISION_RECALL_OPTIONS, ...options };
  if (real.length !== realCount * dim || fake.length !== fakeCount * dim) {
    throw new Error(`precisionRecall: feature arrays do not match ${realCount} and ${fakeCount} rows of dimension ${dim}`);
  }
  const realTensor = tf.tensor2d(real, [realCount, dim]);
  const fakeTensor = tf.tensor2d(fake, [fakeCount, dim]);
  try {
    const realRadii = kthNeighbourRadii(realTensor, opts.k, opts.blockRows);
    const fakeRadii = kthNeighbourRadii(fakeTensor, opts.k, opts.blockRows);
    return {
      precision: coverage(fakeTensor, realTensor, realRadii, opts.blockRows),
      recall: coverage(realTensor, fakeTensor, fakeRadii, opts.blockRows),
    };
  } finally {
    realTensor.dispose();
    fakeTensor.dispose();
  }
}
