/**
 * The fits a scaling study shows, as one list: each entry a labelled set of per-group fits with the rows it was fitted
 * to, so a notebook draws and tabulates every fit with one loop instead of choosing per model.
 */
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import type { BootstrapOptions, ScalingModel } from './power-law';
import { fitScalingGroups, type GroupFit } from './table';

/** Which fit a set is: a law over every budget, or the pure power law over the late budgets only. */
export type ScalingFitSetKey = 'power_floor' | 'power' | 'late';

/** One labelled set of per-group fits. */
export interface ScalingFitSet {
  key: ScalingFitSetKey;
  model: ScalingModel;
  /** Which budgets were fitted: 'every budget' or 'from <kimg> kimg'. */
  span: string;
  /** What the set is, for titles: 'power_floor, every budget' or 'power law, budgets from 8 kimg'. */
  label: string;
  /** The first kimg of the fitted rows (0 for every budget). */
  fromKimg: number;
  /** The rows fitted (the late rows for 'late'). */
  table: ColumnTable;
  fits: GroupFit[];
}

/** What scalingFitSets fits. */
export interface ScalingFitSetOptions {
  x: string;                  // compute column, e.g. 'train_flops'
  y: string;                  // quality column, e.g. 'fd_fmnist_1step'
  groupBy: string[];          // one fit per distinct combination, e.g. ['net.modelChannels']
  bootstrap?: Partial<BootstrapOptions>;
  /** The late fit starts at this fraction of the largest kimg (default 1/8: the steep part of the curve). */
  lateFraction?: number;
  /** The column of images seen, in thousands (default 'kimg'). */
  kimg?: string;
}

/**
 * Fits a scaling study's quality column three ways, in the order a notebook shows them: the power law with a floor
 * over every budget, the pure power law over every budget, and the pure power law over the budgets from
 * `lateFraction` of the largest kimg on.
 */
export function scalingFitSets(points: ColumnTable, options: ScalingFitSetOptions): ScalingFitSet[] {
  const kimg = options.kimg ?? 'kimg';
  const fraction = options.lateFraction ?? 1 / 8;
  if (!points.columnNames().includes(kimg)) throw new Error(`scalingFitSets: no column '${kimg}'`);
  const budgets = (points.array(kimg) as ArrayLike<unknown>);
  if (budgets.length === 0) throw new Error('scalingFitSets: no rows to fit');
  const fromKimg = Math.max(...Array.from(budgets, Number)) * fraction;
  const late = points.filter(aq.escape((d: Record<string, unknown>) => Number(d[kimg]) >= fromKimg));
  const fitsOf = (table: ColumnTable, model: ScalingModel) =>
    fitScalingGroups(table, { x: options.x, y: options.y, groupBy: options.groupBy, model, bootstrap: options.bootstrap });
  return [
    { key: 'power_floor', model: 'power_floor', span: 'every budget', label: 'power_floor, every budget', fromKimg: 0, table: points, fits: fitsOf(points, 'power_floor') },
    { key: 'power', model: 'power', span: 'every budget', label: 'power, every budget', fromKimg: 0, table: points, fits: fitsOf(points, 'power') },
    { key: 'late', model: 'power', span: `from ${fromKimg} kimg`, label: `power law, budgets from ${fromKimg} kimg`, fromKimg, table: late, fits: fitsOf(late, 'power') },
  ];
}

/** The set with this key; an error naming the keys there are when it is missing. */
export function fitSetOf(sets: ScalingFitSet[], key: ScalingFitSetKey): ScalingFitSet {
  const set = sets.find((s) => s.key === key);
  if (!set) throw new Error(`no '${key}' fit set (have ${sets.map((s) => s.key).join(', ') || 'none'})`);
  return set;
}
