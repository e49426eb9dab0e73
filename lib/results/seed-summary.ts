/**
 * A recipe's result over training seeds: the test scores `ect select` recorded for each seed's run (the choice made
 * on validation, and the last checkpoint as the run left it), their mean and spread, and the mean's ratio to the
 * teacher's Heun fd on the same test reference. Every number is read from the runs' evaluations.csv.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import { readEvaluationTable, type EvaluationRow } from './headline';
import { runPaths } from '../runs/folder';

/** One test score of one seed's run. */
export interface SeedScore extends ScoredCandidate {
  run: string;            // the run folder, as given
  role: 'chosen' | 'last';
}

/** A test score of one candidate that `ect select` recorded. */
export interface ScoredCandidate {
  sampler: string;        // '1step' or '2step'
  fd: number;
  n: number;
  seed: number;           // the noise seed of the test samples
  what: string;           // the candidate: EMA and t_mid
}

/** The test rows of `ect select` in a run's evaluations.csv (those with a chosen_by), in file order; an error naming the file if none. */
function selectionRows(runDir: string): { file: string; rows: EvaluationRow[] } {
  const file = runPaths(runDir).evaluations;
  if (!fs.existsSync(file)) throw new Error(`${file}: missing; \`ect select --run ${runDir}\` writes it`);
  const rows = readEvaluationTable(file).filter((row) => typeof row.chosen_by === 'string' && row.chosen_by !== '' && (row.split ?? 'test') === 'test');
  if (rows.length === 0) throw new Error(`${file}: no test rows of \`ect select\` (a chosen_by column)`);
  return { file, rows };
}

/** What a selection row scores: its candidate (EMA) and, for 2 steps, its t_mid. */
function candidateOf(row: EvaluationRow): string {
  return `${row.candidate}${row.mid_t === null || row.mid_t === '' || row.mid_t === undefined ? '' : `, t_mid ${row.mid_t}`}`;
}

/** The test rows `ect select` wrote to a run's evaluations.csv (the newest selection's, one per sampler and role). */
export function readSeedScores(runDir: string): SeedScore[] {
  const newest = new Map<string, EvaluationRow>();
  for (const row of selectionRows(runDir).rows) newest.set(`${row.sampler}/${String(row.chosen_by).startsWith('validation') ? 'chosen' : 'last'}`, row);
  return [...newest].map(([key, row]) => ({
    run: runDir, sampler: String(row.sampler), role: key.endsWith('/chosen') ? 'chosen' : 'last', fd: Number(row.fd), n: Number(row.n), seed: Number(row.seed),
    what: candidateOf(row),
  }));
}

/** Mean and sample standard deviation (0 for one value). */
function meanAndStd(values: number[]): { mean: number; std: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.length > 1 ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1) : 0;
  return { mean, std: Math.sqrt(variance) };
}

/**
 * One row per (sampler, role): the seeds' fds, their mean, standard deviation, min and max, and the mean over the
 * teacher's fd with the target ratio. Scores of unlike sample counts or test seeds are refused, naming the runs.
 */
