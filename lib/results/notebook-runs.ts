/**
 * The runs the notebooks build on, per mode. Small mode plans a miniature of the study (a tiny teacher, shipped like
 * data/teachers/, its ECT run, ablation variants, every run evaluated on a few samples) and trains them when missing,
 * through the same launcher as the command line (lib/train/launch.ts). Full mode
 * trains none of these: it reads the Fashion-MNIST study's committed results (the shipped teacher, its training run, the headline
 * ECT run and its evaluations, the recipe study of configs/sweeps/recipe.json) and, when one is missing or
 * unfinished, names its folder and the command that makes it. Notebook 03 reads the scaling study on the Fashion-MNIST
 * teachers (configs/sweeps/scaling-long.json) the same way.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import type { RunKind } from '../config/types';
import { workbenchCommit, writeEnvironment, type NotebookMode, type NotebookPaths } from '../env';
import { planSweep, runCommand } from '../sweep/plan';
import { loadSweepSpec, STAGE_FLAG_KEYS } from '../sweep/spec';
import { ensureRun, trainRun, type RunFlags } from '../train/launch';
import { runStatus } from '../runs/status';
import { latestCheckpoint } from '../train/checkpoint';
import { isRunFolder, CHECKPOINT_DIR } from '../runs/folder';
import { SHIPPED_TEACHERS_DIR } from '../teachers/shipped';
import { readTeacherRecord, TEACHER_FILE } from '../teachers/record';
import { shipTeacher } from '../teachers/ship';
import { initBackend } from '../backend/select';
import { manifestEntry, readManifest } from './manifest';
import { forwardFlopsPerImage } from '../nn/flops';
import { readRun, totalRunFlops } from './runs';

/** A planned run's flags: a preset, an output folder and any flags and --set assignments. */
export interface PlannedFlags extends RunFlags {
  config: string;
  out: string;
  set: string[];
}

/** A planned run (a lib/train/launch.ts RunSpec with its preset and folder always named). */
export interface PlannedRun { kind: RunKind; flags: PlannedFlags }

/**
 * Small mode shrinks the demo presets to a network of 8 base channels, batch 8 and a handful of iterations:
 * enough to run every notebook cell on real (meaningless) numbers within minutes on two cores.
 */
const SMALL_NET = ['net.modelChannels=8'];
// the teacher's final Heun grid (64 images) is the slowest part of a tiny run: 4 Heun steps (7 evaluations), not 18
const SMALL_HEUN = ['edm.heunSteps=4'];
const SMALL_BATCH = 8;

/**
 * Small mode's in-run evaluations: a few samples against the test images (whose feature statistics are computed once
 * and cached), for the teacher and every ECT run alike, so the curves and tables of full mode have their columns.
 */
const SMALL_EVAL_N = 50;
const SMALL_EVAL_SPLIT = 'evalSplit="test"';

/** The small demo's shipped teacher: its name, and the samples of its two Heun evaluations (teacher.json). */
export const SMALL_TEACHER = { name: 'fmnist-edm-tiny', evalN: SMALL_EVAL_N, checkN: SMALL_EVAL_N } as const;

/** The small demo's plan: the teacher's run, where and how it is shipped, and the ECT run tuned from the shipped teacher. */
export interface NotebookDemoPlan {
  teacher: PlannedRun;
  shipped: { dir: string; out: string; name: string; evalN: number; checkN: number };
  student: PlannedRun;
}

/**
 * The small-mode demo, a miniature of the Fashion-MNIST study (the full mode's runs: notebookCommittedRuns): a tiny
 * teacher trained for seconds and evaluated in-run, shipped like data/teachers/ (EMA weights, teacher.json with its
 * Heun fd on a few samples), and its ECT run tuned from the shipped teacher, evaluated in-run with 1 and 2 steps.
 */
