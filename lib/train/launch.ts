/**
 * The one way a run starts, for the CLI, the demo and the notebooks alike: a run is named by its preset and
 * flags (a RunSpec); its config is resolved once, from the defaults, the preset or the run's own config.json
 * when resuming, the flags and --set, and the --init checkpoint's network; then validated, checked against the
 * checkpoint it resumes, and handed to the trainer, which never edits it. Finished runs are reused and
 * interrupted ones resumed here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeBackend, initBackend, type BackendChoice, type BackendInfo } from '../backend/select';
import { labelOverride, parseOverride, resolveRunConfig } from '../config/resolve';
import type { DatasetName, RunConfig, RunKind } from '../config/types';
import type { ImageDataset } from '../data';
import { createRunEvaluator, type SampleEvaluator } from '../metrics/evaluate';
import { latestCheckpoint, readCheckpointMeta } from './checkpoint';
import { readMetrics } from './metrics-log';
import { resolveCheckpointFile, resolveRunInit, CHECKPOINT_DIR } from './run';
import { Trainer, type RunStart, type TrainerEvents } from './trainer';

/** One layer of config values, as resolveRunConfig takes them. */
type ConfigPatch = NonNullable<Parameters<typeof resolveRunConfig>[2]>[number];

/** A run as `ect pretrain` / `ect tune` take it, as data: the preset, the flags, the --set assignments. */
export interface RunFlags {
  config?: string;          // preset: a JSON file, or a name in configs/
  out?: string;             // run directory (default runs/<preset name>)
  data?: DatasetName;
  dataDir?: string;
  dataLimit?: number;
  seed?: number;
  iters?: number;
  batch?: number;
  lr?: number;
  logEvery?: number;
  ckptEvery?: number;
  sampleEvery?: number;
  evalEvery?: number;
  evalN?: number;
  init?: string;            // pretrained checkpoint or run directory to tune, from the current directory
  set?: Array<string | ConfigPatch>;  // `key.path=value` assignments (--set) or config patches, applied last, in order
  resume?: boolean;         // continue the run in `out` from its newest checkpoint
  fromScratch?: boolean;    // tune a randomly initialised network (the ablation without pretraining)
  backend?: string;         // backend choice (default $ECT_BACKEND, else the fastest that loads)
  evalReferenceSplit?: 'train' | 'test';  // the split in-run evaluations compare with (default train)
}

/** A run: what it does and how it is named. */
export interface RunSpec { kind: RunKind; flags: RunFlags }

/** A resolved run: its config (final), its directory and where its weights start. */
export interface ResolvedRun { kind: RunKind; cfg: RunConfig; runDir: string; start: RunStart }

/** The run directory of a spec: --out, else runs/<preset name>. */
export function runDirOf({ kind, flags }: RunSpec): string {
  const preset = flags.config ? path.basename(flags.config).replace(/\.json$/, '') : kind === 'pretrain' ? 'edm-pretrain' : 'ect-tune';
  return path.resolve(flags.out ?? path.join('runs', preset));
}

/** The flags as config patches, in the order they apply after the preset, each labelled with its flag for errors. */
export function flagOverrides(flags: RunFlags): ConfigPatch[] {
  const patches: ConfigPatch[] = [];
  const add = (flag: string, value: string | number | undefined, patch: (value: string | number) => ConfigPatch) => {
    if (value !== undefined) patches.push(labelOverride(patch(value), `${flag} ${value}`));
  };
  add('--data', flags.data, (name) => ({ data: { name } }));
  add('--data-dir', flags.dataDir, (dir) => ({ data: { dir } }));
  add('--data-limit', flags.dataLimit, (limit) => ({ data: { limit } }));
  add('--seed', flags.seed, (seed) => ({ seed }));
  add('--iters', flags.iters, (iters) => ({ iters }));
  add('--batch', flags.batch, (batch) => ({ batch }));
  add('--log-every', flags.logEvery, (logEvery) => ({ logEvery }));
  add('--ckpt-every', flags.ckptEvery, (ckptEvery) => ({ ckptEvery }));
  add('--sample-every', flags.sampleEvery, (sampleEvery) => ({ sampleEvery }));
  add('--eval-every', flags.evalEvery, (evalEvery) => ({ evalEvery }));
  add('--eval-n', flags.evalN, (evalN) => ({ evalN }));
  add('--init', flags.init, (init) => ({ init: path.resolve(String(init)) }));  // the user's path, from the current directory
  add('--lr', flags.lr, (lr) => ({ optimizer: { lr } }));
  for (const assignment of flags.set ?? []) patches.push(typeof assignment === 'string' ? parseOverride(assignment) : assignment);
  return patches;
}

