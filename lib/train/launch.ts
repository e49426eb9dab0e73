/**
 * The one way a run starts, for the CLI, the demo and the notebooks alike: a run is named by its preset and
 * flags (a RunSpec); its folder is checked and locked; its config is resolved once, from the defaults, the preset
 * or the run's own config.json when resuming, the flags and --set, and the --init checkpoint's network; then
 * validated, checked against the checkpoint it resumes, and handed to the trainer, which never edits it.
 * Finished runs are reused and interrupted ones resumed here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startBackend, type BackendInfo } from '../backend/select';
import { labelOverride, parseOverride, resolveRecordedConfig, resolveRunConfig, type FixedValues } from '../config/resolve';
import { DATASET_NAMES, type DatasetName, type NonFinitePolicy, type Precision, type RunConfig, type RunKind } from '../config/types';
import { presetsForData } from './preset-list';
import { datasetHere, limitDataset, loadDataset, type ImageDataset, type Split } from '../data';
import { createRunEvaluator, type SampleEvaluator } from '../metrics/evaluate';
import { checkOutputFolder } from '../output-paths';
import { checkpointsNewestFirst, openCheckpoint, readCheckpointMeta, verifiedCheckpoint, type OpenedCheckpoint } from './checkpoint';
import type { PlateauRecord } from './plateau';
import { recordedSettings, readRunConfigFile, resolveRunInit, runPaths } from '../runs/folder';
import { acquireRunLock, removeOrphanedTemporaryFiles } from '../runs/lock';
import { resolveCheckpointFile } from '../runs/model';
import { runStatus } from '../runs/status';
import { resolveInitTarget } from '../teachers/shipped';
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
  evalGrowth?: number;      // > 1: evaluate at evalEvery * g^n kimg (log-spaced budgets) instead of every evalEvery kimg
  init?: string;            // pretrained checkpoint or run directory to tune, from the current directory
  set?: Array<string | ConfigPatch>;  // `key.path=value` assignments (--set) or config patches, applied last, in order
  resume?: boolean;         // continue the run in `out` from its newest checkpoint
  fromScratch?: boolean;    // tune a randomly initialised network (the ablation without pretraining)
  backend?: string;         // backend choice (default $ECT_BACKEND, else the fastest that loads)
  evalSplit?: Split;        // the split in-run evaluations compare with (config evalSplit; default train)
  onNonFinite?: NonFinitePolicy;  // a NaN or infinite loss or gradient norm: stop (default) or skip the batch
  divergenceFactor?: number;      // stop once a 50-step mean loss exceeds this many times the lowest (0: never)
  precision?: Precision;          // training-step arithmetic: fp32 (default) or bf16 mixed precision (config precision)
  plateauGain?: number;     // finish once doubling the images improves the evaluated fd by less than this fraction (0: never)
  stepReplay?: boolean;     // false: every training step eager, never replayed (default: replayed on onednn, see lib/train/step-replay.ts)
}

/** A run: what it does and how it is named. */
export interface RunSpec { kind: RunKind; flags: RunFlags }

/**
 * A resolved run: its config (final), its directory, where its weights start, and newer checkpoints --resume could not
 * use; `resumed` is the checkpoint it resumes from, read and verified once, which the trainer loads.
 */
export interface ResolvedRun { kind: RunKind; cfg: RunConfig; runDir: string; start: RunStart; skipped: SkippedCheckpoint[]; resumed: OpenedCheckpoint | null }

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
  add('--eval-growth', flags.evalGrowth, (evalGrowth) => ({ evalGrowth }));
  add('--init', flags.init, (init) => ({ init: resolveInitTarget(String(init)) }));  // a path from the current directory, or a shipped teacher's name
  add('--lr', flags.lr, (lr) => ({ optimizer: { lr } }));
  add('--on-non-finite', flags.onNonFinite, (onNonFinite) => ({ onNonFinite }));
  add('--divergence-factor', flags.divergenceFactor, (divergenceFactor) => ({ divergenceFactor }));
  add('--precision', flags.precision, (precision) => ({ precision: precision as Precision }));
  add('--eval-split', flags.evalSplit, (evalSplit) => ({ evalSplit: evalSplit as Split }));
  add('--plateau-gain', flags.plateauGain, (plateauGain) => ({ plateauGain }));
  for (const assignment of flags.set ?? []) patches.push(typeof assignment === 'string' ? parseOverride(assignment) : assignment);
  return patches;
}

