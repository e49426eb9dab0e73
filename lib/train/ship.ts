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
import { backendName, trainingFlops } from '../results/runs';
import { DEFAULT_SAMPLE_SEED, samplerLabel } from '../sample';
import { checkpointPath, readCheckpointMeta, writeEmaOnlyCheckpoint } from './checkpoint';
import { truncateMetrics } from './metrics-log';
import {
  basicEnvironment, disposeModel, loadRunModel, resolveCheckpointFile, samplerModelOf, CHECKPOINT_DIR, SHIPPED_TEACHERS_DIR, type LoadedModel,
} from './run';

/** The provenance file of a shipped teacher. */
export const TEACHER_FILE = 'teacher.json';

/** Generated images of the headline evaluation (the teacher's headline number: Heun fd_fmnist of 10k samples) and of the quick check the quality test repeats. */
export const DEFAULT_TEACHER_EVAL_N = 10000;
export const DEFAULT_TEACHER_CHECK_N = 300;

/** The split a teacher's samples are compared with: the 10k test images, which no run trains on. */
const TEACHER_REFERENCE_SPLIT = 'test' as const;

/** A teacher's name: a folder name that `--init <name>` can take (no path separators, not hidden). */
const TEACHER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** A commit as the record takes it: a (short or full) hexadecimal hash, optionally followed by a note. */
const COMMIT = /^[0-9a-f]{7,40}\b/i;

/** The machine a number was measured on. */
export interface MachineRecord { cpu: string; cores: number }

/** One Heun evaluation of a teacher's EMA weights on the fixed evaluation noise, as teacher.json records it. */
export interface TeacherEvaluation {
  metric: string;                   // the Frechet-distance column: fd_fmnist_heun on Fashion-MNIST (our classifier's features; not FID)
  value: number;
  n: number;                        // generated images
  seed: number;                     // evaluation noise seed: image i's noise depends on (seed, i) only
  sampler: string;                  // heun
  networkEvaluations: number;       // per image: 2 heunSteps - 1
  features: string;                 // the feature network (fmnist: data/fmnist-classifier)
  reference: { dataset: string; split: string; images: number; featureWeights: string };  // featureWeights: SHA-256 of the feature network's files
  metrics: Record<string, number>;  // every column of the evaluation (KID, precision, recall beside the distance)
  wallSeconds: number;              // generation, features and distances (not the model load or the reference statistics)
  backend: string;                  // the TensorFlow.js backend that computed it
  machine: MachineRecord;
}

/** teacher.json: a shipped teacher's provenance and quality. */
export interface TeacherRecord {
  name: string;
  run: string;                      // the run folder it was shipped from, relative to the repository root (its name alone when outside)
  checkpoint: string;               // the shipped checkpoint, relative to the teacher's folder: EMA weights only
  iteration: number;
  kimg: number;                     // thousands of training images seen
  parameters: number;
  seed: number;                     // the run's seed
  training: {
    command: string;                // the command that made the run
    commit: string;                 // the workbench commit it ran at
    machine: MachineRecord | null;  // from the run's config.json (its last session)
    backend: string;
    images: number;
    flops: number;                  // forward FLOPs per image x passes per image x images (lib/results/runs.ts trainingFlops)
    wallSeconds: number | null;     // training time summed over sessions, from the checkpoint
  };
  evaluations: {
    headline: TeacherEvaluation;    // --eval-n images (10k): the number to quote
    check: TeacherEvaluation;       // --check-n images (300): what the quality test measures again
  };
  shipped: { at: string; commit: string; command: string };
}

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

/** The record of a shipped teacher's folder; an error naming the file when it has none. */
export function readTeacherRecord(dir: string): TeacherRecord {
  const file = path.join(dir, TEACHER_FILE);
  if (!fs.existsSync(file)) throw new Error(`${file}: missing; ${dir} is not a shipped teacher (ect ship-teacher writes it)`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as TeacherRecord;
}

/** The folders under `dir` (default data/teachers) that hold a shipped teacher's record. */
export function shippedTeacherFolders(dir = SHIPPED_TEACHERS_DIR): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((name) => !name.startsWith('.')).map((name) => path.join(dir, name))
    .filter((folder) => fs.existsSync(path.join(folder, TEACHER_FILE))).sort();
}

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
  const { cpu, cores } = basicEnvironment() as { cpu: string; cores: number };
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

/** A run's config.json as an object (null when it has none). */
function readRunRecord(runDir: string): Record<string, unknown> | null {
  const file = path.join(runDir, 'config.json');
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
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
    if (!value) throw new Error(`${runDir}/config.json does not record the ${key} that made the run: pass --${key} (a shipped teacher says how it was made)`);
    return value;
  };
  const provenance = { command: pick('command'), commit: pick('commit') };
  if (!COMMIT.test(provenance.commit)) throw new Error(`--commit ${provenance.commit}: not a git commit hash (7 to 40 hexadecimal digits)`);
  return provenance;
}

/** The machine a run's config.json records (its last session's), or null. */
function runMachine(record: Record<string, unknown> | null): MachineRecord | null {
  const environment = record?.environment as { cpu?: unknown; cores?: unknown } | undefined;
  return typeof environment?.cpu === 'string' && typeof environment.cores === 'number' ? { cpu: environment.cpu, cores: environment.cores } : null;
}

/** A config (or config.json record) without its `init`: a shipped teacher stands on its own. */
function withoutInit<T extends object>(config: T): T {
  const { init: _init, ...rest } = config as T & { init?: unknown };
  return rest as T;
}

/** The run's newest Heun grid: its final one, else the latest iter-N at or before `iteration`; null when it has none. */
function newestHeunGrid(runDir: string, iteration: number): string | null {
  const dir = path.join(runDir, 'samples');
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
    const checkpoint = checkpointPath(path.join(building, CHECKPOINT_DIR), iteration);
    writeEmaCheckpoint(source, checkpoint, { ...meta, format: 'ect-workbench-teacher', teacher: opts.name, imagesSeen: images, config });
    info(`wrote ${path.relative(building, checkpoint)}: the EMA weights of ${source} (${(fs.statSync(checkpoint).size / 1e6).toFixed(1)} MB)`);
    fs.writeFileSync(path.join(building, 'config.json'), JSON.stringify(withoutInit(runRecord ?? config), null, 2) + '\n');
    const metricsFile = path.join(runDir, 'metrics.csv');
    if (fs.existsSync(metricsFile)) {
      fs.copyFileSync(metricsFile, path.join(building, 'metrics.csv'));
      truncateMetrics(path.join(building, 'metrics.csv'), iteration);  // a run still training has logged past its checkpoint
    }
    const grid = newestHeunGrid(runDir, iteration);
    if (grid) {
      fs.mkdirSync(path.join(building, 'samples'));
      fs.copyFileSync(grid, path.join(building, 'samples', path.basename(grid)));
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
        ...provenance, machine: runMachine(runRecord), backend: backendName({ ...model.config, backend: runRecord?.backend ?? meta.backend }),
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