/**
 * The config a spec names by its preset and flags alone, before its run directory or --init checkpoint is
 * read (for plans and estimates; resolveRun starts from it). `initNetwork` is the init checkpoint's network layer.
 */
export function plannedRunConfig(spec: RunSpec, initNetwork: ConfigPatch[] = []): RunConfig {
  return resolveRunConfig(spec.kind, spec.flags.config, [...initNetwork, ...flagOverrides(spec.flags)]);
}

/** Fields of config.json that record the run, not its settings. */
const RECORD_ONLY_FIELDS = ['backend', 'environment', 'writtenAt'];

/**
 * A resumed run's own config as a config layer: its config.json, else the config its checkpoint recorded;
 * bookkeeping fields dropped, `init` resolved from the run's folder.
 */
function savedRunConfig(runDir: string, checkpoint: string): ConfigPatch {
  const file = path.join(runDir, 'config.json');
  const [saved, source] = fs.existsSync(file)
    ? [JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>, file]
    : [{ ...checkpointConfig(checkpoint) } as unknown as Record<string, unknown>, `${checkpoint} (its recorded config)`];
  for (const field of RECORD_ONLY_FIELDS) delete saved[field];
  if (typeof saved.init === 'string') saved.init = resolveRunInit(saved.init, runDir);
  return labelOverride(saved as ConfigPatch, source);
}

/** The fields of a run config that define its result: a resumed run must match its checkpoint in each. */
const RESULT_FIELDS: Array<keyof RunConfig> = ['kind', 'net', 'edm', 'ect', 'optimizer', 'ema', 'batch', 'seed', 'data'];

/**
 * Resolves a run once: its directory, its config and where its weights start. The config is the run's own
 * (config.json) when resuming, where only bookkeeping fields such as iters may change; else the defaults and
 * the preset, where a tuning run from a checkpoint takes that checkpoint's network (all but dropout, a setting
 * of the tuning); then the flags and --set. Throws on anything that would not train the run asked for.
 */
export function resolveRun(spec: RunSpec): ResolvedRun {
  const { kind, flags } = spec;
  const runDir = runDirOf(spec);
  const resumeFile = flags.resume ? latestCheckpoint(path.join(runDir, CHECKPOINT_DIR)) : null;
  if (flags.resume && !resumeFile) throw new Error(`--resume: no checkpoint in ${path.join(runDir, CHECKPOINT_DIR)} to resume from`);
  const saved = resumeFile ? savedRunConfig(runDir, resumeFile) : null;
  const resolveWith = (initNetwork: ConfigPatch[]) => saved
    ? resolveRunConfig(kind, undefined, [saved, ...flagOverrides(flags)])
    : plannedRunConfig(spec, initNetwork);
  let cfg = resolveWith([]);
  const init = cfg.init === undefined ? undefined : path.resolve(cfg.init);  // a preset's or --set's init is the user's path too
  if (init !== undefined && kind !== 'tune') throw new Error(`init ${init}: only a tuning run starts from a checkpoint`);
  if (kind === 'tune' && init === undefined && !resumeFile && !flags.fromScratch) {
    throw new Error('tune needs --init <checkpoint or run directory> of a pretrained model (or --resume, or --from-scratch for the ablation without pretraining)');
  }
  if (init !== undefined && flags.fromScratch) throw new Error('--from-scratch and --init exclude each other');
  // a resumed run has its weights already; only a new one reads its init checkpoint
  const initFile = init === undefined || resumeFile ? null : resolveCheckpointFile(init);
  if (initFile) {
    // again with the pretrained network's architecture after the preset (the init path is known only now); the
    // tuning's own dropout, and any --set net.*, apply on top
    const { dropout: _dropout, ...architecture } = checkpointConfig(initFile).net;
    cfg = resolveWith([labelOverride({ net: architecture as unknown as ConfigPatch }, `--init ${initFile}`)]);
  }
  if (init !== undefined) cfg = { ...cfg, init };
  if (resumeFile) assertMatchesCheckpoint(cfg, resumeFile);
  const start: RunStart = resumeFile ? { from: 'resume', checkpoint: resumeFile }
    : initFile ? { from: 'init', checkpoint: initFile } : { from: 'fresh' };
  return { kind, cfg, runDir, start };
}