export function notebookDemoPlan(paths: NotebookPaths): NotebookDemoPlan {
  const dir = path.join(paths.runs, 'demo');
  const shippedOut = path.join(dir, 'shipped');
  const shipped = { dir: path.join(shippedOut, SMALL_TEACHER.name), out: shippedOut, ...SMALL_TEACHER };
  return {
    teacher: { kind: 'pretrain', flags: {
      // Heun fd at iterations 3 and 6
      config: 'fmnist-edm-tiny', out: path.join(dir, 'teacher'), iters: 6, batch: SMALL_BATCH, logEvery: 1, evalEvery: 0.024, evalN: SMALL_EVAL_N,
      set: [...SMALL_NET, ...SMALL_HEUN, SMALL_EVAL_SPLIT],
    } },
    shipped,
    student: { kind: 'tune', flags: {
      // a stage every 2 iterations, so the schedule visibly moves within the 6 iterations; 1- and 2-step fd at 2, 4 and 6
      config: 'fmnist-ect-tiny', out: path.join(dir, 'ect'), init: shipped.dir, iters: 6, batch: SMALL_BATCH, logEvery: 1,
      evalEvery: 0.016, evalN: SMALL_EVAL_N, set: ['ect.stageIters=2', SMALL_EVAL_SPLIT],
    } },
  };
}

/** A planned run's command as results/manifest.json writes commands: `node bin/ect.js ...` from the repository root `root`. */
export function plannedRunCommand(run: PlannedRun, root: string): string {
  return runCommand({ kind: run.kind, flags: run.flags }, root).replace(/^ect /, 'node bin/ect.js ');
}

/** The runs a notebook shows: the teacher, the run that trained it (its quality along training), and its ECT run. */
export interface NotebookDemo {
  teacher: string;      // the shipped teacher's folder (EMA weights, teacher.json); small mode ships its tiny teacher under the small runs' folder
  teacherRun: string;   // the teacher's training run (full: results/long/teachers/<name>; small: the tiny teacher's run)
  student: string;      // the ECT run tuned from the teacher
}

/** A committed result the full-mode notebooks read: its folder or file, what it is, and the command that makes it. */
export interface CommittedResult {
  path: string;
  what: string;
  command: string;      // from the repository root
}

/** The Fashion-MNIST study's teacher, shipped as data/teachers/<name>/. */
export const HEADLINE_TEACHER = 'fmnist-edm-base';

/** The sweep spec of the recipe study (configs/sweeps/recipe.json), notebook 04's full mode. */
export const RECIPE_SWEEP = 'recipe';

/** The root the notebook's folders hang from: the repository's. */
const rootOf = (paths: NotebookPaths): string => paths.root;

/** A sweep's folder: its spec's out, which is relative to the repository root like results/ itself (else runs/<name>). */
function sweepSpecOut(paths: NotebookPaths, sweep: string): string {
  return path.resolve(rootOf(paths), loadSweepSpec(sweep).out ?? path.join('runs', sweep));
}

/** The recipe study's folder. */
const recipeOut = (paths: NotebookPaths): string => sweepSpecOut(paths, RECIPE_SWEEP);

/** The committed results the full-mode notebooks check before reading, by their id in results/manifest.json. */
const COMMITTED_IDS = ['teacher', 'teacherRun', 'student', 'evaluations', 'recipe', 'midT'] as const;

/**
 * The Fashion-MNIST study's results that the full-mode notebooks read, each with what it is and the command that makes
 * it, from results/manifest.json. Folders under results/ are taken under `paths.runs`; `teachers` is the shipped
 * teachers' folder (data/teachers; tests pass their own).
 */
export function notebookCommittedRuns(paths: NotebookPaths, teachers = SHIPPED_TEACHERS_DIR, manifest = readManifest()): Record<(typeof COMMITTED_IDS)[number], CommittedResult> {
  const where = (folder: string): string => {
    if (folder.startsWith('data/teachers/')) return path.join(teachers, ...folder.slice('data/teachers/'.length).split('/'));
    if (folder.startsWith('results/')) return path.join(paths.runs, ...folder.slice('results/'.length).split('/'));
    return path.join(rootOf(paths), ...folder.split('/'));
  };
  const entries = COMMITTED_IDS.map((id) => {
    const entry = manifestEntry(id, manifest);
    return [id, { path: where(entry.folder), what: entry.what, command: entry.command }] as const;
  });
  return Object.fromEntries(entries) as Record<(typeof COMMITTED_IDS)[number], CommittedResult>;
}

/** The error of a committed result that is missing or unfinished: what, where, and the command that makes it. */
function notCommitted(result: CommittedResult, problem: string, command = result.command): Error {
  return new Error(`${result.path}: ${problem} (${result.what}). Full mode reads committed results and trains nothing; `
    + `from the repository root, make it with: ${command}`);
}

