/** Tests of feature statistics and the Fréchet distance: closed forms, symmetry, rank deficiency, and a 200-bit reference. */
import { strict as assert } from 'assert';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { normalSamples } from '../lib/random';
import { featureStats, frechetDistance, StatsAccumulator, type FeatureStats } from '../lib/metrics/frechet';

/** Deterministic standard normals, so that every run sees the same inputs. */
function normals(count: number, seed: number): Float64Array {
  return normalSamples(seed, count);
}

/** rows x dim correlated features: z A + offset, so that covariances are full and not diagonal. */
function correlatedFeatures(rows: number, dim: number, seed: number, offset = 0): Float64Array {
  const z = normals(rows * dim, seed);
  const mixing = normals(dim * dim, seed + 1);
  const out = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dim; j++) {
      let value = offset;
      for (let i = 0; i < dim; i++) value += z[r * dim + i] * mixing[i * dim + j];
      out[r * dim + j] = value;
    }
  }
  return out;
}

function diagonalStats(mean: number[], variances: number[]): FeatureStats {
  const dim = mean.length;
  const cov = new Float64Array(dim * dim);
  variances.forEach((v, i) => (cov[i * dim + i] = v));
  return { count: 100, dim, mean: Float64Array.from(mean), cov };
}

// ---- A high-precision reference: fixed-point BigInt with FRACTION_BITS bits after the point. ----
const FRACTION_BITS = 200n;
const ONE = 1n << FRACTION_BITS;

function toFixed(x: number): bigint {
  // exact for our inputs' magnitudes down to 2^-80; the reference then carries 200 bits
  return BigInt(Math.round(x * 2 ** 80)) << (FRACTION_BITS - 80n);
}
function fromFixed(x: bigint): number {
  return Number(x >> (FRACTION_BITS - 80n)) / 2 ** 80;
}
function mulFixed(a: bigint, b: bigint): bigint {
  return (a * b) >> FRACTION_BITS;
}
function divFixed(a: bigint, b: bigint): bigint {
  return (a << FRACTION_BITS) / b;
}
function isqrt(n: bigint): bigint {
  if (n <= 0n) return 0n;
  let x = BigInt(Math.floor(Math.sqrt(Number(n))));
  for (;;) {
    const next = (x + n / x) >> 1n;
    if (next === x || next === x + 1n || next === x - 1n) {
      while (next * next > n && x * x > n) x -= 1n;
      return x * x > n ? x - 1n : x;
    }
    x = next;
  }
}

/**
 * FD with 200-bit fixed point: characteristic polynomial of S1 S2 (Faddeev-LeVerrier), its real roots
 * refined by Newton from double-precision estimates of a different route (general eigenvalues of
 * S1 S2), then ||dmu||^2 + tr S1 + tr S2 - 2 sum sqrt(lambda).
 */
function referenceFrechet(a: FeatureStats, b: FeatureStats): number {
  const d = a.dim;
  const s1 = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => toFixed(a.cov[i * d + j])));
  const s2 = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => toFixed(b.cov[i * d + j])));
  const matmul = (x: bigint[][], y: bigint[][]) =>
    x.map((row) => y[0].map((_, j) => row.reduce((sum, v, k) => sum + mulFixed(v, y[k][j]), 0n)));
  const product = matmul(s1, s2);
  // Faddeev-LeVerrier: coefficients c[d] = 1, ..., c[0] of det(lambda I - M)
  const coefficients: bigint[] = new Array(d + 1).fill(0n);
  coefficients[d] = ONE;
  let mk: bigint[][] = product.map((row) => row.map(() => 0n));
  for (let k = 1; k <= d; k++) {
    const next = matmul(product, mk);
    for (let i = 0; i < d; i++) next[i][i] += coefficients[d - k + 1];
    mk = next;
    const trace = matmul(product, mk).reduce((sum, row, i) => sum + row[i], 0n);
    coefficients[d - k] = -trace / BigInt(k);
  }
  const evaluate = (x: bigint) => coefficients.reduceRight((acc, c) => mulFixed(acc, x) + c, 0n);
  const derivative = (x: bigint) =>
    coefficients.slice(1).reduceRight((acc, c, i) => mulFixed(acc, x) + c * BigInt(i + 1), 0n);
  const plainProduct = new Matrix(Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => fromFixed(product[i][j]))));
  const estimates = new EigenvalueDecomposition(plainProduct).realEigenvalues;
  const roots = estimates.map((estimate) => {
    let x = toFixed(estimate);
    for (let iter = 0; iter < 200; iter++) {
      const step = divFixed(evaluate(x), derivative(x));
      x -= step;
      if (step === 0n || step === 1n || step === -1n) break;
    }
    return x;
  });
  // the roots must be distinct and sum to the trace, or Newton found one root twice
  const rootSum = roots.reduce((s, r) => s + r, 0n);
  const trace = product.reduce((s, row, i) => s + row[i], 0n);
  assert.ok(Math.abs(fromFixed(rootSum - trace)) < 1e-30 * Math.max(1, fromFixed(trace)), 'reference roots do not sum to the trace');
  let fd = 0n;
  for (let i = 0; i < d; i++) {
    const diff = toFixed(a.mean[i]) - toFixed(b.mean[i]);
    fd += mulFixed(diff, diff) + s1[i][i] + s2[i][i];
  }
  for (const root of roots) fd -= 2n * isqrt(root << FRACTION_BITS);
  return fromFixed(fd);
}

