/** Tests of KID (unbiased MMD^2, cubic kernel) and k-NN precision/recall on Gaussian feature sets. */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { normalSamples } from '../lib/random';
import { kernelDistance } from '../lib/metrics/kid';
import { kthNeighbourRadii, precisionRecall } from '../lib/metrics/precision-recall';

/** rows x dim seeded standard normals, each coordinate scaled and shifted. */
function gaussian(rows: number, dim: number, seed: number, shift = 0, scale = 1): Float32Array {
  return Float32Array.from(normalSamples(seed, rows * dim), (z) => shift + scale * z);
}

describe('metrics: KID', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  const dim = 16;
  const n = 400;
  const options = { subsets: 20, subsetSize: 200, seed: 1 };

  it('is near 0 for two samples of one distribution and clearly positive for a shifted one', () => {
    const real = gaussian(n, dim, 1);
    const same = kernelDistance(real, n, gaussian(n, dim, 2), n, dim, options);
    const shifted = kernelDistance(real, n, gaussian(n, dim, 3, 0.5), n, dim, options);
    assert.ok(Math.abs(same.mean) < 3 * same.std / Math.sqrt(options.subsets) + 1e-3, `same distribution: ${same.mean} +- ${same.std}`);
    assert.ok(shifted.mean > 10 * Math.abs(same.mean) && shifted.mean > 5 * shifted.std, `shifted: ${shifted.mean} +- ${shifted.std}`);
  });

  it('grows with the shift', () => {
    const real = gaussian(n, dim, 4);
    const small = kernelDistance(real, n, gaussian(n, dim, 5, 0.25), n, dim, options).mean;
    const large = kernelDistance(real, n, gaussian(n, dim, 5, 0.75), n, dim, options).mean;
    assert.ok(large > small && small > 0, `${small} then ${large}`);
  });

  it('equals the unbiased MMD^2 computed entry by entry when there is one subset covering both sets', () => {
    const m = 30;
    const d = 4;
    const x = gaussian(m, d, 7);
    const y = gaussian(m, d, 8, 0.3, 1.5);
    const k = (a: Float32Array, i: number, b: Float32Array, j: number) => {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += a[i * d + c] * b[j * d + c];
      return (dot / d + 1) ** 3;
    };
    let xx = 0;
    let yy = 0;
    let xy = 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < m; j++) {
        if (i !== j) {
          xx += k(x, i, x, j);
          yy += k(y, i, y, j);
        }
        xy += k(x, i, y, j);
      }
    }
    const expected = (xx + yy) / (m * (m - 1)) - (2 * xy) / (m * m);
    const result = kernelDistance(x, m, y, m, d, { subsets: 1, subsetSize: m });
    assert.ok(Math.abs(result.mean - expected) < 1e-5 * Math.abs(expected), `${result.mean} vs ${expected}`);
  });

  it('rejects feature arrays that do not match their row counts', () => {
    assert.throws(() => kernelDistance(new Float32Array(10), 3, new Float32Array(12), 3, 4), /do not match 3 and 3 rows of dimension 4/);
  });
});

describe('metrics: precision and recall (k = 3)', () => {
  const dim = 8;
  const n = 300;

  it('finds the k-th neighbour distance, excluding the point itself', () => {
    const points = Float32Array.from([0, 1, 3, 6, 10]); // one-dimensional
    const radii = kthNeighbourRadii(points, 5, 1, 3);
    // point 0: neighbours at 1, 3, 6 -> 3rd is 6 (squared 36); point 10: 4, 7, 9 -> 81
    assert.equal(radii[0], 36);
    assert.equal(radii[4], 81);
  });

  it('is high for two samples of one distribution and near 0 for disjoint ones', () => {
    const real = gaussian(n, dim, 11);
    const same = precisionRecall(real, n, gaussian(n, dim, 12), n, dim);
    assert.ok(same.precision > 0.6 && same.recall > 0.6, JSON.stringify(same));
    const far = precisionRecall(real, n, gaussian(n, dim, 13, 20), n, dim);
    assert.equal(far.precision, 0);
    assert.equal(far.recall, 0);
  });

  it('tells low diversity (high precision, low recall) from noise (low precision, high recall)', () => {
    const real = gaussian(n, dim, 21);
    const collapsed = precisionRecall(real, n, gaussian(n, dim, 22, 0, 0.3), n, dim);
    assert.ok(collapsed.precision > 0.9 && collapsed.recall < 0.3, `collapsed ${JSON.stringify(collapsed)}`);
    const spread = precisionRecall(real, n, gaussian(n, dim, 23, 0, 3), n, dim);
    assert.ok(spread.precision < 0.3 && spread.recall > collapsed.recall, `spread ${JSON.stringify(spread)}`);
  });
});