/** The last iteration a run's metrics.csv logged (0 when it logged none). */
function lastLoggedIteration(runDir: string): number {
  const { metrics } = readRun(runDir);
  return metrics.length ? Number(metrics[metrics.length - 1].iter) : 0;
}

/**
 * Full mode's demo: the shipped teacher, its training run (logged at least up to the shipped checkpoint) and the
 * headline ECT run (finished, with its final checkpoint, which notebooks 01 and 05 sample from). A missing or
 * unfinished one is an error naming its folder and the command that makes it.
 */
export function requireCommittedDemo(paths: NotebookPaths, teachers = SHIPPED_TEACHERS_DIR): NotebookDemo {
  const runs = notebookCommittedRuns(paths, teachers);
  const { teacher, teacherRun, student } = runs;
  if (!fs.existsSync(path.join(teacher.path, TEACHER_FILE))) throw notCommitted(teacher, fs.existsSync(teacher.path) ? `no ${TEACHER_FILE}` : 'missing');
  const record = readTeacherRecord(teacher.path);
  if (!isRunFolder(teacherRun.path)) throw notCommitted(teacherRun, fs.existsSync(teacherRun.path) ? 'no config.json and metrics.csv' : 'missing');
  const logged = lastLoggedIteration(teacherRun.path);
  if (logged < record.iteration) {
    throw notCommitted(teacherRun, `logged up to iteration ${logged}, but the shipped teacher is its iteration ${record.iteration}`, `${teacherRun.command} --resume`);
  }
  if (!isRunFolder(student.path)) throw notCommitted(student, fs.existsSync(student.path) ? 'no config.json and metrics.csv' : 'missing');
  if (runStatus(student.path).state !== 'finished') {
    const { config } = readRun(student.path);
    throw notCommitted(student, `unfinished: logged up to iteration ${lastLoggedIteration(student.path)} of ${config.iters}`, `${student.command} --resume`);
  }
  if (!latestCheckpoint(path.join(student.path, CHECKPOINT_DIR))) throw notCommitted(student, `no checkpoint in ${CHECKPOINT_DIR}/ (notebooks 01 and 05 sample from its final one)`);
  return { teacher: teacher.path, teacherRun: teacherRun.path, student: student.path };
}

/** A planned ablation variant: its name, the settings that make it a variant, and its run. */
export interface NotebookVariant {
  name: string;
  setting: string;      // its flags and --set assignments beyond the base run's, e.g. 'ect.stageIters=25'
  run: PlannedRun;
}

/**
 * The recipe study (configs/sweeps/recipe.json) as planned variants, without checking or training anything. Its spec
 * tunes from a shipped teacher ('teacher:<name>'), here looked up in `teachers`.
 */
export function notebookRecipePlan(paths: NotebookPaths, teachers = SHIPPED_TEACHERS_DIR): NotebookVariant[] {
  const spec = loadSweepSpec(RECIPE_SWEEP);
  // the sweep itself finds 'teacher:<name>' in data/teachers only, and refuses to plan before it is shipped
  const stages = spec.stages.map((stage) => {
    const shipped = /^teacher:(.+)$/.exec(stage.init ?? '');
    return shipped ? { ...stage, init: path.join(teachers, shipped[1]) } : stage;
  });
  const plan = planSweep({ ...spec, stages }, { out: recipeOut(paths), check: false });
  return plan.runs.map((run) => {
    const stage = stages.find((s) => s.name === run.stage)!;
    const base = new Set(stage.set ?? []);
    const flags = STAGE_FLAG_KEYS.filter((key) => run.flags[key] !== undefined && run.flags[key] !== stage.flags?.[key]).map((key) => `${key}=${run.flags[key]}`);
    const setting = [...flags, ...run.flags.set.filter((assignment) => !base.has(assignment))].join(', ') || 'the base recipe';
    return { name: run.name, setting, run: { kind: run.kind, flags: run.flags } };
  });
}

/** Where small mode keeps its recipe study's variants. */
export function smallAblationsDir(paths: NotebookPaths): string {
  return path.join(paths.runs, 'ablations');
}

