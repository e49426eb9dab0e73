/**
 * Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
 * reaching each sample's k-th nearest neighbour; precision = share of generated samples inside the
 * real manifold, recall = share of real samples inside the generated one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readAndDispose } from './fmnist-classifier';

export interface PrecisionRecallOptions {
  k: number;              // neighbour whose distance is the ball radius (3 in the paper)
  blockRows: number;      // rows of the distance matrix computed at once (bounds memory)
}

export const DEFAULT_PRECISION_RECALL_OPTIONS: PrecisionRecallOptions = { k: 3, blockRows: 1000 };

export interface PrecisionRecall {
  precision: number;
  recall: number;
}

/** Squared norm of every row of a row-major matrix. */
function rowSquaredNorms(values: Float32Array, rows: number, dim: number): Float64Array {
  const norms = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = r * dim; i < (r + 1) * dim; i++) sum += values[i] * values[i];
    norms[r] = sum;
  }
  return norms;
}

/**
 * Calls visit(row, squaredDistances) for each row of `queries` with its squared distances to every row
 * of `points`: ||q - p||^2 = ||q||^2 + ||p||^2 - 2 q.p, the products from a tf matMul in row blocks.
 */
function forEachDistanceRow(
  queries: Float32Array, queryCount: number, points: Float32Array, pointCount: number, dim: number, blockRows: number,
  visit: (row: number, distances: Float64Array) => void,
): void {
  const queryNorms = rowSquaredNorms(queries, queryCount, dim);
  const pointNorms = rowSquaredNorms(points, pointCount, dim);
  // explicit transpose: the wasm backend's transposed matMul is several times slower
  const pointsT = tf.tidy(() => tf.transpose(tf.tensor2d(points, [pointCount, dim])));
  const distances = new Float64Array(pointCount);
  try {
    for (let start = 0; start < queryCount; start += blockRows) {
      const rows = Math.min(blockRows, queryCount - start);
      const products = readAndDispose(tf.tidy(() =>
        tf.matMul(tf.tensor2d(queries.subarray(start * dim, (start + rows) * dim), [rows, dim]), pointsT)));
      for (let r = 0; r < rows; r++) {
        const qn = queryNorms[start + r];
        for (let j = 0; j < pointCount; j++) distances[j] = Math.max(qn + pointNorms[j] - 2 * products[r * pointCount + j], 0);
        visit(start + r, distances);
      }
    }
  } finally {
    pointsT.dispose();
  }
}

/** Squared distance of each row to its k-th nearest other row of the same set. */
export function kthNeighbourRadii(points: Float32Array, count: number, dim: number, k: number, blockRows = 1000): Float64Array {
  if (count <= k) throw new Error(`precision/recall: need more than k = ${k} samples per set, got ${count}`);
  const radii = new Float64Array(count);
  const smallest = new Float64Array(k + 1); // sorted ascending; includes the point itself at distance 0
  forEachDistanceRow(points, count, points, count, dim, blockRows, (row, distances) => {
    smallest.fill(Infinity);
    for (let j = 0; j < count; j++) {
      const value = j === row ? 0 : distances[j];
      if (value >= smallest[k]) continue;
      let slot = k;
      while (slot > 0 && smallest[slot - 1] > value) {
        smallest[slot] = smallest[slot - 1];
        slot--;
      }
      smallest[slot] = value;
    }
    radii[row] = smallest[k];
  });
  return radii;
}

/** Share of `queries` rows inside at least one ball (a row of `centres` with its squared radius). */
function coverage(queries: Float32Array, queryCount: number, centres: Float32Array, radii: Float64Array, dim: number, blockRows: number): number {
  let inside = 0;
  forEachDistanceRow(queries, queryCount, centres, radii.length, dim, blockRows, (_row, distances) => {
    for (let j = 0; j < radii.length; j++) {
      if (distances[j] <= radii[j]) {
        inside++;
        return;
      }
    }
  });
  return inside / queryCount;
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
  const realRadii = kthNeighbourRadii(real, realCount, dim, opts.k, opts.blockRows);
  const fakeRadii = kthNeighbourRadii(fake, fakeCount, dim, opts.k, opts.blockRows);
  return {
    precision: coverage(fake, fakeCount, real, realRadii, dim, opts.blockRows),
    recall: coverage(real, realCount, fake, fakeRadii, dim, opts.blockRows),
  };
}
