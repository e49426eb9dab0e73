/** Scaling-law fits on arquero tables: one fit per group, a fit summary table and curve tables for plots. */
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import {
  BootstrapOptions, FitSpace, ScalingFit, ScalingModel, fitScalingLaw, logSpaced, predictQuality, predictionInterval,
} from './power-law';

export interface ScalingTableOptions {
  x: string;                 // compute column, e.g. 'train_flops'
  y: string;                 // quality column, e.g. 'fd_1step'
  model: ScalingModel;
  groupBy?: string[];        // one fit per distinct combination of these columns (e.g. model size)
  bootstrap?: Partial<BootstrapOptions>;
  nonNegativeFloor?: boolean; // keep q_inf >= 0 in 'power_floor' fits (default true)
  space?: FitSpace;           // residual space of 'power_floor' fits (default 'log')
}

/** One group's fit with the group's key values. */
export interface GroupFit {
  group: Record<string, unknown>;
  fit: ScalingFit;
}

function numericColumn(table: ColumnTable, name: string): number[] {
  if (!table.columnNames().includes(name)) {
    throw new Error(`scaling fit: no column '${name}' (columns: ${table.columnNames().join(', ')})`);
  }
  return Array.from(table.array(name) as ArrayLike<unknown>, (v) => (v === null || v === undefined ? NaN : Number(v)));
}

/** Orders group keys value by value: numbers numerically, anything else as text (so groups read 8, 16, 24). */
export function compareKeys(p: unknown[], q: unknown[]): number {
  for (let i = 0; i < p.length; i++) {
    const [a, b] = [p[i], q[i]];
    const order = typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b));
    if (order !== 0) return order;
  }
  return 0;
}

/**
 * Fits the scaling law per group. Rows whose x or y is missing (not evaluated at that iteration)
 * are left out before fitting; anything else that is not a positive compute is an error.
 */
export function fitScalingGroups(table: ColumnTable, options: ScalingTableOptions): GroupFit[] {
  const groupBy = options.groupBy ?? [];
  for (const name of groupBy) {
    if (!table.columnNames().includes(name)) throw new Error(`scaling fit: no group column '${name}'`);
  }
  const rows = table.objects() as Array<Record<string, unknown>>;
  const x = numericColumn(table, options.x);
  const y = numericColumn(table, options.y);
  const groups = new Map<string, { key: Record<string, unknown>; xs: number[]; ys: number[] }>();
  rows.forEach((row, i) => {
    if (Number.isNaN(x[i]) || Number.isNaN(y[i])) return;
    const key = Object.fromEntries(groupBy.map((g) => [g, row[g]]));
    const id = JSON.stringify(key);
    if (!groups.has(id)) groups.set(id, { key, xs: [], ys: [] });
    groups.get(id)!.xs.push(x[i]);
    groups.get(id)!.ys.push(y[i]);
  });
  if (groups.size === 0) throw new Error(`scaling fit: no row has both '${options.x}' and '${options.y}'`);
  // groups in the order of their key values (numbers numerically), so legends and tables read 8, 16, 24
  const ordered = [...groups.values()].sort((p, q) => compareKeys(groupBy.map((g) => p.key[g]), groupBy.map((g) => q.key[g])));
  return ordered.map(({ key, xs, ys }) => ({
    group: key,
    fit: fitScalingLaw(xs, ys, options.model, options.bootstrap, { nonNegativeFloor: options.nonNegativeFloor, space: options.space }),
  }));
}

/**
 * A summary table, one row per group: the group columns, model, n, a (as log10_a too), exponent b with
 * its bootstrap interval (b_low, b_high, level), q_inf, r2 and the space r2 was computed in.
 */
export function scalingSummaryTable(fits: GroupFit[]): ColumnTable {
  return aq.from(fits.map(({ group, fit }) => ({
    ...group,
    model: fit.model,
    n: fit.n,
    a: fit.a,
    log10_a: fit.logA / Math.LN10,
    b: fit.b,
    b_low: fit.bootstrap?.bLow ?? null,
    b_high: fit.bootstrap?.bHigh ?? null,
    level: fit.bootstrap?.level ?? null,
    q_inf: fit.qInf,
    r2: fit.r2,
    r2_space: fit.r2Space,
  })));
}

/** Fits per group and returns the summary table (see scalingSummaryTable). */
export function fitScalingTable(table: ColumnTable, options: ScalingTableOptions): ColumnTable {
  return scalingSummaryTable(fitScalingGroups(table, options));
}

/** The input rows that were fitted, with the fitted value and residual (in the fit's space) per row. */
export function residualTable(table: ColumnTable, options: ScalingTableOptions, groupFits: GroupFit[]): ColumnTable {
  const groupBy = options.groupBy ?? [];
  const byKey = new Map(groupFits.map((g) => [JSON.stringify(g.group), g.fit]));
  const x = numericColumn(table, options.x);
  const y = numericColumn(table, options.y);
  const rows = (table.objects() as Array<Record<string, unknown>>).flatMap((row, i) => {
    if (Number.isNaN(x[i]) || Number.isNaN(y[i])) return [];
    const fit = byKey.get(JSON.stringify(Object.fromEntries(groupBy.map((g) => [g, row[g]]))));
    if (!fit) return [];
    const fitted = predictQuality(fit, x[i]);
    const residual = fit.r2Space === 'log' ? Math.log(y[i]) - Math.log(fitted) : y[i] - fitted;
    return [{ ...row, fitted, residual, residual_space: fit.r2Space }];
  });
  return aq.from(rows);
}

/**
 * The fitted curve on a log-spaced compute grid from `from` to `to`, with the bootstrap band
 * (columns compute, fitted, low, high; low/high are null without bootstrap samples).
 */
export function scalingCurveTable(fit: ScalingFit, from: number, to: number, points = 50): ColumnTable {
  if (!(from > 0 && to > from)) throw new Error(`scalingCurveTable: need 0 < from < to, got ${from}, ${to}`);
  const rows = logSpaced(from, to, points).map((compute) => {
    const band = fit.bootstrap ? predictionInterval(fit, compute) : null;
    return { compute, fitted: predictQuality(fit, compute), low: band?.low ?? null, high: band?.high ?? null };
  });
  return aq.from(rows);
}

/** The predicted quality at new compute budgets, with the bootstrap interval where available. */
export function predictTable(fit: ScalingFit, computes: number[]): ColumnTable {
  return aq.from(computes.map((compute) => {
    const band = fit.bootstrap ? predictionInterval(fit, compute) : null;
    return { compute, predicted: predictQuality(fit, compute), low: band?.low ?? null, high: band?.high ?? null };
  }));
}