/** The config recorded in a checkpoint's metadata (read without loading its tensors). */
function checkpointConfig(file: string): RunConfig {
  const config = readCheckpointMeta(file).config as RunConfig | undefined;
  if (!config?.net) throw new Error(`${file}: checkpoint meta has no config.net; it was not written by ect-workbench's trainer`);
  return config;
}

/** A resumed run must train the same thing: the fields that define the result must match the checkpoint's. */
function assertMatchesCheckpoint(cfg: RunConfig, file: string): void {
  const saved = readCheckpointMeta(file).config as RunConfig | undefined;
  if (!saved) throw new Error(`${file}: checkpoint has no config; cannot check it matches this run`);
  const differing = RESULT_FIELDS.filter((k) => canonicalJson(cfg[k]) !== canonicalJson(saved[k]));
  if (differing.length) {
    const details = differing.map((k) => `${String(k)}: checkpoint ${JSON.stringify(saved[k])} vs now ${JSON.stringify(cfg[k])}`).join('; ');
    throw new Error(`${file}: the checkpoint does not match this config (${details}). Resume with the run's own config (omit --config/flags that change it).`);
  }
}

/** JSON with object keys sorted, so that two configs compare by their values, not by the order keys were set in. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) => (inner !== null && typeof inner === 'object' && !Array.isArray(inner)
    ? Object.fromEntries(Object.entries(inner as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : inner));
}

/** Initialises the backend (choice, else $ECT_BACKEND, else the fastest that loads) and says which one runs. */
export async function startBackend(choice: string | undefined, log: (line: string) => void): Promise<BackendInfo> {
  const info = await initBackend(choice as BackendChoice | undefined);
  log(describeBackend(info));
  return info;
}

/** The evaluator of a run's dataset, or null (with the reason logged) when none is available here. */
export async function runEvaluator(cfg: RunConfig, log: (line: string) => void, referenceSplit?: 'train' | 'test'): Promise<SampleEvaluator | null> {
  try {
    const evaluator = await createRunEvaluator(cfg, { referenceSplit, onInfo: log });
    if (!evaluator) log('evaluation: no feature network for this dataset; metric columns stay empty');
    return evaluator;
  } catch (err) {
    log(`evaluation disabled: ${(err as Error).message}`);
    return null;
  }
}

/** Options of launching a run beyond its spec. */
export interface LaunchOptions {
  log?: (line: string) => void;
  dataset?: ImageDataset;                   // instead of loading cfg.data (tests)
  evaluator?: SampleEvaluator | null;       // instead of the run's own (tests); the caller frees it
}

/** A launched run: the resolved run, its trainer and what dispose() frees. */
export interface LaunchedRun extends ResolvedRun {
  trainer: Trainer;
  backend: BackendInfo;
  dispose(): void;
}