/**
 * The config a spec names by its preset and flags alone, before its run directory or --init checkpoint is
 * read (for plans and estimates; resolveRun starts from it). `initNetwork` is the init checkpoint's network,
 * which the preset and flags may not change.
 */
export function plannedRunConfig(spec: RunSpec, initNetwork?: FixedValues, initLayers: ConfigPatch[] = []): RunConfig {
  return resolveRunConfig(spec.kind, spec.flags.config, [...initLayers, ...flagOverrides(spec.flags)], initNetwork);
}

/**
 * What a tuning run without --config takes from the model it starts from, as a layer under the flags: its dataset
 * (name and flip), in place of the defaults' CIFAR-10; --data and --set change it. A preset names its own data.
 */
function initDataLayer(flags: RunFlags, init: RunConfig, initFile: string): ConfigPatch[] {
  if (flags.config) return [];
  return [labelOverride({ data: { name: init.data.name, flip: init.data.flip } }, `the --init checkpoint ${initFile}'s data`)];
}

/**
 * A resumed run's own config as a config layer: its config.json, else the config its checkpoint recorded, read by
 * the run folder's one rule for older runs (lib/runs/folder.ts recordedSettings); `init` resolved from the run's folder.
 */
function savedRunConfig(runDir: string, checkpoint: OpenedCheckpoint): ConfigPatch {
  const own = readRunConfigFile(runDir);
  const [saved, source] = own
    ? [own.settings, own.file]
    : [recordedSettings({ ...recordedCheckpointConfig(checkpoint.file, checkpoint.meta) }), `${checkpoint.file} (its recorded config)`];
  if (typeof saved.init === 'string') saved.init = resolveRunInit(saved.init, runDir);
  return labelOverride(saved as ConfigPatch, source);
}

/** The fields of a run config that define its result: a resumed run must match its checkpoint in each. */
const RESULT_FIELDS: Array<keyof RunConfig> = ['kind', 'net', 'edm', 'ect', 'optimizer', 'ema', 'batch', 'seed', 'data'];

/**
 * Resolves a run once: its directory, its config and where its weights start. The config is the run's own
 * (config.json) when resuming, where only bookkeeping fields such as iters may change, from the newest checkpoint
 * that is whole and finite (newer ones it cannot use are listed in `skipped`), and --init may only name the run's
 * own. Else the defaults and the preset, where a tuning run from a checkpoint takes that checkpoint's network in
 * place of the default and the preset's, and without a preset its dataset too (dropout and label dropout are the tuning's own; a flag or --set that sets
 * another architecture is an error); then the flags and --set. Throws on anything that would not train the run asked for.
 */