/**
 * Notebook 04's variants. Full mode: the recipe study (notebookRecipePlan). Small mode: its miniature, three variants
 * of the small demo's ECT run tuned from `teacher` for 4 iterations, evaluated in-run like the small teacher (1- and
 * 2-step fd at iterations 2 and 4), so the recipe table and its figures have their columns in both modes.
 */
export function notebookAblationPlan(mode: NotebookMode, paths: NotebookPaths, teacher: string, teachers = SHIPPED_TEACHERS_DIR): NotebookVariant[] {
  if (mode === 'full') return notebookRecipePlan(paths, teachers);
  const dir = smallAblationsDir(paths);
  const tune = (name: string, set: string[]): NotebookVariant => ({
    name, setting: set.join(', ') || 'the small demo\'s ECT run',
    run: { kind: 'tune', flags: {
      config: 'fmnist-ect-tiny', out: path.join(dir, name), init: teacher, iters: 4, batch: SMALL_BATCH, logEvery: 1, evalEvery: 0.016, evalN: SMALL_EVAL_N,
      set: [...set, SMALL_EVAL_SPLIT],
    } },
  });
  return [tune('baseline', []), tune('mapping-constant', ['ect.mapping="constant"']), tune('dropout-0', ['net.dropout=0'])];
}

/** An ablation variant ready to read: its name, setting and run folder. */
export interface NotebookVariantRun { name: string; setting: string; dir: string }

/**
 * Notebook 04's variant runs. Small mode trains the missing ones; full mode trains nothing and, when some are missing
 * or unfinished, names them and the command that makes the study.
 */
export async function ensureAblationRuns(mode: NotebookMode, paths: NotebookPaths, teacher: string,
  log: (line: string) => void = () => {}, teachers = SHIPPED_TEACHERS_DIR): Promise<NotebookVariantRun[]> {
  const variants = notebookAblationPlan(mode, paths, teacher, teachers);
  if (mode === 'small') {
    const runs: NotebookVariantRun[] = [];
    for (const { name, setting, run } of variants) runs.push({ name, setting, dir: await ensurePlannedRun(run, log) });
    return runs;
  }
  const problems = variants.flatMap(({ run }) => {
    const status = runStatus(run.flags.out, run.flags.iters);
    return status.state === 'finished' ? [] : [`${run.flags.out} (${status.state}${status.iteration ? `, iteration ${status.iteration}` : ''})`];
  });
  if (problems.length) {
    const { recipe } = notebookCommittedRuns(paths, teachers);
    throw notCommitted(recipe, `${problems.length} of its ${variants.length} runs are missing or unfinished: ${problems.join(', ')}`);
  }
  return variants.map(({ name, setting, run }) => ({ name, setting, dir: run.flags.out }));
}

/**
 * The sweep spec of notebook 03's scaling study on the Fashion-MNIST teachers (configs/sweeps/scaling-relative.json):
 * one run per width and budget, every schedule a fraction of its run, each evaluated once at its end.
 */
export const SCALING_SWEEP = 'scaling-relative';

/** Base channel widths of that study (0.32M, 0.71M and 1.26M parameters; 32 is the shipped teacher's). */
export const SCALING_WIDTHS = [16, 24, 32] as const;

/**
 * The folder a sweep's runs land in: ECT_SWEEP_OUT when set (the --out of a sweep trained elsewhere, e.g. `ect sweep
 * run scaling-relative --executor slurm --out <dir>` on a cluster), else its spec's out, relative to the repository
 * root like results/ itself.
 */
export function notebookSweepOut(paths: NotebookPaths, sweep = SCALING_SWEEP, value = process.env.ECT_SWEEP_OUT): string {
  return value ? path.resolve(value) : sweepSpecOut(paths, sweep);
}

/** The scaling study's runs, planned (not checked against their folders): teachers first (when planned), then the ECT runs. */
export function notebookScalingPlan(paths: NotebookPaths): Array<PlannedRun & { stage: string; width: number }> {
  const plan = planSweep(SCALING_SWEEP, { out: notebookSweepOut(paths), check: false });
  return plan.runs.map(({ kind, flags, stage, values }) => ({ kind, flags, stage, width: Number(values['net.modelChannels']) }));
}

/** The scaling study ready to read: per width, its teacher (a run or a shipped teacher) and its ECT runs, one per budget. */
export interface NotebookScaling {
  widths: Array<{ width: number; teacher: string; runs: string[] }>;
}

