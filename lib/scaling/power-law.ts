/**
 * Scaling-law fits of sample quality q against training compute C (docs/method.md §8; ECT §4):
 * a pure power law q = a·C^(−b) fitted by least squares in log-log space, and a power law with an
 * irreducible floor q = a·C^(−b) + q_inf fitted by nonlinear least squares; bootstrap intervals.
 */
import seedrandom from 'seedrandom';
import { levenbergMarquardt } from './levenberg-marquardt';

export type ScalingModel = 'power' | 'power_floor';

/** Parameters of one fitted curve q(C) = a·C^(−b) + qInf (qInf = 0 for the pure power law). */
export interface ScalingParams {
  logA: number;   // natural log of a (a itself under- or overflows easily when C is in FLOPs)
  b: number;      // the exponent: quality improves as C^(−b)
  qInf: number;   // irreducible floor
}

export interface BootstrapSummary {
  samples: ScalingParams[]; // one refit per resample of the points (with replacement)
  level: number;            // e.g. 0.95
  bLow: number;             // percentile interval of the exponent
  bHigh: number;
  failed: number;           // resamples whose refit did not converge (left out)
}

export interface ScalingFit extends ScalingParams {
  model: ScalingModel;
  n: number;                  // number of points
  a: number;                  // exp(logA); may be Infinity/0 for extreme exponents, use logA then
  r2: number;                 // coefficient of determination in the space the fit minimised
  r2Space: 'log' | 'linear';  // the space the fit minimised: 'log' (ln q) unless a floor fit asked for 'linear'
  residuals: number[];        // observed − fitted, in that same space, in input order
  fitted: number[];           // fitted q at the input computes
  bootstrap?: BootstrapSummary;
}

export interface BootstrapOptions {
  samples: number;  // number of resamples, 1000 is plenty for a percentile interval
  level: number;    // interval coverage, e.g. 0.95
  seed: number;     // resampling is deterministic given the seed
}

export const DEFAULT_BOOTSTRAP: BootstrapOptions = { samples: 1000, level: 0.95, seed: 0 };

/** `points` values from `from` to `to` (both > 0), evenly spaced in log; the ends are exactly `from` and `to`. */
export function logSpaced(from: number, to: number, points: number): number[] {
  return Array.from({ length: points }, (_, i) => (i === 0 ? from : i === points - 1 ? to
    : Math.exp(Math.log(from) + (i / (points - 1)) * Math.log(to / from))));
}

/** q(C) for fitted parameters, computed in log space so that FLOP-sized C does not overflow. */
export function predictQuality(params: ScalingParams, compute: number): number {
  return Math.exp(params.logA - params.b * Math.log(compute)) + params.qInf;
}

/** Bootstrap percentile interval of the predicted quality at one compute budget. */
export function predictionInterval(fit: ScalingFit, compute: number): { low: number; high: number } {
  if (!fit.bootstrap) throw new Error('predictionInterval: the fit has no bootstrap samples (fit with bootstrap options)');
  const values = fit.bootstrap.samples.map((p) => predictQuality(p, compute));
  return percentileInterval(values, fit.bootstrap.level);
}

/** The central `level` interval of a sample by linear-interpolated percentiles. */
export function percentileInterval(values: number[], level: number): { low: number; high: number } {
  if (values.length === 0) throw new Error('percentileInterval: no values');
  const sorted = [...values].sort((x, y) => x - y);
  const quantile = (p: number): number => {
    const pos = p * (sorted.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
  };
  return { low: quantile((1 - level) / 2), high: quantile(1 - (1 - level) / 2) };
}

function checkPoints(compute: number[], quality: number[], model: ScalingModel): void {
  if (compute.length !== quality.length) {
    throw new Error(`scaling fit: ${compute.length} compute values but ${quality.length} quality values`);
  }
  compute.forEach((c, i) => {
    if (!(Number.isFinite(c) && c > 0)) throw new Error(`scaling fit: compute[${i}] = ${c} is not a positive number`);
    if (!Number.isFinite(quality[i])) throw new Error(`scaling fit: quality[${i}] = ${quality[i]} is not a finite number`);
    if (model === 'power' && !(quality[i] > 0)) {
      throw new Error(`scaling fit: quality[${i}] = ${quality[i]}; a pure power law needs positive quality values`);
    }
  });
  const needed = minimumDistinctPoints(model);
  if (new Set(compute).size < needed) {
    throw new Error(`scaling fit (${model}): needs at least ${needed} distinct compute values, got ${new Set(compute).size}`);
  }
}

function minimumDistinctPoints(model: ScalingModel): number {
  return model === 'power' ? 2 : 4; // 2 parameters; 3 parameters plus one degree of freedom
}

/** Ordinary least squares of y on x: returns intercept and slope. */
function linearRegression(x: number[], y: number[]): { intercept: number; slope: number } {
  const n = x.length;
  const meanX = x.reduce((s, v) => s + v, 0) / n;
  const meanY = y.reduce((s, v) => s + v, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - meanX) * (y[i] - meanY);
    sxx += (x[i] - meanX) ** 2;
  }
  const slope = sxy / sxx;
  return { intercept: meanY - slope * meanX, slope };
}