describe('metrics: feature statistics', () => {
  it('matches a two-pass Float64 mean and covariance, also with a large common offset', () => {
    const rows = 600; // more than one accumulation block of 256 rows
    const dim = 7;
    for (const offset of [0, 1e4]) {
      const features = correlatedFeatures(rows, dim, 11, offset);
      const stats = featureStats(features, rows, dim);
      for (let i = 0; i < dim; i++) {
        let mean = 0;
        for (let r = 0; r < rows; r++) mean += features[r * dim + i] / rows;
        assert.ok(Math.abs(stats.mean[i] - mean) <= 1e-12 * Math.abs(mean) + 1e-12);
        for (let j = 0; j < dim; j++) {
          let meanJ = 0;
          for (let r = 0; r < rows; r++) meanJ += features[r * dim + j] / rows;
          let cov = 0;
          for (let r = 0; r < rows; r++) cov += (features[r * dim + i] - mean) * (features[r * dim + j] - meanJ);
          cov /= rows - 1;
          assert.ok(Math.abs(stats.cov[i * dim + j] - cov) <= 1e-9 * (Math.abs(cov) + 1), `cov[${i},${j}] ${stats.cov[i * dim + j]} vs ${cov}`);
        }
      }
    }
  });

  it('gives the same statistics whether fed at once or in uneven batches', () => {
    const rows = 300;
    const dim = 5;
    const features = correlatedFeatures(rows, dim, 3);
    const whole = featureStats(features, rows, dim);
    const pieces = new StatsAccumulator(dim);
    for (const [start, end] of [[0, 1], [1, 120], [120, 300]]) pieces.add(features.subarray(start * dim, end * dim), end - start);
    const batched = pieces.finish();
    whole.cov.forEach((v, i) => assert.ok(Math.abs(v - batched.cov[i]) < 1e-12 * (Math.abs(v) + 1)));
  });

  it('rejects a non-finite feature and a wrong length with a clear message', () => {
    assert.throws(() => featureStats([1, 2, NaN, 4], 2, 2), /non-finite feature value NaN at row 1, column 0/);
    assert.throws(() => featureStats([1, 2, 3], 2, 2), /3 values is not 2 rows of dimension 2/);
  });
});

describe('metrics: Fréchet distance', () => {
  it('is 0 for identical feature sets', () => {
    const stats = featureStats(correlatedFeatures(400, 16, 5), 400, 16);
    const trace = stats.cov.filter((_, i) => i % 17 === 0).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(frechetDistance(stats, stats)) < 1e-10 * trace, `FD ${frechetDistance(stats, stats)}`);
  });

  it('is ||mu1 - mu2||^2 when the covariances are equal', () => {
    const a = featureStats(correlatedFeatures(300, 12, 8), 300, 12);
    const shift = normals(12, 99);
    const b: FeatureStats = { ...a, mean: a.mean.map((m, i) => m + shift[i]) };
    const expected = shift.reduce((s, v) => s + v * v, 0);
    assert.ok(Math.abs(frechetDistance(a, b) - expected) < 1e-9 * expected);
  });

  it('matches the closed form for diagonal covariances: sum (sqrt(a_i) - sqrt(b_i))^2 + ||dmu||^2', () => {
    const a = diagonalStats([0, 1, 2, -1], [1, 4, 0.25, 9]);
    const b = diagonalStats([1, 1, 0, 0], [4, 1, 1, 0]); // one zero variance: rank-deficient
    const expected = (1 + 0 + 4 + 1) + (1 + 1 + 0.25 + 9);
    assert.ok(Math.abs(frechetDistance(a, b) - expected) < 1e-12 * expected, `${frechetDistance(a, b)} vs ${expected}`);
  });

  it('is symmetric', () => {
    const a = featureStats(correlatedFeatures(200, 10, 21), 200, 10);
    const b = featureStats(correlatedFeatures(200, 10, 22, 0.3), 200, 10);
    const ab = frechetDistance(a, b);
    const ba = frechetDistance(b, a);
    assert.ok(ab > 0);
    assert.ok(Math.abs(ab - ba) < 1e-10 * ab, `${ab} vs ${ba}`);
  });

  it('stays finite and non-negative on rank-deficient covariances (fewer samples than dimensions, constant features)', () => {
    const dim = 32;
    const rows = 10; // covariance rank <= 9
    const a = correlatedFeatures(rows, dim, 31);
    const b = correlatedFeatures(rows, dim, 32, 0.5);
    for (let r = 0; r < rows; r++) {
      a[r * dim] = 1; // a constant feature: a zero row and column
      b[r * dim + 1] = 0;
    }
    const fd = frechetDistance(featureStats(a, rows, dim), featureStats(b, rows, dim));
    assert.ok(Number.isFinite(fd), `FD ${fd}`);
    assert.ok(fd > 0);
    const self = featureStats(a, rows, dim);
    const selfFd = frechetDistance(self, self);
    const trace = self.cov.filter((_, i) => i % (dim + 1) === 0).reduce((x, y) => x + y, 0);
    assert.ok(Number.isFinite(selfFd) && Math.abs(selfFd) < 1e-9 * trace, `self FD ${selfFd} (trace ${trace})`);
  });

  it('matches a 200-bit fixed-point reference on random inputs to 1e-6 relative', () => {
    for (const seed of [1, 2, 3]) {
      const dim = 6;
      const a = featureStats(correlatedFeatures(40, dim, 100 + seed), 40, dim);
      const b = featureStats(correlatedFeatures(40, dim, 200 + seed, 0.2), 40, dim);
      const fd = frechetDistance(a, b);
      const reference = referenceFrechet(a, b);
      assert.ok(Math.abs(fd - reference) <= 1e-6 * Math.abs(reference), `seed ${seed}: FD ${fd} vs reference ${reference}`);
    }
  });

  it('rejects statistics of different dimensions', () => {
    assert.throws(() => frechetDistance(diagonalStats([0], [1]), diagonalStats([0, 0], [1, 1])), /dimensions differ \(1 vs 2\)/);
  });
});
