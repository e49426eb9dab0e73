/**
 * A run folder, named in one place: its files (config.json, metrics.csv, checkpoints/, samples/, posthoc/,
 * posthoc-ema/, evaluations.csv, the lock), whether a folder is a run, and config.json read (one rule for bad JSON and for fields older runs lack)
 * and written. Every reader and writer of a run folder goes through these names.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RECORDED_EVAL_SEED, resolveRecordedConfig } from '../config/resolve';
import type { RunConfig } from '../config/types';
import type { BackendInfo } from '../backend/select';
import { machineFacts } from '../machine/facts';
import { writeFileAtomic } from '../write-file';

/** The resolved config of the run and the backend and machine that ran it. */
export const CONFIG_FILE = 'config.json';
/** One row per logged iteration (lib/train/metrics-log.ts). */
export const METRICS_FILE = 'metrics.csv';
/** The run's checkpoints, ckpt-<iteration>.ckpt (lib/train/checkpoint.ts). */
export const CHECKPOINT_DIR = 'checkpoints';
/** Sample grids written while training and at the end. */
export const SAMPLES_DIR = 'samples';
/** Folder of a run's post-hoc EMA snapshots (ema.posthoc; lib/select/posthoc-ema.ts). */
export const POSTHOC_DIR = 'posthoc';
/** Post-hoc EMAs reconstructed from the snapshots (lib/select/posthoc-ema.ts). */
export const POSTHOC_EMA_DIR = 'posthoc-ema';
/** Test-split scores `ect select` records for the run (lib/select/run-selection.ts), read by the results tables. */
export const EVALUATIONS_FILE = 'evaluations.csv';
/** The lock a training process holds (lib/runs/lock.ts). */
export const LOCK_FILE = '.lock';
/** How many of the newest checkpoints a run keeps. */
export const CHECKPOINTS_KEPT = 3;

/** The files and folders of one run folder. */
export interface RunPaths {
  dir: string;
  config: string;
  metrics: string;
  checkpoints: string;
  samples: string;
  posthoc: string;
  posthocEma: string;
  evaluations: string;
  lock: string;
}

/** The paths of a run folder's files. */
export function runPaths(runDir: string): RunPaths {
  return {
    dir: runDir,
    config: path.join(runDir, CONFIG_FILE),
    metrics: path.join(runDir, METRICS_FILE),
    checkpoints: path.join(runDir, CHECKPOINT_DIR),
    samples: path.join(runDir, SAMPLES_DIR),
    posthoc: path.join(runDir, POSTHOC_DIR),
    posthocEma: path.join(runDir, POSTHOC_EMA_DIR),
    evaluations: path.join(runDir, EVALUATIONS_FILE),
    lock: path.join(runDir, LOCK_FILE),
  };
}

/** Whether `dir` is a run that has logged: it holds config.json and metrics.csv (what the results readers read). */
export function isRunFolder(dir: string): boolean {
  const paths = runPaths(dir);
  return fs.existsSync(paths.config) && fs.existsSync(paths.metrics);
}

/** Whether `dir` holds a run a new one would overwrite: a config.json or a checkpoints/ folder. */
export function holdsRun(dir: string): boolean {
  const paths = runPaths(dir);
  return fs.existsSync(paths.config) || fs.existsSync(paths.checkpoints);
}

/** The run folder a checkpoint file belongs to: the parent of its checkpoints/ folder, else the folder holding it. */
export function runFolderOfCheckpoint(file: string): string {
  const dir = path.dirname(file);
  return path.basename(dir) === CHECKPOINT_DIR ? path.dirname(dir) : dir;
}

/** Fields of config.json that record the run (the backend, the machine, when it was written), not its settings. */
export const RECORD_ONLY_FIELDS = ['backend', 'environment', 'writtenAt'] as const;

/** What config.json records beside the settings. */
export interface RunRecordFields { backend?: unknown; environment?: unknown; writtenAt?: unknown }

/** Fields every config.json holds: a JSON object without them was not written by a run. */
const REQUIRED_FIELDS = ['kind', 'net', 'batch'] as const;

/**
 * A run's config.json as an object. Bad JSON (say, a file cut short), a top level that is not an object, or a
 * missing kind, net or batch is an error naming the file.
 */
