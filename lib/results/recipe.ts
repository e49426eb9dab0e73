/**
 * The Fashion-MNIST recipe study as tables: each ECT variant's setting, its final 1- and 2-step quality, and how soon its
 * 2-step quality reached the teacher's own (both measured in-run, on as many samples against the same split); and the
 * 2-step quality of one checkpoint at several t_mid.
 */
import * as path from 'node:path';
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import { parseMetricColumn } from '../metrics/columns';
import type { EvaluationRow } from './headline';
import type { InRunQuality } from './notebook-runs';

/** What recipeTable says of a variant whose 2-step quality never reached the teacher's. */
export const NOT_REACHED = 'not reached';

/** The first kimg at which `column` is at or below `target` in these rows (in training order); null when never. */
export function firstKimgReaching(rows: Array<Record<string, unknown>>, column: string, target: number): number | null {
  const reached = rows.filter((row) => typeof row[column] === 'number' && (row[column] as number) <= target)
    .sort((a, b) => Number(a.kimg) - Number(b.kimg))[0];
  return reached ? Number(reached.kimg) : null;
}

/**
 * One row per variant: its name and setting, the kimg of its last evaluation, its last `<family>_1step` and
 * `<family>_2step`, the samples and split of those evaluations, and the first kimg at which its 2-step value reached
 * the teacher's in-run value (NOT_REACHED when it never did). `runs` is loadRunsTable of the variants' folders with
 * keepConfig ['evalN', 'evalSplit']. A variant evaluated on other samples or another split than the teacher is refused.
 */
export function recipeTable(runs: ColumnTable, variants: Array<{ name: string; setting: string; dir: string }>, teacher: InRunQuality,
  family = teacher.metric.replace(/_heun$/, '')): ColumnTable {
  const [one, two] = [`${family}_1step`, `${family}_2step`];
  const all = runs.objects() as Array<Record<string, unknown>>;
  return aq.from(variants.map(({ name, setting, dir }) => {
    const rows = all.filter((row) => row.run_id === path.basename(dir) && typeof row[two] === 'number');
    if (rows.length === 0) throw new Error(`${dir}: no ${two} evaluations in its metrics.csv`);
    const last = rows.reduce((a, b) => (Number(b.iter) >= Number(a.iter) ? b : a));
    if (last.evalN !== teacher.n || last.evalSplit !== teacher.split) {
      throw new Error(`${dir}: evaluated on ${last.evalN} samples against the ${last.evalSplit} split, the teacher's ${teacher.metric} on ${teacher.n} `
        + `against the ${teacher.split} split: compare like with like`);
    }
    const reached = firstKimgReaching(rows, two, teacher.value);
    return {
      variant: name, setting, kimg: last.kimg, [one]: last[one] ?? null, [two]: last[two], n: last.evalN, split: last.evalSplit,
      [`${two}_reached_teacher_at_kimg`]: reached ?? NOT_REACHED,
    };
  }));
}

/**
 * recipeTable's rows reshaped for a bar chart: two rows per variant, one per sampler, with the sampler's column name
 * (e.g. fd_fmnist_1step) in `sampler` and its value in a column named by the family (e.g. fd_fmnist); the other
 * columns are kept. The family is the one whose _1step and _2step columns the table has.
 */
export function recipeBars(table: ColumnTable): ColumnTable {
  const columns = table.columnNames();
  const families = columns.map((name) => /^(.*)_1step$/.exec(name)?.[1]).filter((f): f is string => !!f && columns.includes(`${f}_2step`));
  if (families.length !== 1) throw new Error(`recipeBars: need one family with _1step and _2step columns, found ${families.length} among ${columns.join(', ')}`);
  const [family] = families;
  return table.fold([`${family}_1step`, `${family}_2step`], { as: ['sampler', family] });
}

/**
 * A t_mid study from `ect eval --table` rows: the 2-step rows ordered by t_mid, with the checkpoint, iteration, t_mid,
 * samples, reference and the Frechet distance (the first fd column the rows have, e.g. fd_fmnist_2step).
 */
export function midTTable(rows: EvaluationRow[]): ColumnTable {
  const twoStep = rows.filter((row) => row.sampler === '2step');
  if (twoStep.length === 0) throw new Error('midTTable: no 2-step rows');
  const columns = Object.keys(twoStep[0]);
  const fd = columns.find((name) => parseMetricColumn(name)?.metric === 'fd' && parseMetricColumn(name)?.label === '2step');
  if (!fd) throw new Error(`midTTable: no 2-step Frechet distance among the columns ${columns.join(', ')}`);
  return aq.from(twoStep.map((row) => ({ checkpoint: row.checkpoint, iter: row.iter, mid_t: row.mid_t, n: row.n, reference: row.reference, [fd]: row[fd] })))
    .orderby('mid_t');
}
