/** Feature statistics (mean, covariance in Float64) and the Fréchet distance between two Gaussians fitted to feature sets. */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';

/** Mean and unbiased covariance (divided by count - 1, as numpy's np.cov) of a feature set. */
export interface FeatureStats {
  count: number;
  dim: number;
  mean: Float64Array;        // dim
  cov: Float64Array;         // dim x dim, row-major, symmetric
}

/** Rows accumulated per block of the covariance update; a block is a dim x BLOCK column-major buffer. */
const BLOCK_ROWS = 256;

/**
 * Streaming accumulator of feature statistics: add row-major batches of features, then `finish()`.
 * Second moments are taken around the first row seen (a shift), which keeps the Float64 sums free of
 * the cancellation that E[x x^T] - mu mu^T suffers when the mean is large against the spread.
 */
export class StatsAccumulator {
  private count = 0;
  private shift: Float64Array | null = null;
  private readonly sum: Float64Array;
  private readonly moment: Float64Array; // upper triangle of sum (x - shift)(x - shift)^T
  private readonly block: Float64Array;  // column-major: block[i * BLOCK_ROWS + r]
  private blockFill = 0;

  constructor(readonly dim: number) {
    if (!Number.isInteger(dim) || dim < 1) throw new Error(`StatsAccumulator: dim must be a positive integer, got ${dim}`);
    this.sum = new Float64Array(dim);
    this.moment = new Float64Array(dim * dim);
    this.block = new Float64Array(dim * BLOCK_ROWS);
  }

  /** Adds `rows` feature vectors stored row-major in `features` (length rows * dim). */
  add(features: ArrayLike<number>, rows: number): void {
    const d = this.dim;
    if (features.length !== rows * d) {
      throw new Error(`StatsAccumulator.add: ${features.length} values is not ${rows} rows of dimension ${d}`);
    }
    for (let r = 0; r < rows; r++) {
      if (this.shift === null) {
        this.shift = new Float64Array(d);
        for (let i = 0; i < d; i++) this.shift[i] = features[i];
      }
      const offset = r * d;
      for (let i = 0; i < d; i++) {
        const value = features[offset + i];
        if (!Number.isFinite(value)) throw new Error(`StatsAccumulator.add: non-finite feature value ${value} at row ${this.count}, column ${i}`);
        const centred = value - this.shift[i];
        this.sum[i] += centred;
        this.block[i * BLOCK_ROWS + this.blockFill] = centred;
      }
      this.count++;
      this.blockFill++;
      if (this.blockFill === BLOCK_ROWS) this.flushBlock();
    }
  }

  /** Adds the block's outer products to the moment: dot products of contiguous columns, cache-friendly. */
  private flushBlock(): void {
    const d = this.dim;
    const n = this.blockFill;
    const block = this.block;
    for (let i = 0; i < d; i++) {
      const bi = i * BLOCK_ROWS;
      for (let j = i; j < d; j++) {
        const bj = j * BLOCK_ROWS;
        let dot = 0;
        for (let r = 0; r < n; r++) dot += block[bi + r] * block[bj + r];
        this.moment[i * d + j] += dot;
      }
    }
    this.blockFill = 0;
  }

  /** Rows added so far. */
  get rows(): number {
    return this.count;
  }

  /** The mean and covariance of everything added (needs at least two rows). */
  finish(): FeatureStats {
    if (this.blockFill > 0) this.flushBlock();
    const d = this.dim;
    const n = this.count;
    if (n < 2) throw new Error(`feature statistics need at least 2 samples, got ${n}`);
    const shift = this.shift!;
    const mean = new Float64Array(d);
    const centredMean = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      centredMean[i] = this.sum[i] / n;
      mean[i] = shift[i] + centredMean[i];
    }
    const cov = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = i; j < d; j++) {
        // sum (x - s)(x - s)^T - n (m - s)(m - s)^T = sum (x - m)(x - m)^T
        const value = (this.moment[i * d + j] - n * centredMean[i] * centredMean[j]) / (n - 1);
        cov[i * d + j] = value;
        cov[j * d + i] = value;
      }
    }
    return { count: n, dim: d, mean, cov };
  }
}