/** Resolves a run, starts the backend, builds its evaluator (when it evaluates) and its trainer. */
export async function launchRun(spec: RunSpec, opts: LaunchOptions = {}): Promise<LaunchedRun> {
  const log = opts.log ?? (() => {});
  const run = resolveRun(spec);
  const backend = await startBackend(spec.flags.backend, log);
  const ownEvaluator = opts.evaluator === undefined && run.cfg.evalEvery > 0;
  const evaluator = ownEvaluator ? await runEvaluator(run.cfg, log, spec.flags.evalReferenceSplit) : opts.evaluator ?? null;
  try {
    const trainer = await Trainer.create(run.cfg, { runDir: run.runDir, start: run.start, backend, evaluator, dataset: opts.dataset });
    return {
      ...run, trainer, backend,
      dispose: () => {
        trainer.dispose();
        if (ownEvaluator) evaluator?.dispose();
      },
    };
  } catch (err) {
    if (ownEvaluator) evaluator?.dispose();
    throw err;
  }
}

/** How a run ended. */
export interface RunOutcome {
  runDir: string;
  iteration: number;       // iterations done
  stopped: boolean;        // stopped early (shouldStop) and checkpointed
  reused: boolean;         // already finished: nothing was trained
}

/** Hooks of a training run: log lines and the loop's events (a progress display, stop requests). */
export interface RunHooks extends LaunchOptions {
  /** Called once the run is built; returns the events of its loop (and what to close after it). */
  events?: (run: LaunchedRun) => TrainerEvents & { close?(): void };
}

/** Launches a run and trains it to its last iteration (or until its events ask it to stop). */
export async function trainRun(spec: RunSpec, hooks: RunHooks = {}): Promise<RunOutcome> {
  const log = hooks.log ?? (() => {});
  const run = await launchRun(spec, hooks);
  const { cfg, trainer, runDir } = run;
  const events = hooks.events?.(run) ?? {};
  try {
    log(`${run.kind} ${cfg.name}: ${trainer.net.paramCount().toLocaleString('en-US')} parameters, ${cfg.data.name} (${trainer.loader.dataset.count} images), ` +
      `batch ${cfg.batch}, ${cfg.iters} iterations${trainer.iteration ? `, resuming at ${trainer.iteration}` : ''} -> ${runDir}`);
    const result = await trainer.run(events);
    return { runDir, iteration: result.iteration, stopped: result.stopped, reused: false };
  } finally {
    events.close?.();
    run.dispose();
  }
}

/** Where a run directory stands: nothing to resume, interrupted (a checkpoint before its last iteration), or finished. */
export interface RunStatus { state: 'new' | 'interrupted' | 'finished'; iteration: number }

/**
 * The status of a run directory for `iters` iterations (default: its config.json's). Finished: metrics.csv
 * logged the last iteration and no older checkpoint is the newest (committed results keep no checkpoints).
 */
export function runStatus(runDir: string, iters?: number): RunStatus {
  const checkpoint = latestCheckpoint(path.join(runDir, CHECKPOINT_DIR));
  const checkpointIter = checkpoint ? Number(readCheckpointMeta(checkpoint).iteration ?? 0) : 0;
  const configFile = path.join(runDir, 'config.json');
  const target = iters ?? (fs.existsSync(configFile) ? (JSON.parse(fs.readFileSync(configFile, 'utf8')) as { iters?: number }).iters : undefined);
  const { rows } = readMetrics(path.join(runDir, 'metrics.csv'));
  const logged = rows.length ? Number(rows[rows.length - 1].iter) : 0;
  const finished = target !== undefined && logged >= target && (checkpoint === null || checkpointIter >= target);
  if (finished) return { state: 'finished', iteration: Math.max(logged, checkpointIter) };
  return checkpoint ? { state: 'interrupted', iteration: checkpointIter } : { state: 'new', iteration: 0 };
}

/** Trains a run unless it already finished; resumes it when it was interrupted. */
export async function ensureRun(spec: RunSpec, hooks: RunHooks = {}, train = trainRun): Promise<RunOutcome> {
  const runDir = runDirOf(spec);
  const status = runStatus(runDir, spec.flags.iters);
  if (status.state === 'finished') {
    hooks.log?.(`${spec.kind}: reusing ${runDir} (finished, ${status.iteration} iterations; delete it to train again)`);
    return { runDir, iteration: status.iteration, stopped: false, reused: true };
  }
  return train({ kind: spec.kind, flags: { ...spec.flags, resume: status.state === 'interrupted' } }, hooks);
}
