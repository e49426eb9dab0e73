/**
 * Shipping a teacher (data/teachers/<name>/): a pretraining run's newest checkpoint reduced to its EMA weights,
 * with its config, metrics and newest Heun grid, and teacher.json: where it came from, what it cost, and its
 * Heun sample quality measured on the shipped weights, which the quality test measures again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { RunConfig } from '../config/types';
import { repositoryRelativePath, workbenchCommit } from '../env';
import { checkOutputFolder } from '../output-paths';
import { createRunEvaluator, type SampleEvaluator } from '../metrics/evaluate';
import { machineFacts, machineOf } from '../machine/facts';
import { trainingFlops } from '../nn/flops';
import { backendName, readConfigJson, runPaths } from '../runs/folder';
import { disposeModel, loadRunModel, resolveCheckpointFile, samplerModelOf, type LoadedModel } from '../runs/model';
import { DEFAULT_SAMPLE_SEED, samplerLabel } from '../sample';
import { checkpointPath, readCheckpointMeta, writeEmaOnlyCheckpoint } from '../train/checkpoint';
import { truncateMetrics } from '../train/metrics-log';
import { readTeacherRecord, TEACHER_FILE, type TeacherEvaluation, type TeacherRecord } from './record';
import { SHIPPED_TEACHERS_DIR } from './shipped';

/** Generated images of the headline evaluation (the teacher's headline number: Heun fd_fmnist of 10k samples) and of the quick check the quality test repeats. */
export const DEFAULT_TEACHER_EVAL_N = 10000;
export const DEFAULT_TEACHER_CHECK_N = 300;

/** The split a teacher's samples are compared with: the 10k test images, which no run trains on. */
const TEACHER_REFERENCE_SPLIT = 'test' as const;

/** A teacher's name: a folder name that `--init <name>` can take (no path separators, not hidden). */
const TEACHER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** A commit as the record takes it: a (short or full) hexadecimal hash, optionally followed by a note. */
const COMMIT = /^[0-9a-f]{7,40}\b/i;

/** What shipTeacher needs beyond the run: names, counts, provenance the run does not record, and hooks. */
export interface ShipOptions {
  run: string;                      // the pretraining run folder (its newest checkpoint is shipped)
  name: string;
  out?: string;                     // the teachers' folder (default data/teachers, where --init finds them by name)
  evalN?: number;                   // images of the headline evaluation (DEFAULT_TEACHER_EVAL_N)
  checkN?: number;                  // images of the check evaluation (DEFAULT_TEACHER_CHECK_N)
  command?: string;                 // the command that made the run, when its config.json does not record it
  commit?: string;                  // the commit it ran at, likewise
  cacheDir?: string;                // reference statistics cache (the evaluator's default otherwise)
  onInfo?(message: string): void;
  onEvalProgress?(label: string, done: number, total: number): void;
}

/** A shipped teacher: its folder and its record. */
export interface ShippedTeacher { dir: string; record: TeacherRecord }

/** The evaluator a teacher is measured with: its dataset's feature network against the test split, whole. */
export async function teacherEvaluator(cfg: RunConfig, opts: { cacheDir?: string; onInfo?(message: string): void } = {}): Promise<SampleEvaluator> {
  let reason = '';
  const evaluator = await createRunEvaluator(cfg, { referenceSplit: TEACHER_REFERENCE_SPLIT, cacheDir: opts.cacheDir, onInfo: opts.onInfo, onUnavailable: (why) => (reason = why) });
  if (!evaluator) throw new Error(`cannot evaluate a ${cfg.data.name} teacher here: ${reason}`);
  return evaluator;
}

/** Heun sample quality of a loaded teacher: n images on the default evaluation noise, against the evaluator's reference. */
export async function evaluateTeacher(model: LoadedModel, evaluator: SampleEvaluator, n: number,
  onProgress?: (done: number, total: number) => void): Promise<TeacherEvaluation> {
  const label = samplerLabel('heun');
  const started = Date.now();
  const metrics = await evaluator.evaluate(samplerModelOf(model), 'heun', { n, seed: DEFAULT_SAMPLE_SEED, onProgress });
  const wallSeconds = (Date.now() - started) / 1000;
  const metric = evaluator.columns(label)[0];  // the Frechet distance comes first
  const { cpu, cores } = machineFacts();
  return {
    metric, value: metrics[metric], n, seed: DEFAULT_SAMPLE_SEED, sampler: label, networkEvaluations: 2 * model.config.edm.heunSteps - 1,
    features: evaluator.featureNetwork.name,
    reference: { dataset: evaluator.reference.key.dataset, split: evaluator.reference.key.split, images: evaluator.reference.key.count, featureWeights: evaluator.reference.key.weightsHash },
    metrics, wallSeconds: Number(wallSeconds.toFixed(1)), backend: tf.getBackend(), machine: { cpu, cores },
  };
}

/**
 * Measures a shipped teacher again as its record's check was measured: loads its folder, evaluates its Heun samples
 * at the recorded check count on the default noise against the test images. Returns the recorded and the new evaluation.
 */
