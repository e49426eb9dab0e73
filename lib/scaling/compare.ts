/**
 * The scaling study's question (the paper's Figure on model size): at equal training compute, is the larger model
 * better? Answered two ways on the compute range every group measured: from the measurements themselves (each
 * group's curve interpolated linearly in log compute and log quality between its own evaluations), and from each
 * group's fitted law with its bootstrap band (decided only where the best group's band clears every other's).
 */
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import { logSpaced, predictQuality, predictionInterval } from './power-law';
import { compareKeys, type GroupFit } from './table';

export interface EqualComputeOptions {
  x: string;            // compute column, e.g. 'train_flops'
  y: string;            // quality column (lower is better), e.g. 'fd_fmnist_2step'
  groupBy: string;      // the column that tells the groups apart, e.g. 'net.modelChannels'
  points?: number;      // log-spaced budgets across the common range (default 6)
}

/** A group's measured curve: its points sorted by compute. */
interface Curve { xs: number[]; ys: number[] }

/** The measured quality at `x` by linear interpolation in log-log between the bracketing points (null outside the curve). */
export function interpolateLogLog(curve: Curve, x: number): number | null {
  const { xs, ys } = curve;
  // budgets computed through exp and log land within rounding of a curve's ends: those count as on the curve
  const slack = 1e-9 * x;
  if (xs.length === 0 || x < xs[0] - slack || x > xs[xs.length - 1] + slack) return null;
  if (x <= xs[0]) return ys[0];
  if (x >= xs[xs.length - 1]) return ys[ys.length - 1];
  let i = 0;
  while (i < xs.length - 1 && xs[i + 1] < x) i += 1;
  if (xs[i] === x || i === xs.length - 1) return ys[i];
  const t = (Math.log(x) - Math.log(xs[i])) / (Math.log(xs[i + 1]) - Math.log(xs[i]));
  return Math.exp(Math.log(ys[i]) + t * (Math.log(ys[i + 1]) - Math.log(ys[i])));
}

function curvesOf(table: ColumnTable, options: EqualComputeOptions): Map<unknown, Curve> {
  for (const name of [options.x, options.y, options.groupBy]) {
    if (!table.columnNames().includes(name)) throw new Error(`equal-compute comparison: no column '${name}' (columns: ${table.columnNames().join(', ')})`);
  }
  const curves = new Map<unknown, Array<[number, number]>>();
  for (const row of table.objects() as Array<Record<string, unknown>>) {
    const [x, y] = [Number(row[options.x]), Number(row[options.y])];
    if (row[options.x] === null || row[options.y] === null || !(x > 0) || !(y > 0)) continue;
    const group = row[options.groupBy];
    if (!curves.has(group)) curves.set(group, []);
    curves.get(group)!.push([x, y]);
  }
  return new Map([...curves.entries()].map(([group, points]) => {
    points.sort((p, q) => p[0] - q[0]);
    return [group, { xs: points.map((p) => p[0]), ys: points.map((p) => p[1]) }];
  }));
}

/**
 * One row per budget and group, on `points` log-spaced budgets across the compute range that every group measured:
 * compute, the group, its measured (interpolated) and fitted quality with the bootstrap band, and whether it is the
 * best group there by each. Two groups at least; an error when their measured ranges do not overlap.
 */
