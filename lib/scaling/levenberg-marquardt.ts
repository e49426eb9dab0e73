/** A small Levenberg-Marquardt least-squares solver with analytic Jacobians (a handful of parameters). */

/** A least-squares problem: residuals r_i(p) and their Jacobian J_ij = d r_i / d p_j. */
export interface LeastSquaresProblem {
  residuals(params: number[]): number[];
  jacobian(params: number[]): number[][];
}

export interface LevenbergMarquardtOptions {
  maxIterations: number;    // give up after this many accepted or rejected steps
  initialDamping: number;   // lambda at the start; large means gradient-descent-like steps
  tolerance: number;        // stop when the relative drop of the squared error is below this
}

export const DEFAULT_LM_OPTIONS: LevenbergMarquardtOptions = {
  maxIterations: 200,
  initialDamping: 1e-3,
  tolerance: 1e-12,
};

export interface LeastSquaresSolution {
  params: number[];
  sumSquares: number;       // sum of squared residuals at the solution
  iterations: number;
  converged: boolean;
}

/** Solves A x = b for a small dense symmetric system by Gaussian elimination with partial pivoting. */
export function solveLinearSystem(matrix: number[][], rhs: number[]): number[] | null {
  const n = rhs.length;
  const a = matrix.map((row, i) => [...row, rhs[i]]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let row = col + 1; row < n; row++) if (Math.abs(a[row][col]) > Math.abs(a[pivot][col])) pivot = row;
    if (Math.abs(a[pivot][col]) < 1e-300) return null;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    for (let row = col + 1; row < n; row++) {
      const factor = a[row][col] / a[col][col];
      for (let k = col; k <= n; k++) a[row][k] -= factor * a[col][k];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let row = n - 1; row >= 0; row--) {
    let sum = a[row][n];
    for (let k = row + 1; k < n; k++) sum -= a[row][k] * x[k];
    x[row] = sum / a[row][row];
  }
  return x;
}

function sumOfSquares(values: number[]): number {
  return values.reduce((s, v) => s + v * v, 0);
}

/**
 * Minimises sum_i r_i(p)^2 from a starting point. Each step solves (JᵀJ + λ·diag(JᵀJ)) δ = −Jᵀr
 * (Marquardt's scaling); λ shrinks after a step that lowers the error and grows after one that does not.
 */
export function levenbergMarquardt(problem: LeastSquaresProblem, start: number[],
  options: Partial<LevenbergMarquardtOptions> = {}): LeastSquaresSolution {
  const opts = { ...DEFAULT_LM_OPTIONS, ...options };
  let params = [...start];
  let residuals = problem.residuals(params);
  let error = sumOfSquares(residuals);
  if (!Number.isFinite(error)) throw new Error(`levenbergMarquardt: residuals are not finite at the start ${JSON.stringify(start)}`);
  let damping = opts.initialDamping;
  const nParams = params.length;
  for (let iteration = 1; iteration <= opts.maxIterations; iteration++) {
    const jac = problem.jacobian(params);
    // normal equations: JᵀJ and Jᵀr
    const jtj = Array.from({ length: nParams }, () => new Array<number>(nParams).fill(0));
    const jtr = new Array<number>(nParams).fill(0);
    for (let i = 0; i < residuals.length; i++) {
      for (let a = 0; a < nParams; a++) {
        jtr[a] += jac[i][a] * residuals[i];
        for (let b = 0; b < nParams; b++) jtj[a][b] += jac[i][a] * jac[i][b];
      }
    }
    let accepted = false;
    while (!accepted && damping < 1e16) {
      const damped = jtj.map((row, a) => row.map((v, b) => (a === b ? v + damping * Math.max(v, 1e-12) : v)));
      const step = solveLinearSystem(damped, jtr.map((v) => -v));
      if (step) {
        const candidate = params.map((p, a) => p + step[a]);
        const candidateResiduals = problem.residuals(candidate);
        const candidateError = sumOfSquares(candidateResiduals);
        if (Number.isFinite(candidateError) && candidateError <= error) {
          const relativeDrop = (error - candidateError) / Math.max(error, 1e-300);
          params = candidate;
          residuals = candidateResiduals;
          error = candidateError;
          damping = Math.max(damping / 10, 1e-15);
          accepted = true;
          if (relativeDrop < opts.tolerance) return { params, sumSquares: error, iterations: iteration, converged: true };
          break;
        }
      }
      damping *= 10;
    }
    // no step lowers the error any more: we are at a (local) minimum to machine precision
    if (!accepted) return { params, sumSquares: error, iterations: iteration, converged: true };
  }
  return { params, sumSquares: error, iterations: opts.maxIterations, converged: false };
}