function rSquared(observed: number[], fitted: number[]): number {
  const mean = observed.reduce((s, v) => s + v, 0) / observed.length;
  const total = observed.reduce((s, v) => s + (v - mean) ** 2, 0);
  const residual = observed.reduce((s, v, i) => s + (v - fitted[i]) ** 2, 0);
  return total > 0 ? 1 - residual / total : NaN;
}

/** ln q = ln a − b·ln C by ordinary least squares. */
function powerParams(compute: number[], quality: number[]): ScalingParams {
  const { intercept, slope } = linearRegression(compute.map(Math.log), quality.map(Math.log));
  return { logA: intercept, b: -slope, qInf: 0 };
}

/**
 * q = exp(lnA' − b·u) + qInf with u = ln(C / C_ref), C_ref the geometric mean of C, so the three
 * parameters have comparable scales; a = A'·C_ref^b afterwards. With `nonNegativeFloor` the floor is
 * written qInf = s² (a distance such as FD cannot level off below zero), else it is free. In 'log' space the
 * residuals are ln(model) − ln q, so a quality that falls by orders of magnitude weighs each point by its
 * relative error (in 'linear' space the first, largest values dominate and the late points are missed).
 */
function floorParams(compute: number[], quality: number[], starts: ScalingParams[], nonNegativeFloor: boolean, space: FitSpace): ScalingParams | null {
  const logRef = compute.reduce((s, c) => s + Math.log(c), 0) / compute.length;
  const u = compute.map((c) => Math.log(c) - logRef);
  const floorOf = (p: number) => (nonNegativeFloor ? p * p : p);
  const floorSlope = (p: number) => (nonNegativeFloor ? 2 * p : 1);
  const problem = space === 'linear' ? {
    residuals: ([lnA, b, p]: number[]) => u.map((ui, i) => Math.exp(lnA - b * ui) + floorOf(p) - quality[i]),
    jacobian: ([lnA, b, p]: number[]) => u.map((ui) => {
      const term = Math.exp(lnA - b * ui);
      return [term, -ui * term, floorSlope(p)];
    }),
  } : {
    // a model value at or below zero (a free floor) has no logarithm: NaN residuals make the solver reject the step
    residuals: ([lnA, b, p]: number[]) => u.map((ui, i) => Math.log(Math.exp(lnA - b * ui) + floorOf(p)) - Math.log(quality[i])),
    jacobian: ([lnA, b, p]: number[]) => u.map((ui) => {
      const term = Math.exp(lnA - b * ui);
      const model = term + floorOf(p);
      return [term / model, (-ui * term) / model, floorSlope(p) / model];
    }),
  };
  // a start at exactly zero would leave s without a gradient: nudge it to a small positive floor
  const scale = Math.max(...quality.map(Math.abs), 1e-12);
  const floorStart = (qInf: number) => (nonNegativeFloor ? Math.sqrt(Math.max(qInf, 1e-6 * scale)) : qInf);
  let best: { params: ScalingParams; sumSquares: number } | null = null;
  for (const start of starts) {
    const startShifted = [start.logA - start.b * logRef, start.b, floorStart(start.qInf)];
    let solution;
    try {
      solution = levenbergMarquardt(problem, startShifted);
    } catch {
      continue; // this start gives non-finite residuals; others may not
    }
    const [lnA, b, p] = solution.params;
    const qInf = floorOf(p);
    if (![lnA, b, qInf, solution.sumSquares].every(Number.isFinite)) continue;
    if (!best || solution.sumSquares < best.sumSquares) {
      best = { params: { logA: lnA + b * logRef, b, qInf }, sumSquares: solution.sumSquares };
    }
  }
  return best ? best.params : null;
}

