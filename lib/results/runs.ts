/**
 * Results as data: reads run directories (config.json + metrics.csv) into one tidy arquero table with
 * the varying config fields, images seen, training FLOPs, wall time, backend and every metric column.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import type { RunConfig } from '../config/types';
import { parseMetricColumn } from '../metrics/columns';
import { forwardFlopsPerImage, passesPerImage, trainingFlops } from '../nn/flops';
import { backendName, isRunFolder, readRunConfig, resolveRunInit, runPaths, type RunRecordFields } from '../runs/folder';
import { readMetrics } from '../train/metrics-log';

type Scalar = string | number | boolean | null;

/** A run directory as read from disk. */
export interface RunRecord {
  id: string;                                   // the directory's name
  dir: string;                                  // absolute path
  config: RunConfig & RunRecordFields;
  metrics: Array<Record<string, Scalar>>;       // metrics.csv rows, numbers parsed, empty cells null
}

export interface LoadRunsOptions {
  /** Add the compute of the pretraining run a tuning run started from (config.init) to train_flops. */
  includePretraining?: boolean;
  /** Keep these config fields even when they do not vary (dotted names, e.g. 'net.modelChannels'). */
  keepConfig?: string[];
}

/** Reads config.json and metrics.csv of one run directory, with errors naming the file (lib/runs/folder.ts readRunConfig). */
export function readRun(dir: string): RunRecord {
  const absolute = path.resolve(dir);
  const { backend, environment, ...config } = readRunConfig(absolute);
  const metricsFile = runPaths(absolute).metrics;
  if (!fs.existsSync(metricsFile)) throw new Error(`${metricsFile}: missing; the run has not logged yet`);
  const { rows } = readMetrics(metricsFile);
  const metrics = rows.map((row, i) => parseMetricsRow(row, metricsFile, i + 2));
  return { id: path.basename(absolute), dir: absolute, config: { ...config, backend, environment }, metrics };
}

function parseMetricsRow(row: Record<string, string>, file: string, line: number): Record<string, Scalar> {
  const parsed: Record<string, Scalar> = {};
  for (const [key, raw] of Object.entries(row)) {
    const text = (raw ?? '').trim();
    if (text === '') parsed[key] = null;
    else if (Number.isFinite(Number(text)) || ['NaN', 'Infinity', '-Infinity'].includes(text)) parsed[key] = Number(text);
    else parsed[key] = text;
  }
  for (const key of ['iter', 'kimg']) {
    if (typeof parsed[key] !== 'number') throw new Error(`${file}: line ${line}: '${key}' is not a number (${row[key]})`);
  }
  return parsed;
}

/** Flattens nested config objects to dotted keys; arrays become their JSON text so they compare as values. */
export function flattenConfig(value: unknown, prefix = '', out: Record<string, Scalar> = {}): Record<string, Scalar> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value as Record<string, unknown>)) {
      flattenConfig(inner, prefix ? `${prefix}.${key}` : key, out);
    }
  } else if (Array.isArray(value)) {
    out[prefix] = JSON.stringify(value);
  } else if (value === undefined) {
    out[prefix] = null;
  } else {
    out[prefix] = value as Scalar;
  }
  return out;
}

/** Dotted config fields whose values differ between runs (the experiment's independent variables). */
export function varyingConfigFields(runs: RunRecord[]): string[] {
  // backend and environment facts have their own columns; they are not experiment settings
  const flat = runs.map((r) => flattenConfig({ ...r.config, backend: undefined, environment: undefined }));
  const keys = new Set(flat.flatMap((f) => Object.keys(f)));
  return [...keys].filter((key) => new Set(flat.map((f) => JSON.stringify(f[key] ?? null))).size > 1).sort();
}

/**
 * Finds the run directory holding a checkpoint or run path (the nearest ancestor with config.json). A
 * relative path is tried from each base in turn; for a tuning run's recorded init, resolve it first with
 * resolveRunInit (lib/runs/folder.ts: relative to the run's own folder), as loadRunsTable does. An absolute
 * path that no longer exists (results trained in another checkout before inits were recorded relative,
 * then committed or copied) is looked up by its last few folder names from the given bases and their
 * parents, e.g. `demo/teacher` from `<this checkout>/results/archive/ablations/baseline`.
 */
export function findRunDirOf(initPath: string, relativeTo: string[]): string {
  // each candidate walks up (a checkpoint file names a path inside its run) but never to `stop` or above it
  const candidates: Array<{ path: string; stop?: string }> = path.isAbsolute(initPath) ? [{ path: initPath }]
    : relativeTo.map((base) => ({ path: path.resolve(base, initPath) }));
  if (path.isAbsolute(initPath) && !fs.existsSync(initPath)) {
    const parts = initPath.split(path.sep).filter(Boolean);
    for (let keep = 2; keep <= Math.min(5, parts.length); keep++) {
      const tail = path.join(...parts.slice(-keep));
      for (const base of relativeTo) {
        for (let dir = path.resolve(base), up = 0; up < 4; up++, dir = path.dirname(dir)) candidates.push({ path: path.join(dir, tail), stop: dir });
      }
    }
  }
  for (const candidate of candidates) {
    let dir = candidate.path;
    for (let depth = 0; depth < 4 && dir !== candidate.stop; depth++) {
      if (isRunFolder(dir)) return dir;
      dir = path.dirname(dir);
    }
  }
  throw new Error(`cannot find the pretraining run of init '${initPath}' (looked from ${relativeTo.join(', ')})`);
}

/** Total training FLOPs of a finished run: its last logged images seen times its cost per image. */
export function totalRunFlops(run: RunRecord): number {
  const last = run.metrics[run.metrics.length - 1];
  return last ? trainingFlops(run.config, Math.round((last.kimg as number) * 1000)) : 0;
}