export function equalComputeTable(table: ColumnTable, fits: GroupFit[], options: EqualComputeOptions): ColumnTable {
  const curves = curvesOf(table, options);
  if (curves.size < 2) throw new Error(`equal-compute comparison: needs two groups of '${options.groupBy}' or more, found ${curves.size}`);
  const low = Math.max(...[...curves.values()].map((c) => c.xs[0]));
  const high = Math.min(...[...curves.values()].map((c) => c.xs[c.xs.length - 1]));
  if (!(low < high)) {
    throw new Error(`equal-compute comparison: the groups of '${options.groupBy}' measured no common range of '${options.x}' (the latest start, ${low.toPrecision(3)}, is past the earliest end, ${high.toPrecision(3)})`);
  }
  const points = options.points ?? 6;
  const budgets = logSpaced(low, high, points);
  const groups = [...curves.keys()].sort((p, q) => compareKeys([p], [q]));
  const rows: Array<Record<string, unknown>> = [];
  for (const compute of budgets) {
    const here = groups.map((group) => {
      const fit = fits.find((f) => f.group[options.groupBy] === group)?.fit;
      const band = fit?.bootstrap ? predictionInterval(fit, compute) : null;
      return {
        compute, [options.groupBy]: group,
        measured: interpolateLogLog(curves.get(group)!, compute),
        fitted: fit ? predictQuality(fit, compute) : null,
        fitted_low: band?.low ?? null, fitted_high: band?.high ?? null,
      };
    });
    const bestMeasured = Math.min(...here.map((r) => r.measured ?? Infinity));
    const bestFitted = Math.min(...here.map((r) => r.fitted ?? Infinity));
    for (const r of here) {
      const others = here.filter((o) => o !== r);
      // the fit decides only when this group's band lies wholly below every other group's
      const clear = r.fitted === bestFitted && r.fitted_high !== null && others.every((o) => o.fitted_low !== null && r.fitted_high! < o.fitted_low);
      rows.push({ ...r, best_measured: r.measured === bestMeasured, best_fitted: r.fitted === bestFitted, best_fitted_clear: clear });
    }
  }
  return aq.from(rows);
}

/** One line per budget: which group is best there by the measurements and by the fits (and whether the bands separate). */
export function describeEqualCompute(comparison: ColumnTable, groupBy: string, label = (group: unknown) => `${groupBy} ${group}`): string[] {
  const rows = comparison.objects() as Array<Record<string, unknown>>;
  const budgets = [...new Set(rows.map((r) => r.compute as number))];
  return budgets.map((compute) => {
    const here = rows.filter((r) => r.compute === compute);
    const measured = here.find((r) => r.best_measured);
    const fitted = here.find((r) => r.best_fitted);
    const order = here.filter((r) => r.measured !== null).sort((p, q) => Number(p.measured) - Number(q.measured))
      .map((r) => `${label(r[groupBy])} ${Number(r.measured).toPrecision(3)}`).join(' < ');
    return `${compute.toExponential(2)}: measured best ${measured ? label(measured[groupBy]) : 'none'} (${order}); `
      + `fitted best ${fitted ? label(fitted[groupBy]) : 'none'}${fitted?.best_fitted_clear ? ', its band clear of the others' : ', bands overlapping'}`;
  });
}

/**
 * The compute frontier (the lower envelope of the paper's quality-against-compute figure): the measurements that no
 * other measurement beats with less or equal compute, in order of compute, with the group each belongs to. Reading
 * down the `groupBy` column says which model is the best use of each compute range among what was measured.
 */
export function computeFrontier(table: ColumnTable, options: Omit<EqualComputeOptions, 'points'>): ColumnTable {
  const curves = curvesOf(table, options);
  const points = [...curves.entries()].flatMap(([group, curve]) => curve.xs.map((x, i) => ({ x, y: curve.ys[i], group })));
  // by compute, and at equal compute the better first, so a point is on the frontier iff it beats every earlier one
  points.sort((p, q) => p.x - q.x || p.y - q.y);
  const rows: Array<Record<string, unknown>> = [];
  let best = Infinity;
  for (const p of points) {
    if (p.y >= best) continue;
    best = p.y;
    rows.push({ [options.x]: p.x, [options.y]: p.y, [options.groupBy]: p.group });
  }
  return aq.from(rows);
}

/** The frontier as runs of one group: "from x0 to x1: group g (n points)", in order of compute. */
export function describeFrontier(frontier: ColumnTable, options: Omit<EqualComputeOptions, 'points'>, label = (group: unknown) => `${options.groupBy} ${group}`): string[] {
  const rows = frontier.objects() as Array<Record<string, unknown>>;
  const lines: string[] = [];
  let start = 0;
  for (let i = 1; i <= rows.length; i++) {
    if (i < rows.length && rows[i][options.groupBy] === rows[start][options.groupBy]) continue;
    const [from, to] = [Number(rows[start][options.x]), Number(rows[i - 1][options.x])];
    lines.push(`${from.toExponential(2)} to ${to.toExponential(2)}: ${label(rows[start][options.groupBy])} (${i - start} point${i - start === 1 ? '' : 's'})`);
    start = i;
  }
  return lines;
}