export async function recheckTeacher(dir: string, opts: { cacheDir?: string; onProgress?(done: number, total: number): void } = {}):
  Promise<{ recorded: TeacherEvaluation; measured: TeacherEvaluation }> {
  const record = readTeacherRecord(dir);
  const model = await loadRunModel(dir);
  try {
    const evaluator = await teacherEvaluator(model.config, { cacheDir: opts.cacheDir });
    try {
      return { recorded: record.evaluations.check, measured: await evaluateTeacher(model, evaluator, record.evaluations.check.n, opts.onProgress) };
    } finally {
      evaluator.dispose();
    }
  } finally {
    disposeModel(model);
  }
}

/** A run's config.json as recorded, bookkeeping included (null when it has none). */
function readRunRecord(runDir: string): Record<string, unknown> | null {
  const file = runPaths(runDir).config;
  return fs.existsSync(file) ? readConfigJson(file) : null;
}

/**
 * The command and commit that made the run: what its config.json records (top level or under environment), else
 * what the options say; an option that contradicts the record is an error, and so is neither.
 */
function runProvenance(record: Record<string, unknown> | null, opts: ShipOptions, runDir: string): { command: string; commit: string } {
  const environment = (record?.environment ?? {}) as Record<string, unknown>;
  const recorded = (key: string): string | undefined => {
    const value = record?.[key] ?? environment[key];
    return typeof value === 'string' && value.trim() ? value : undefined;
  };
  const pick = (key: 'command' | 'commit'): string => {
    const inRun = recorded(key);
    const given = opts[key]?.trim();
    if (inRun !== undefined && given !== undefined && given !== inRun) {
      throw new Error(`--${key} ${JSON.stringify(given)}: the run in ${runDir} records its ${key} as ${JSON.stringify(inRun)}; omit --${key}`);
    }
    const value = inRun ?? given;
    if (!value) throw new Error(`${runPaths(runDir).config} does not record the ${key} that made the run: pass --${key} (a shipped teacher says how it was made)`);
    return value;
  };
  const provenance = { command: pick('command'), commit: pick('commit') };
  if (!COMMIT.test(provenance.commit)) throw new Error(`--commit ${provenance.commit}: not a git commit hash (7 to 40 hexadecimal digits)`);
  return provenance;
}

/** A config (or config.json record) without its `init`: a shipped teacher stands on its own. */
function withoutInit<T extends object>(config: T): T {
  const { init: _init, ...rest } = config as T & { init?: unknown };
  return rest as T;
}

/** The run's newest Heun grid: its final one, else the latest iter-N at or before `iteration`; null when it has none. */
function newestHeunGrid(runDir: string, iteration: number): string | null {
  const dir = runPaths(runDir).samples;
  if (!fs.existsSync(dir)) return null;
  const names = fs.readdirSync(dir);
  if (names.includes('final-heun.png')) return path.join(dir, 'final-heun.png');
  const grids = names.flatMap((name) => {
    const match = /^iter-(\d+)-heun\.png$/.exec(name);
    return match && Number(match[1]) <= iteration ? [{ name, at: Number(match[1]) }] : [];
  }).sort((a, b) => b.at - a.at);
  return grids.length ? path.join(dir, grids[0].name) : null;
}

/** What a trainer's checkpoint records beside its tensors (lib/train/trainer.ts saveCheckpoint). */
interface CheckpointMeta { iteration?: number; imagesSeen?: number; wallSeconds?: number; config?: RunConfig; backend?: unknown }

/**
 * Writes the EMA weights of checkpoint `source` alone to `file`, with `meta` (counters, config, backend; no
 * optimiser or loader state: nothing resumes a shipped teacher).
 */
function writeEmaCheckpoint(source: string, file: string, meta: CheckpointMeta & Record<string, unknown>): void {
  const { iteration, imagesSeen, wallSeconds, config, backend, format, teacher } = meta;
  writeEmaOnlyCheckpoint(source, file, () => ({ format, teacher, iteration, imagesSeen, wallSeconds: wallSeconds ?? null, config, backend: backend ?? null }));
}

/** How the teacher was shipped, as a command without machine paths. */
function shipCommand(run: string, name: string, evalN: number, checkN: number): string {
  return `ect ship-teacher --run ${run} --name ${name} --eval-n ${evalN} --check-n ${checkN}`;
}

/**
 * Ships a pretraining run's newest checkpoint as the teacher `name` in `out`/<name>/: config.json (the run's, no
 * init), metrics.csv (rows up to the checkpoint), checkpoints/ckpt-<iteration>.ckpt with the EMA weights alone,
 * samples/ (the newest Heun grid) and teacher.json, whose two Heun evaluations are made on the shipped checkpoint.
 * The folder is built under a hidden name and renamed at the end, so a failed shipping leaves nothing behind.
 */