/** Mean and covariance of `rows` row-major feature vectors of dimension `dim`. */
export function featureStats(features: ArrayLike<number>, rows: number, dim: number): FeatureStats {
  const accumulator = new StatsAccumulator(dim);
  accumulator.add(features, rows);
  return accumulator.finish();
}

function toMatrix(values: Float64Array, dim: number): Matrix {
  const matrix = new Matrix(dim, dim);
  for (let i = 0; i < dim; i++) for (let j = 0; j < dim; j++) matrix.set(i, j, values[i * dim + j]);
  return matrix;
}

/** (M + M^T) / 2: removes the rounding asymmetry before a symmetric eigendecomposition. */
function symmetrize(matrix: Matrix): Matrix {
  return matrix.add(matrix.transpose()).mul(0.5);
}

/**
 * Square roots of symmetric eigenvalues, with those below the rounding level of the decomposition
 * (dim * machine epsilon * largest |eigenvalue|) taken as 0: on rank-deficient covariances the null
 * space comes out as +-1e-16-sized noise, and sqrt would magnify it to 1e-8 per eigenvalue.
 */
function eigenvalueRoots(eigenvalues: number[]): number[] {
  const largest = eigenvalues.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const roundingLevel = eigenvalues.length * Number.EPSILON * largest;
  return eigenvalues.map((lambda) => (lambda > roundingLevel ? Math.sqrt(lambda) : 0));
}

/** Principal square root of a symmetric positive semi-definite matrix; rounding-level eigenvalues count as 0. */
export function sqrtPsd(matrix: Matrix): Matrix {
  const eig = new EigenvalueDecomposition(symmetrize(matrix), { assumeSymmetric: true });
  const vectors = eig.eigenvectorMatrix;
  const roots = eigenvalueRoots(eig.realEigenvalues);
  // V diag(sqrt(lambda)) V^T
  const scaled = vectors.clone();
  for (let i = 0; i < scaled.rows; i++) for (let j = 0; j < scaled.columns; j++) scaled.set(i, j, scaled.get(i, j) * roots[j]);
  return scaled.mmul(vectors.transpose());
}

/**
 * tr sqrt(S1 S2) for symmetric PSD S1, S2 without complex arithmetic:
 * with S = S1^(1/2), S1 S2 is similar to the symmetric PSD S S2 S, so tr sqrt(S1 S2) = sum sqrt(max(lambda_i(S S2 S), 0)),
 * with eigenvalues at the rounding level counted as 0.
 */
export function traceSqrtProduct(cov1: Float64Array, cov2: Float64Array, dim: number): number {
  const root1 = sqrtPsd(toMatrix(cov1, dim));
  const sandwich = symmetrize(root1.mmul(toMatrix(cov2, dim)).mmul(root1));
  const eig = new EigenvalueDecomposition(sandwich, { assumeSymmetric: true });
  return eigenvalueRoots(eig.realEigenvalues).reduce((sum, root) => sum + root, 0);
}

/** Fréchet distance between N(mu1, S1) and N(mu2, S2): ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2). */
export function frechetDistance(a: FeatureStats, b: FeatureStats): number {
  if (a.dim !== b.dim) throw new Error(`frechetDistance: feature dimensions differ (${a.dim} vs ${b.dim})`);
  const d = a.dim;
  let meanTerm = 0;
  let traceTerm = 0;
  for (let i = 0; i < d; i++) {
    const diff = a.mean[i] - b.mean[i];
    meanTerm += diff * diff;
    traceTerm += a.cov[i * d + i] + b.cov[i * d + i];
  }
  return meanTerm + traceTerm - 2 * traceSqrtProduct(a.cov, b.cov, d);
}