/** Starting points for the floor fit: log-log fits of q − f·min(q) for a few floor fractions f. */
function floorStarts(compute: number[], quality: number[]): ScalingParams[] {
  const minQuality = Math.min(...quality);
  const starts: ScalingParams[] = [];
  for (const fraction of [0, 0.5, 0.8, 0.9, 0.97]) {
    const floor = minQuality > 0 ? fraction * minQuality : minQuality - 1e-3 * (1 + Math.abs(minQuality)) * (1 - fraction);
    const shifted = quality.map((q) => q - floor);
    if (shifted.some((q) => !(q > 0))) continue;
    const p = powerParams(compute, shifted);
    starts.push({ ...p, qInf: floor });
  }
  return starts;
}

function fitParams(compute: number[], quality: number[], model: ScalingModel, nonNegativeFloor: boolean, space: FitSpace,
  starts?: ScalingParams[]): ScalingParams | null {
  if (model === 'power') return powerParams(compute, quality);
  return floorParams(compute, quality, starts ?? floorStarts(compute, quality), nonNegativeFloor, space);
}

/** Where a fit with a floor measures its residuals: ln q (default) or q. */
export type FitSpace = 'log' | 'linear';

/** Options of a fit beyond the model. */
export interface FitOptions {
  /** Keep the floor q_inf >= 0 (default true: FD, KID and losses cannot level off below zero). */
  nonNegativeFloor?: boolean;
  /** Residual space of the fit with a floor (default 'log'; the pure power law is always fitted in log space). */
  space?: FitSpace;
}

/**
 * Fits q(C) to points (compute, quality). `model` 'power' fits ln q linearly in ln C (R² and residuals
 * in ln q); 'power_floor' fits q = a·C^(−b) + q_inf by Levenberg-Marquardt, in ln q unless options.space is
 * 'linear' (R² and residuals in the space fitted).
 * With `bootstrap`, the points are resampled with replacement and refitted to give an interval on b.
 * The floor is kept non-negative unless `options.nonNegativeFloor` is false.
 */
export function fitScalingLaw(compute: number[], quality: number[], model: ScalingModel,
  bootstrap?: Partial<BootstrapOptions>, options: FitOptions = {}): ScalingFit {
  checkPoints(compute, quality, model);
  const nonNegativeFloor = options.nonNegativeFloor ?? true;
  const space: FitSpace = model === 'power' ? 'log' : options.space ?? 'log';
  const params = fitParams(compute, quality, model, nonNegativeFloor, space);
  if (!params) throw new Error(`scaling fit (${model}): the least-squares solver found no finite solution`);
  const fitted = compute.map((c) => predictQuality(params, c));
  const logSpace = space === 'log';
  const observedSpace = logSpace ? quality.map(Math.log) : quality;
  const fittedSpace = logSpace ? fitted.map(Math.log) : fitted;
  const fit: ScalingFit = {
    ...params,
    model,
    n: compute.length,
    a: Math.exp(params.logA),
    r2: rSquared(observedSpace, fittedSpace),
    r2Space: logSpace ? 'log' : 'linear',
    residuals: observedSpace.map((v, i) => v - fittedSpace[i]),
    fitted,
  };
  if (bootstrap) fit.bootstrap = bootstrapFit(compute, quality, model, params, { ...DEFAULT_BOOTSTRAP, ...bootstrap }, nonNegativeFloor, space);
  return fit;
}

/** Case-resampling bootstrap: refit on points drawn with replacement, percentile interval of b. */
function bootstrapFit(compute: number[], quality: number[], model: ScalingModel, full: ScalingParams,
  options: BootstrapOptions, nonNegativeFloor: boolean, space: FitSpace): BootstrapSummary {
  if (!(options.level > 0 && options.level < 1)) throw new Error(`bootstrap level must be in (0, 1), got ${options.level}`);
  if (!(Number.isInteger(options.samples) && options.samples >= 10)) {
    throw new Error(`bootstrap samples must be an integer >= 10, got ${options.samples}`);
  }
  const random = seedrandom(`scaling-bootstrap-${options.seed}`);
  const n = compute.length;
  const samples: ScalingParams[] = [];
  let failed = 0;
  const needed = minimumDistinctPoints(model);
  while (samples.length + failed < options.samples) {
    const idx = Array.from({ length: n }, () => Math.floor(random() * n));
    const c = idx.map((i) => compute[i]);
    if (new Set(c).size < needed) continue; // degenerate resample: the model is not identifiable
    // the full-data fit is a good start for every resample, and keeps the refits cheap
    const params = fitParams(c, idx.map((i) => quality[i]), model, nonNegativeFloor, space, [full]);
    if (params) samples.push(params);
    else failed++;
  }
  if (samples.length === 0) throw new Error(`scaling fit (${model}): every bootstrap refit failed`);
  const { low, high } = percentileInterval(samples.map((p) => p.b), options.level);
  return { samples, level: options.level, bLow: low, bHigh: high, failed };
}