export async function shipTeacher(opts: ShipOptions): Promise<ShippedTeacher> {
  const info = opts.onInfo ?? (() => {});
  const evalN = opts.evalN ?? DEFAULT_TEACHER_EVAL_N;
  const checkN = opts.checkN ?? DEFAULT_TEACHER_CHECK_N;
  if (!TEACHER_NAME.test(opts.name)) throw new Error(`--name ${opts.name}: a teacher's name is a folder name (letters, digits, '.', '_', '-'; not starting with '.' or '-')`);
  for (const [flag, n] of [['--eval-n', evalN], ['--check-n', checkN]] as const) {
    if (!(Number.isInteger(n) && n > 0)) throw new Error(`${flag} must be a positive integer, got ${n}`);
  }
  const runDir = path.resolve(opts.run);
  if (!fs.existsSync(runDir) || !fs.statSync(runDir).isDirectory()) throw new Error(`--run ${opts.run}: not a run folder`);
  const out = path.resolve(opts.out ?? SHIPPED_TEACHERS_DIR);
  checkOutputFolder(out, '--out');
  const dest = path.join(out, opts.name);
  if (fs.existsSync(dest)) throw new Error(`${dest} exists: a shipped teacher is not overwritten; remove it first, or choose another --name`);

  const runRecord = readRunRecord(runDir);
  const provenance = runProvenance(runRecord, opts, runDir);
  const source = resolveCheckpointFile(runDir);
  const meta = readCheckpointMeta(source) as CheckpointMeta;
  if (!meta.config?.net) throw new Error(`${source}: checkpoint meta has no config.net; it was not written by ect-workbench's trainer`);
  if (meta.config.kind !== 'pretrain') throw new Error(`--run ${opts.run}: a ${meta.config.kind} run; a teacher is a diffusion model (a pretrain run), sampled with Heun`);
  const iteration = Number(meta.iteration ?? 0);
  const images = meta.imagesSeen ?? iteration * meta.config.batch;
  const config = withoutInit(meta.config);

  const building = path.join(out, `.${opts.name}.tmp-${process.pid}`);
  fs.rmSync(building, { recursive: true, force: true });
  let evaluator: SampleEvaluator | null = null;
  let model: LoadedModel | null = null;
  try {
    const shipped = runPaths(building);
    const checkpoint = checkpointPath(shipped.checkpoints, iteration);
    writeEmaCheckpoint(source, checkpoint, { ...meta, format: 'ect-workbench-teacher', teacher: opts.name, imagesSeen: images, config });
    info(`wrote ${path.relative(building, checkpoint)}: the EMA weights of ${source} (${(fs.statSync(checkpoint).size / 1e6).toFixed(1)} MB)`);
    fs.writeFileSync(shipped.config, JSON.stringify(withoutInit(runRecord ?? config), null, 2) + '\n');
    const metricsFile = runPaths(runDir).metrics;
    if (fs.existsSync(metricsFile)) {
      fs.copyFileSync(metricsFile, shipped.metrics);
      truncateMetrics(shipped.metrics, iteration);  // a run still training has logged past its checkpoint
    }
    const grid = newestHeunGrid(runDir, iteration);
    if (grid) {
      fs.mkdirSync(shipped.samples);
      fs.copyFileSync(grid, path.join(shipped.samples, path.basename(grid)));
    }

    // the evaluations use the shipped file, as every later user of the teacher does
    model = await loadRunModel(building);
    evaluator = await teacherEvaluator(model.config, { cacheDir: opts.cacheDir, onInfo: info });
    const evaluations = {} as TeacherRecord['evaluations'];
    for (const [role, n] of [['headline', evalN], ['check', checkN]] as const) {
      const label = `heun ${role}, ${n} images`;
      info(`evaluating ${label} (${2 * model.config.edm.heunSteps - 1} network evaluations each) against the ${evaluator.reference.key.count} ${TEACHER_REFERENCE_SPLIT} images`);
      evaluations[role] = await evaluateTeacher(model, evaluator, n, (done, total) => opts.onEvalProgress?.(label, done, total));
      info(`${evaluations[role].metric} ${evaluations[role].value.toPrecision(4)} (${n} images, ${evaluations[role].wallSeconds.toFixed(0)} s on ${evaluations[role].backend})`);
    }
    const run = repositoryRelativePath(runDir);
    const record: TeacherRecord = {
      name: opts.name, run, checkpoint: path.relative(building, checkpoint).split(path.sep).join('/'),
      iteration, kimg: images / 1000, parameters: model.net.paramCount(), seed: model.config.seed,
      training: {
        ...provenance, machine: machineOf(runRecord?.environment), backend: backendName({ ...model.config, backend: runRecord?.backend ?? meta.backend }),
        images, flops: trainingFlops(model.config, images), wallSeconds: meta.wallSeconds ?? null,  // the resolved config: older runs lack newer net fields
      },
      evaluations,
      shipped: { at: new Date().toISOString(), commit: workbenchCommit(), command: shipCommand(run, opts.name, evalN, checkN) },
    };
    fs.writeFileSync(path.join(building, TEACHER_FILE), JSON.stringify(record, null, 2) + '\n');
    fs.renameSync(building, dest);
    return { dir: dest, record };
  } catch (err) {
    fs.rmSync(building, { recursive: true, force: true });
    throw err;
  } finally {
    evaluator?.dispose();
    if (model) disposeModel(model);
  }
}