export function seedSummaryTable(scores: SeedScore[], teacher: { fd: number; n: number; seed: number }, targets: Record<string, number>): ColumnTable {
  const groups = new Map<string, SeedScore[]>();
  for (const s of scores) {
    if (s.n !== teacher.n || s.seed !== teacher.seed) {
      throw new Error(`${s.run}: its ${s.sampler} test score is on ${s.n} samples of noise seed ${s.seed}, the teacher's on ${teacher.n} of seed ${teacher.seed}: compare like with like`);
    }
    const key = `${s.sampler}/${s.role}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const rows = [...groups].sort(([a], [b]) => a.localeCompare(b)).map(([, group]) => {
    const fds = group.map((s) => s.fd);
    const { mean, std } = meanAndStd(fds);
    const target = targets[group[0].sampler];
    return {
      sampler: group[0].sampler, role: group[0].role, seeds: group.length, fd_per_seed: fds.map((fd) => fd.toPrecision(4)).join(' / '),
      fd_mean: mean, fd_std: std, fd_min: Math.min(...fds), fd_max: Math.max(...fds), teacher_fd: teacher.fd, ratio: mean / teacher.fd,
      ratio_min: Math.min(...fds) / teacher.fd, ratio_max: Math.max(...fds) / teacher.fd, target: target ?? null,
      met: target === undefined ? null : mean / teacher.fd <= target,
    };
  });
  return aq.from(rows);
}

/** One row per seed score: its run folder's name, sampler, role, the candidate it scores (EMA and t_mid) and its fd. */
export function seedScoresTable(scores: SeedScore[]): ColumnTable {
  return aq.from(scores.map((s) => ({ run: path.basename(s.run), sampler: s.sampler, role: s.role, what: s.what, fd: s.fd })));
}

/** The teacher's Heun score from an `ect eval --table` CSV of the teacher (its single heun row on the test split). */
export function readTeacherScore(file: string): { fd: number; n: number; seed: number } {
  const rows = readEvaluationTable(file).filter((row) => row.sampler === 'heun');
  if (rows.length !== 1) throw new Error(`${file}: expected one heun row of the teacher's evaluation, found ${rows.length}`);
  const fdColumn = Object.keys(rows[0]).find((key) => /^(fd_[a-z]+|fid)_heun$/.test(key));
  if (!fdColumn) throw new Error(`${file}: its heun row has no fd_*_heun or fid_heun column`);
  return { fd: Number(rows[0][fdColumn]), n: Number(rows[0].n), seed: Number(rows[0].seed) };
}

/** A summary table as markdown, numbers to 3 significant digits (4 for fds), for READMEs and the command line. */
export function seedSummaryMarkdown(table: ColumnTable): string {
  const columns = ['sampler', 'role', 'seeds', 'fd_per_seed', 'fd_mean', 'fd_std', 'teacher_fd', 'ratio', 'ratio_min', 'ratio_max', 'target', 'met'];
  const cell = (value: unknown) => (typeof value === 'number' ? (Number.isInteger(value) ? String(value) : value.toPrecision(3)) : String(value ?? ''));
  const rows = (table.objects() as Array<Record<string, unknown>>).map((row) => `| ${columns.map((c) => cell(row[c])).join(' | ')} |`);
  return [`| ${columns.join(' | ')} |`, `| ${columns.map(() => '---').join(' | ')} |`, ...rows].join('\n');
}

/** A test score of one run at one of its snapshots: what `ect select [--at <iteration>]` recorded there. */
export interface AlongRunScore extends ScoredCandidate {
  kimg: number;           // the images the scored snapshot had seen, in thousands
  choice: 'chosen on validation' | 'run EMA, no choice';
}

/**
 * Every snapshot's test scores in a run's evaluations.csv (rows of `ect select`, with and without `--at`): per kimg and
 * sampler, the candidate chosen on validation and the run's own EMA scored without a choice; a selection repeated at
 * one snapshot counts once (its newest rows). Sorted by kimg.
 */
export function readScoresAlongRun(runDir: string): AlongRunScore[] {
  const { file, rows } = selectionRows(runDir);
  const newest = new Map<string, AlongRunScore>();
  for (const row of rows) {
    const kimg = Number(row.kimg);
    if (!Number.isFinite(kimg)) throw new Error(`${file}: a row of \`ect select\` without its snapshot's kimg (${row.candidate})`);
    const choice = String(row.chosen_by).startsWith('validation') ? 'chosen on validation' : 'run EMA, no choice';
    newest.set(`${kimg}/${row.sampler}/${choice}`, {
      kimg, sampler: String(row.sampler), choice, fd: Number(row.fd), n: Number(row.n), seed: Number(row.seed),
      what: candidateOf(row),
    });
  }
  return [...newest.values()].sort((a, b) => a.kimg - b.kimg || a.sampler.localeCompare(b.sampler) || a.choice.localeCompare(b.choice));
}

/** One row per score along a run, with its ratio to the teacher's Heun fd; scores of unlike samples are refused. */
export function alongRunTable(scores: AlongRunScore[], teacher: { fd: number; n: number; seed: number }): ColumnTable {
  for (const s of scores) {
    if (s.n !== teacher.n || s.seed !== teacher.seed) {
      throw new Error(`the ${s.sampler} test score at ${s.kimg} kimg is on ${s.n} samples of noise seed ${s.seed}, the teacher's on ${teacher.n} of seed ${teacher.seed}: compare like with like`);
    }
  }
  return aq.from(scores.map((s) => ({ kimg: s.kimg, sampler: s.sampler, choice: s.choice, what: s.what, fd: s.fd, ratio: s.fd / teacher.fd })));
}

/** The scores along a run as curves: one row per kimg and choice, with fd_1step and fd_2step (trainingCurvesFigure's input). */
export function alongRunCurves(scores: AlongRunScore[]): ColumnTable {
  const rows = new Map<string, Record<string, unknown>>();
  for (const s of scores) {
    const key = `${s.kimg}/${s.choice}`;
    const row = rows.get(key) ?? { kimg: s.kimg, choice: s.choice, fd_1step: null, fd_2step: null };
    row[`fd_${s.sampler}`] = s.fd;
    rows.set(key, row);
  }
  return aq.from([...rows.values()]);
}