/**
 * Loads run directories into one tidy table, one row per metrics.csv row: run_id, the config fields
 * that vary across the runs, iter, kimg, images_seen, forward_flops_per_image, train_flops,
 * pretrain_flops, pretrain_flops_included, wall_s, backend, kind, then every metrics.csv column.
 */
export function loadRunsTable(dirs: string[], options: LoadRunsOptions = {}): ColumnTable {
  if (dirs.length === 0) throw new Error('loadRunsTable: no run directories given');
  const runs = dirs.map(readRun);
  const ids = runs.map((r) => r.id);
  const duplicate = ids.find((id, i) => ids.indexOf(id) !== i);
  if (duplicate) throw new Error(`loadRunsTable: two runs are named '${duplicate}'; run ids must be unique`);
  const configColumns = [...new Set([...varyingConfigFields(runs), ...(options.keepConfig ?? [])])];
  const rows: Array<Record<string, Scalar>> = [];
  for (const run of runs) {
    const flat = flattenConfig(run.config);
    const perImage = forwardFlopsPerImage(run.config.net);
    let pretrainFlops = 0;
    if (options.includePretraining && run.config.kind === 'tune' && run.config.init) {
      const init = resolveRunInit(run.config.init, run.dir);
      let pretrainDir: string;
      try {
        pretrainDir = findRunDirOf(init, [path.dirname(run.dir), run.dir, process.cwd()]);
      } catch (err) {
        const recorded = init === run.config.init ? '' : ` (recorded as '${run.config.init}', relative to the run)`;
        throw new Error(`${runPaths(run.dir).config}: ${(err as Error).message}${recorded}`);
      }
      pretrainFlops = totalRunFlops(readRun(pretrainDir));
    }
    for (const metric of run.metrics) {
      const imagesSeen = Math.round((metric.kimg as number) * 1000);
      const row: Record<string, Scalar> = { run_id: run.id };
      for (const key of configColumns) row[key] = flat[key] ?? null;
      Object.assign(row, {
        iter: metric.iter,
        kimg: metric.kimg,
        images_seen: imagesSeen,
        forward_flops_per_image: perImage,
        train_flops: perImage * passesPerImage(run.config) * imagesSeen + pretrainFlops,
        pretrain_flops: pretrainFlops,
        pretrain_flops_included: pretrainFlops > 0,
        wall_s: metric.wall_s ?? null,
        backend: backendName(run.config),
        kind: run.config.kind,
      });
      for (const [key, value] of Object.entries(metric)) if (!(key in row)) row[key] = value;
      rows.push(row);
    }
  }
  // every row gets every column (runs may have evaluated different metrics)
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return aq.from(rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c] ?? null]))));
}

/** Run directories under a results folder: every folder (up to `depth` levels down) that is a run (config.json and metrics.csv). */
export function findRunDirs(root: string, depth = 3): string[] {
  if (!fs.existsSync(root)) throw new Error(`${root}: no such results folder`);
  const found: string[] = [];
  const walk = (dir: string, level: number): void => {
    if (isRunFolder(dir)) {
      found.push(dir);
      return; // checkpoints inside a run are not runs
    }
    if (level >= depth) return;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(dir, entry.name), level + 1);
    }
  };
  walk(path.resolve(root), 0);
  return found.sort();
}

/** The last logged row of each run that has a value in `column` (e.g. final FD per run). */
export function lastEvaluatedRows(table: ColumnTable, column: string): ColumnTable {
  if (!table.columnNames().includes(column)) {
    throw new Error(`lastEvaluatedRows: no column '${column}' (columns: ${table.columnNames().join(', ')})`);
  }
  const latest = new Map<string, Record<string, unknown>>();
  for (const row of table.objects() as Array<Record<string, unknown>>) {
    if (row[column] === null || row[column] === undefined) continue;
    const previous = latest.get(row.run_id as string);
    if (!previous || (row.iter as number) >= (previous.iter as number)) latest.set(row.run_id as string, row);
  }
  return aq.from([...latest.values()]);
}

/**
 * One row per run: its last row that logged any of `columns` (e.g. its Frechet distances), else its last logged row:
 * each run's final quality even when its last logged row was not an evaluation.
 */
export function lastQualityRows(table: ColumnTable, columns: string[]): ColumnTable {
  const latest = new Map<string, { row: Record<string, unknown>; evaluated: boolean }>();
  for (const row of table.objects() as Array<Record<string, unknown>>) {
    const evaluated = columns.some((column) => row[column] !== null && row[column] !== undefined);
    const previous = latest.get(row.run_id as string);
    // an evaluated row beats one that is not, then the later beats the earlier
    const better = !previous || (evaluated !== previous.evaluated ? evaluated : (row.iter as number) >= (previous.row.iter as number));
    if (better) latest.set(row.run_id as string, { row, evaluated });
  }
  return aq.from([...latest.values()].map(({ row }) => row));
}

/**
 * Sample-quality metric columns of a runs table, those with any value: the columns the evaluator declares
 * (lib/metrics/columns.ts), so a metric added there is found here too.
 */
export function metricColumns(table: ColumnTable): string[] {
  return table.columnNames().filter((name) => parseMetricColumn(name) !== null
    && (Array.from(table.array(name) as ArrayLike<unknown>)).some((v) => v !== null && v !== undefined));
}

/** The Fréchet-distance columns among the metric columns (fd_fmnist_* in our classifier's features, fid_* in Inception's). */
export function frechetColumns(table: ColumnTable): string[] {
  return metricColumns(table).filter((name) => parseMetricColumn(name)?.metric === 'fd');
}
