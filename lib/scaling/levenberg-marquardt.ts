/**
 * A small Levenberg-Marquardt least-squares solver with analytic Jacobians (a handful of parameters).
 * Ours rather than ml-levenberg-marquardt because that package fits y = f(x; p) with finite-difference
 * Jacobians (a fixed step of 0.1 by default) and plain identity damping, while the floor fit
 * (lib/scaling/power-law.ts) needs exact analytic Jacobians of general residuals, Marquardt's diagonal scaling
 * for parameters of very different size, and only steps that lower the error. Linear algebra is ml-matrix's.
 */
import { CholeskyDecomposition, Matrix } from 'ml-matrix';

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
    // normal equations: JᵀJ and Jᵀr
    const jac = new Matrix(problem.jacobian(params));
    const jtj = jac.transpose().mmul(jac);
    const minusJtr = jac.transpose().mmul(Matrix.columnVector(residuals)).neg();
    // a Jacobian with NaN or infinite entries gives no step (and no symmetric system to factor)
    if (![...jtj.to1DArray(), ...minusJtr.to1DArray()].every(Number.isFinite)) return { params, sumSquares: error, iterations: iteration, converged: false };
    let accepted = false;
    while (!accepted && damping < 1e16) {
      const damped = jtj.clone();
      for (let a = 0; a < nParams; a++) damped.set(a, a, jtj.get(a, a) + damping * Math.max(jtj.get(a, a), 1e-12));
      // JᵀJ plus a positive diagonal is symmetric positive definite unless rounding says otherwise: then damp more
      const cholesky = new CholeskyDecomposition(damped);
      if (cholesky.isPositiveDefinite()) {
        const step = cholesky.solve(minusJtr).getColumn(0);
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