export function resolveRun(spec: RunSpec): ResolvedRun {
  const { kind, flags } = spec;
  const runDir = runDirOf(spec);
  const { opened: resumed, skipped } = flags.resume ? resumableCheckpoint(runDir) : { opened: null, skipped: [] };
  const resumeFile = resumed?.file ?? null;
  const saved = resumed ? savedRunConfig(runDir, resumed) : null;
  const resolveWith = (initNetwork?: FixedValues, initLayers: ConfigPatch[] = []) => saved
    ? resolveRunConfig(kind, undefined, [saved, ...flagOverrides(flags)])
    : plannedRunConfig(spec, initNetwork, initLayers);
  let cfg = resolveWith();
  const init = cfg.init === undefined ? undefined : path.resolve(cfg.init);  // a preset's or --set's init is the user's path too
  if (saved && !samePath(init, saved.init as string | undefined)) {
    throw new Error(`--init ${init ?? '(none)'}: the run in ${runDir} started from ${saved.init ?? 'no checkpoint'}, ` +
      'and a resumed run continues from its own weights: omit --init, or name the same one');
  }
  if (init !== undefined && kind !== 'tune') throw new Error(`init ${init}: only a tuning run starts from a checkpoint`);
  if (kind === 'tune' && init === undefined && !resumeFile && !flags.fromScratch) {
    throw new Error('tune needs --init <checkpoint or run directory> of a pretrained model (or --resume, or --from-scratch for the ablation without pretraining)');
  }
  if (init !== undefined && flags.fromScratch) throw new Error('--from-scratch and --init exclude each other');
  // a resumed run has its weights already; only a new one reads its init checkpoint
  const initFile = init === undefined || resumeFile ? null : resolveCheckpointFile(init);
  if (initFile) {
    // again with the pretrained network's architecture in place of the default and the preset's network (the init
    // path is known only now): the flags and --set may set only the tuning's own dropout and label dropout
    const initConfig = checkpointConfig(initFile);
    assertInitHasClasses(cfg.net.labelDim, flags.config, initConfig.net.labelDim, initFile);
    const { dropout: _dropout, labelDropout: _labelDropout, ...architecture } = initConfig.net;
    cfg = resolveWith({
      values: { net: architecture as unknown as ConfigPatch }, source: `the --init checkpoint ${initFile}`,
      hint: 'a tuning run keeps the architecture of the model it starts from (only net.dropout and net.labelDropout are its own); ' +
        'drop these settings, or --init a model of that architecture',
    }, initDataLayer(flags, initConfig, initFile));
  }
  if (init !== undefined) cfg = { ...cfg, init };
  if (resumed) assertMatchesCheckpoint(cfg, resumed);
  const start: RunStart = resumeFile ? { from: 'resume', checkpoint: resumeFile }
    : initFile ? { from: 'init', checkpoint: initFile } : { from: 'fresh' };
  return { kind, cfg, runDir, start, skipped, resumed };
}

/**
 * Refuses a class-conditional preset (net.labelDim > 0) with an --init model of other classes or none: the init
 * network replaces the preset's, so the run would otherwise tune without the classes the preset asks for.
 */
function assertInitHasClasses(presetLabelDim: number, preset: string | undefined, initLabelDim: number, initFile: string): void {
  if (presetLabelDim === 0 || initLabelDim === presetLabelDim) return;
  const initKind = initLabelDim === 0 ? 'is unconditional (net.labelDim 0)' : `is conditional on ${initLabelDim} classes`;
  throw new Error(`${preset ? `--config ${preset}` : 'the config'} asks for a class-conditional network (net.labelDim ${presetLabelDim}), but the --init checkpoint ${initFile} ${initKind}: ` +
    `the run would tune that network without the classes asked for. --init a model conditional on ${presetLabelDim} classes, or use a preset without net.labelDim`);
}

/** Whether two paths (absolute or from the current directory, or absent) name the same file or folder. */
function samePath(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const real = (p: string) => (fs.existsSync(p) ? fs.realpathSync(p) : path.resolve(p));
  return real(a) === real(b);
}

/** A checkpoint that --resume cannot use, and why. */
export interface SkippedCheckpoint { file: string; problem: string }

/**
 * The newest checkpoint of a run that is whole and finite (verified byte for byte: its checksum, its tensor
 * table, no NaN weights), opened, and the newer ones skipped on the way. Throws when there is none.
 */
function resumableCheckpoint(runDir: string): { opened: OpenedCheckpoint; skipped: SkippedCheckpoint[] } {
  const dir = runPaths(runDir).checkpoints;
  const skipped: SkippedCheckpoint[] = [];
  for (const file of checkpointsNewestFirst(dir)) {
    const { opened, problem } = verifiedCheckpoint(file);
    if (opened) return { opened, skipped };
    skipped.push({ file, problem });
  }
  if (skipped.length === 0) throw new Error(`--resume: no checkpoint in ${dir} to resume from`);
  throw new Error(`--resume: no usable checkpoint in ${dir}:\n${skipped.map((s) => `  ${s.problem}`).join('\n')}`);
}