export function readConfigJson(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${file}: missing; is ${path.dirname(file)} a run folder?`);
    throw new Error(`${file}: not valid JSON (${(err as Error).message}); if it was cut short, delete it: --resume then uses the config recorded in the checkpoint`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${file}: not a run config (the top level must be a JSON object)`);
  const record = parsed as Record<string, unknown>;
  for (const key of REQUIRED_FIELDS) {
    if (record[key] === undefined) throw new Error(`${file}: no '${key}' field; not a run config`);
  }
  return record;
}

/**
 * The settings a run recorded (config.json, or a checkpoint's meta) as a config layer, by the one rule for older
 * runs: the bookkeeping fields dropped, and a run recorded before evalSeed existed keeps evaluating on the noise
 * it started with. `init` stays as recorded (relative to the run folder: resolveRunInit).
 */
export function recordedSettings(record: Record<string, unknown>): Record<string, unknown> {
  const settings = { ...record };
  for (const field of RECORD_ONLY_FIELDS) delete settings[field];
  settings.evalSeed ??= RECORDED_EVAL_SEED;
  return settings;
}

/** The config.json of a run as read: the file, its settings (recordedSettings) and its bookkeeping; null when it has none. */
export function readRunConfigFile(runDir: string): { file: string; settings: Record<string, unknown>; record: RunRecordFields } | null {
  const file = runPaths(runDir).config;
  if (!fs.existsSync(file)) return null;
  const raw = readConfigJson(file);
  const record: RunRecordFields = {};
  for (const field of RECORD_ONLY_FIELDS) if (raw[field] !== undefined) record[field] = raw[field];
  return { file, settings: recordedSettings(raw), record };
}

/**
 * A run's config as today's schema reads it (fields added since the run take their defaults), with its
 * bookkeeping (backend, environment, writtenAt) kept beside it. Errors name the file.
 */
export function readRunConfig(runDir: string): RunConfig & RunRecordFields {
  const read = readRunConfigFile(runDir);
  if (read === null) throw new Error(`${runPaths(runDir).config}: missing; is ${runDir} a run folder?`);
  return { ...resolveRecordedConfig(read.settings as unknown as RunConfig, read.file), ...read.record };
}

/**
 * A run's recorded `init` (config.json, checkpoint meta) as a path to load: a relative one is relative to
 * the run's own folder, so a run tree keeps working when it is moved or committed; an absolute one (runs
 * recorded before this rule) is returned unchanged.
 */
export function resolveRunInit(init: string, runDir: string): string {
  return path.isAbsolute(init) ? path.normalize(init) : path.resolve(runDir, init);
}

/**
 * How a run records the `init` it started from: relative to its run folder, with POSIX separators, so no
 * machine's absolute path ends up in a run. `init` itself is absolute or relative to the current directory.
 * With no run folder (runDir null) it is returned as given. resolveRunInit is the inverse.
 */
export function recordedRunInit(init: string, runDir: string | null): string {
  if (runDir === null) return init;
  const relative = path.relative(path.resolve(runDir), path.resolve(init));
  // another Windows drive has no relative path: keep the absolute one
  return path.isAbsolute(relative) ? relative : relative.split(path.sep).join('/') || '.';
}

/** The config as a run records it in config.json and its checkpoints: `init` relative to the run folder. */
export function recordedRunConfig(cfg: RunConfig, runDir: string | null): RunConfig {
  return cfg.init === undefined ? cfg : { ...cfg, init: recordedRunInit(cfg.init, runDir) };
}

/**
 * Writes <run>/config.json: the resolved config plus the backend and machine that ran it (lib/machine/facts.ts,
 * unless `environment` is given). `cfg.init` (absolute, or relative to the current directory) is stored relative
 * to the run folder.
 */
export function writeRunConfig(runDir: string, cfg: RunConfig, backend?: BackendInfo, environment?: Record<string, unknown>): void {
  const record = { ...recordedRunConfig(cfg, runDir), backend: backend ?? null, environment: environment ?? machineFacts(), writtenAt: new Date().toISOString() };
  writeFileAtomic(runPaths(runDir).config, JSON.stringify(record, null, 2) + '\n');
}

/** The backend name a config.json records (a BackendInfo object or a plain string), else 'unknown'. */
export function backendName(config: RunRecordFields): string {
  const backend = config.backend;
  if (typeof backend === 'string') return backend;
  if (backend && typeof backend === 'object') {
    const info = backend as Record<string, unknown>;
    const name = info.name ?? info.backend ?? info.id;
    if (typeof name === 'string') return name;
  }
  return 'unknown';
}