/** A study's tuning runs grouped by width, in the plan's order; an error when one width's runs name two teachers. */
function scalingWidths(tunes: Array<{ width: number; flags: PlannedRun['flags'] }>): NotebookScaling {
  const widths: NotebookScaling['widths'] = [];
  for (const { width, flags } of tunes) {
    const group = widths.find((w) => w.width === width);
    if (!group) widths.push({ width, teacher: flags.init!, runs: [flags.out] });
    else if (group.teacher !== flags.init) throw new Error(`the scaling study tunes width ${width} from two teachers: ${group.teacher} and ${flags.init}`);
    else group.runs.push(flags.out);
  }
  return { widths };
}

/**
 * Notebook 03's full mode: the committed scaling study, every run finished. A missing or unfinished run is an error
 * naming it and the command that makes (or resumes) the study; nothing is trained here.
 */
export function requireCommittedScaling(paths: NotebookPaths): NotebookScaling {
  const tunes = notebookScalingPlan(paths).filter((r) => r.kind === 'tune');
  const folders = [...new Set(tunes.flatMap((run) => [run.flags.init!, run.flags.out]))];
  const problems = folders.flatMap((dir) => {
    if (fs.existsSync(path.join(dir, TEACHER_FILE))) return [];
    const status = runStatus(dir);
    return status.state === 'finished' ? [] : [`${repositoryRelative(paths, dir)} (${status.state}${status.iteration ? `, iteration ${status.iteration}` : ''})`];
  });
  if (problems.length) {
    throw new Error(`the scaling study (configs/sweeps/${SCALING_SWEEP}.json) is not complete: ${problems.join(', ')}. Full mode reads committed `
      + `results and trains nothing; from the repository root, make or resume it with: node bin/ect.js sweep run ${SCALING_SWEEP}`);
  }
  return scalingWidths(tunes);
}

/** The sweep spec of the scaling study's miniature (configs/sweeps/scaling-small.json), notebook 03's small mode. */
export const SMALL_SCALING_SWEEP = 'scaling-small';

/**
 * Notebook 03's study, one path for both modes. Full: the committed scaling study (requireCommittedScaling), trained
 * never. Small: its miniature, two tiny widths tuned for four budgets each (one run per budget) under the small runs'
 * folder, trained once when missing through the same launcher, then reused.
 */
export async function ensureScalingStudy(mode: NotebookMode, paths: NotebookPaths, log: (line: string) => void = () => {}): Promise<NotebookScaling> {
  if (mode === 'full') return requireCommittedScaling(paths);
  const plan = planSweep(SMALL_SCALING_SWEEP, { out: path.join(paths.runs, 'scaling'), check: false });
  for (const run of plan.runs) await ensurePlannedRun({ kind: run.kind, flags: run.flags }, log);
  return scalingWidths(plan.runs.filter((run) => run.kind === 'tune')
    .map((run) => ({ width: Number(run.values['net.modelChannels']), flags: run.flags })));
}

/**
 * The scaling study's teachers, one row per width: the teacher's folder (relative to the repository root), its forward
 * MFLOPs per image, the kimg and Heun fd_fmnist of its last evaluation that has one (teacher_kimg, teacher_fd_heun; null
 * when none has) and its total pretraining FLOPs.
 */
export function scalingTeacherTable(study: NotebookScaling, paths: NotebookPaths): ColumnTable {
  const metric = 'fd_fmnist_heun';
  return aq.from(study.widths.map(({ width, teacher }) => {
    const run = readRun(teacher);
    const evaluated = run.metrics.filter((m) => typeof m[metric] === 'number');
    const last = evaluated[evaluated.length - 1];
    return {
      width, teacher: repositoryRelative(paths, teacher), forward_mflops_per_image: forwardFlopsPerImage(run.config.net) / 1e6,
      teacher_kimg: last ? last.kimg : null, teacher_fd_heun: last ? last[metric] : null, pretrain_flops: totalRunFlops(run),
    };
  }));
}

/** A path for messages: relative to the repository root when inside it. */
function repositoryRelative(paths: NotebookPaths, dir: string): string {
  const relative = path.relative(rootOf(paths), dir);
  return relative.startsWith('..') ? dir : relative.split(path.sep).join('/');
}