/** The config recorded in a checkpoint's metadata (read without loading its tensors), with today's defaults for newer fields. */
function checkpointConfig(file: string): RunConfig {
  return recordedCheckpointConfig(file, readCheckpointMeta(file));
}

/** The config a checkpoint's metadata records, with today's defaults for newer fields; an error naming the file when it has none. */
function recordedCheckpointConfig(file: string, meta: Record<string, unknown>): RunConfig {
  const config = meta.config as RunConfig | undefined;
  if (!config?.net) throw new Error(`${file}: checkpoint meta has no config.net; it was not written by ect-workbench's trainer`);
  return resolveRecordedConfig(config, `${file} (its recorded config)`);
}

/** A resumed run must train the same thing: the fields that define the result must match the checkpoint's. */
function assertMatchesCheckpoint(cfg: RunConfig, checkpoint: OpenedCheckpoint): void {
  const { file } = checkpoint;
  const saved = recordedCheckpointConfig(file, checkpoint.meta);
  const differing = RESULT_FIELDS.flatMap((k) => differingFields(saved[k], cfg[k], String(k)));
  if (differing.length) {
    const details = differing.map(({ key, a, b }) => `${key} (checkpoint ${JSON.stringify(a)}, this run ${JSON.stringify(b)})`).join(', ');
    throw new Error(`${file}: the checkpoint does not match this config in ${details}. ` +
      'Resume with the run\'s own config (omit the --config, flags or --set that change it), or choose another --out.');
  }
}

/** The leaf fields (arrays whole) in which two config values differ, with both values. */
function differingFields(a: unknown, b: unknown, key: string): Array<{ key: string; a: unknown; b: unknown }> {
  const isSection = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isSection(a) && isSection(b)) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort().flatMap((k) => differingFields(a[k], b[k], `${key}.${k}`));
  }
  return canonicalJson(a) === canonicalJson(b) ? [] : [{ key, a, b }];
}

/** JSON with object keys sorted, so that two configs compare by their values, not by the order keys were set in. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) => (inner !== null && typeof inner === 'object' && !Array.isArray(inner)
    ? Object.fromEntries(Object.entries(inner as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : inner));
}

/**
 * The evaluator of a run's dataset, or null (with the reason logged) when none is available here. `referenceImages`:
 * the evaluation split already loaded whole (else the evaluator loads it).
 */
export async function runEvaluator(cfg: RunConfig, log: (line: string) => void, referenceImages?: ImageDataset): Promise<SampleEvaluator | null> {
  try {
    const evaluator = await createRunEvaluator(cfg, { referenceSplit: cfg.evalSplit, referenceImages, onInfo: log });
    if (!evaluator) log('evaluation: no feature network for this dataset; metric columns stay empty');
    return evaluator;
  } catch (err) {
    log(`evaluation disabled: ${(err as Error).message}`);
    return null;
  }
}

/**
 * A failed start whose dataset is not here, with the presets of the run's kind that train on the datasets that are
 * (say, a run that fell back to CIFAR-10 on a machine with Fashion-MNIST); any other error as it was.
 */
function withPresetsHere(err: Error, run: ResolvedRun): Error {
  if (datasetHere(run.cfg.data)) return err;
  const here = DATASET_NAMES.filter((name) => name !== 'synthetic' && datasetHere({ name, flip: false }));
  const presets = presetsForData(here, run.kind);
  const hint = presets.length
    ? `\nDatasets found here: ${here.join(', ')}. Presets that train on them: ${presets.join(', ')} (--config NAME; \`ect presets\` says what each is)`
    : '';
  return new Error(`${err.message}${hint}`);
}

/** A run's whole training split (the images data.limit leaves out too), or the error of a dataset not here with the presets that are. */
function wholeTrainingSplit(run: ResolvedRun): ImageDataset {
  try {
    return loadDataset({ ...run.cfg.data, limit: undefined }, 'train', run.cfg.net);
  } catch (err) {
    throw withPresetsHere(err as Error, run);
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

/** Suffix of a checkpoint --resume could not use, set aside (kept for a look, no longer a checkpoint of the run). */
const REJECTED_SUFFIX = '.rejected';

function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // not empty (it holds what the failed launch wrote, worth keeping) or gone
  }
}

/** The command line of this process, for the lock file. */
function commandLine(): string {
  return [path.basename(process.argv[1] ?? process.argv0), ...process.argv.slice(2)].join(' ');
}

/**
 * Launches a run: checks its folder can be written, locks it (a second writer is refused), resolves the run,
 * sets aside the checkpoints --resume skipped and removes temporary files killed writers left, starts the backend,
 * builds its evaluator (when it evaluates) and its trainer. dispose() frees them and releases the lock.
 */
export async function launchRun(spec: RunSpec, opts: LaunchOptions = {}): Promise<LaunchedRun> {
  const log = opts.log ?? (() => {});
  const runDir = runDirOf(spec);
  checkOutputFolder(runDir, spec.flags.out === undefined ? 'run folder' : '--out');
  const existed = fs.existsSync(runDir);
  const lock = acquireRunLock(runDir, commandLine(), log);
  let ownEvaluator = false;
  let evaluator: SampleEvaluator | null = null;
  try {
    const run = resolveRun(spec);
    for (const { file, problem } of run.skipped) {
      fs.renameSync(file, file + REJECTED_SUFFIX);
      log(`--resume: skipping ${problem}; set it aside as ${path.basename(file)}${REJECTED_SUFFIX}`);
    }
    const orphans = removeOrphanedTemporaryFiles(runDir);
    if (orphans.files.length) {
      log(`removed ${orphans.files.length} temporary file(s) of killed writers (${(orphans.bytes / 1e6).toFixed(1)} MB): ${orphans.files.join(', ')}`);
    }
    const backend = await startBackend(spec.flags.backend, log);
    ownEvaluator = opts.evaluator === undefined && run.cfg.evalEvery > 0;
    // the training split is read once: whole for the reference of in-run evaluations that compare with it, data.limit of it to train on
    const split = ownEvaluator && !opts.dataset && run.cfg.evalSplit === 'train' ? wholeTrainingSplit(run) : undefined;
    evaluator = ownEvaluator ? await runEvaluator(run.cfg, log, split) : opts.evaluator ?? null;
    const dataset = opts.dataset ?? (split && limitDataset(split, run.cfg.data.limit));
    if (run.cfg.plateauGain > 0 && !evaluator) log(`plateauGain ${run.cfg.plateauGain}: no evaluation here, so the run trains to its ${run.cfg.iters} iterations`);
    // the checkpoint the run starts from is read once: --resume's as it was verified, --init's here
    const opened = run.resumed ?? (run.start.from === 'init' ? openCheckpoint(run.start.checkpoint) : undefined);
    const trainer = await Trainer.create(run.cfg, { runDir: run.runDir, start: run.start, opened, backend, evaluator, dataset, log, stepReplay: spec.flags.stepReplay === false ? false : undefined })
      .catch((err: Error) => { throw withPresetsHere(err, run); });
    return {
      ...run, trainer, backend,
      dispose: () => {
        trainer.dispose();
        if (ownEvaluator) evaluator?.dispose();
        lock.release();
      },
    };
  } catch (err) {
    if (ownEvaluator) evaluator?.dispose();
    lock.release();
    if (!existed) removeIfEmpty(runDir);  // a launch that failed leaves no empty folder behind
    throw err;
  }
}

/** How a run ended. */
export interface RunOutcome {
  runDir: string;
  iteration: number;       // iterations done
  stopped: boolean;        // stopped early (shouldStop) and checkpointed
  reused: boolean;         // already finished: nothing was trained
  plateau?: PlateauRecord; // the plateau rule finished it early (cfg.plateauGain)
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
    return { runDir, iteration: result.iteration, stopped: result.stopped, reused: false, ...(result.plateau ? { plateau: result.plateau } : {}) };
  } finally {
    events.close?.();
    run.dispose();
  }
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