/**
 * Trains a planned run unless it already finished; an interrupted one resumes (lib/train/launch.ts ensureRun).
 * After training, the run's results folder (its parent) records the machine in environment.md / .json.
 * Returns the run directory. `train` is the launcher's trainRun; tests pass a stand-in.
 */
export async function ensurePlannedRun(run: PlannedRun, log: (line: string) => void = () => {}, train = trainRun): Promise<string> {
  const outcome = await ensureRun(run, { log }, train);
  if (!outcome.reused) writeEnvironment(path.dirname(run.flags.out));
  return outcome.runDir;
}

/**
 * The demo of a mode, the same three folders in both. Small: the tiny teacher's run, trained when missing, shipped when
 * not yet shipped (with its Heun fd on a few samples), and the ECT run tuned from the shipped teacher, trained when
 * missing. Full: the Fashion-MNIST study's committed runs (requireCommittedDemo), trained never. `train` and `ship`
 * are the launcher's trainRun and lib/teachers/ship.ts's shipTeacher; tests pass stand-ins.
 */
export async function ensureDemoRuns(mode: NotebookMode, paths: NotebookPaths, log: (line: string) => void = () => {},
  { train = trainRun, ship = shipTeacher }: { train?: typeof trainRun; ship?: typeof shipTeacher } = {}): Promise<NotebookDemo> {
  if (mode === 'full') return requireCommittedDemo(paths);
  const plan = notebookDemoPlan(paths);
  const teacherRun = await ensurePlannedRun(plan.teacher, log, train);
  const { dir, out, name, evalN, checkN } = plan.shipped;
  if (!fs.existsSync(path.join(dir, TEACHER_FILE))) {
    await initBackend();
    // a run launched from here records no command line: the one that makes it, from the repository root
    await ship({ run: teacherRun, name, out, evalN, checkN, command: plannedRunCommand(plan.teacher, paths.root), commit: workbenchCommit(), onInfo: log });
  }
  const student = await ensurePlannedRun(plan.student, log, train);
  return { teacher: dir, teacherRun, student };
}

/** A quality number logged during a run's training: where, and on what (samples, reference split). */
export interface InRunQuality {
  metric: string;
  value: number;
  iter: number;
  kimg: number;
  n: number;            // generated samples per evaluation (the run's evalN)
  split: string;        // the dataset split they were compared with (the run's evalSplit)
}

/**
 * The teacher's own in-run quality where the notebooks' teacher stands: the last `metric` its training run logged at
 * or before the shipped checkpoint (its last one when the teacher is not shipped, as in small mode), measured like the
 * ECT runs' curves (evalN samples against the evalSplit images). Null when the run never logged it.
 */
export function teacherInRunQuality(demo: NotebookDemo, metric: string): InRunQuality | null {
  const run = readRun(demo.teacherRun);
  const upTo = fs.existsSync(path.join(demo.teacher, TEACHER_FILE)) ? readTeacherRecord(demo.teacher).iteration : Infinity;
  const logged = run.metrics.filter((row) => Number(row.iter) <= upTo && typeof row[metric] === 'number' && Number.isFinite(row[metric]));
  const last = logged[logged.length - 1];
  if (!last) return null;
  // runs recorded before evalSplit existed compared with the training images, its default
  return { metric, value: last[metric] as number, iter: Number(last.iter), kimg: Number(last.kimg), n: run.config.evalN, split: run.config.evalSplit ?? 'train' };
}

/** A figure's reference line at the teacher's in-run quality: its value, a label saying where and on what, and the quality itself. */
export interface TeacherLine { value: number; label: string; quality: InRunQuality }

/**
 * The teacher's in-run quality (teacherInRunQuality) as a reference line for the ECT runs' curves and tables; an error
 * naming the teacher's run when it never logged `metric` (both modes' teachers evaluate along pretraining).
 */
export function teacherReferenceLine(demo: NotebookDemo, metric: string): TeacherLine {
  const quality = teacherInRunQuality(demo, metric);
  if (!quality) throw new Error(`${demo.teacherRun}: its metrics.csv has no ${metric} (the teacher's run was not evaluated along pretraining)`);
  return {
    value: quality.value, quality,
    label: `teacher at ${quality.kimg} kimg: ${quality.metric} ${quality.value.toPrecision(3)} (${quality.n} samples vs ${quality.split})`,
  };
}
