/**
 * The runs the notebooks build on, planned per mode and trained only when missing: a teacher and its ECT
 * run (plus ablation variants). Each is a run spec as `ect pretrain` / `ect tune` take it, trained through
 * the same launcher as the command line (lib/train/launch.ts). The full-mode studies are the sweep specs
 * configs/sweeps/scaling.json and ablations.json, the same grids `ect sweep run` trains here or on Slurm.
 */
import * as path from 'node:path';
import type { RunKind } from '../config/types';
import { writeEnvironment, type NotebookMode, type NotebookPaths } from '../env';
import { planSweep } from '../sweep/plan';
import { ensureRun as ensureLaunched, trainRun, type RunFlags } from '../train/launch';

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

/** Evaluation interval of the full-mode demo ECT run: 0.96 kimg, 8 points over its 240 iterations of 32 images. */
const DEMO_EVAL_KIMG = 0.96;

/** The demo teacher and ECT run of a mode (small: seconds of training; full: the presets' lengths). */
export function notebookDemoPlan(mode: NotebookMode, paths: NotebookPaths): { teacher: PlannedRun; student: PlannedRun } {
  const dir = path.join(paths.runs, 'demo');
  const teacherOut = path.join(dir, 'teacher');
  if (mode === 'small') {
    return {
      teacher: { kind: 'pretrain', flags: {
        config: 'fmnist-edm-tiny', out: teacherOut, iters: 6, batch: SMALL_BATCH, logEvery: 1, evalEvery: 0, set: [...SMALL_NET, ...SMALL_HEUN],
      } },
      student: { kind: 'tune', flags: {
        // a stage every 2 iterations, so the schedule visibly moves within the 6 iterations
        config: 'fmnist-ect-tiny', out: path.join(dir, 'ect'), init: teacherOut, iters: 6, batch: SMALL_BATCH, logEvery: 1,
        evalEvery: 0, set: ['ect.stageIters=2'],
      } },
    };
  }
  return {
    teacher: { kind: 'pretrain', flags: { config: 'fmnist-edm-tiny', out: teacherOut, evalEvery: 1e9, evalN: 1000, set: [] } },
    // evaluate every 30 iterations of 32 images (twice per 60-iteration stage) to draw quality along training
    student: { kind: 'tune', flags: { config: 'fmnist-ect-tiny', out: path.join(dir, 'ect'), init: teacherOut, evalEvery: DEMO_EVAL_KIMG, evalN: 1000, set: [] } },
  };
}

/** The notebooks' full-mode studies, each a sweep spec in configs/sweeps/. */
export type NotebookStudy = 'scaling' | 'ablations';

/**
 * The folder the studies' sweeps land in: the notebook's runs folder (results/ in full mode), or ECT_SWEEP_OUT,
 * the --out of a sweep trained elsewhere (`ect sweep run scaling --executor slurm --out <dir>` on a cluster).
 */
export function notebookSweepOut(paths: NotebookPaths, value = process.env.ECT_SWEEP_OUT): string {
  return value ? path.resolve(value) : paths.runs;
}

/**
 * A notebook's full-mode study: the runs of its sweep spec (configs/sweeps/<name>.json) under notebookSweepOut,
 * in stage order, without the demo teacher when the spec names it (ensureDemoRuns trains that one).
 */
export function notebookStudyPlan(sweep: NotebookStudy, paths: NotebookPaths, demoTeacher: string): PlannedRun[] {
  const plan = planSweep(sweep, { out: notebookSweepOut(paths) });
  return plan.runs.filter((run) => run.flags.out !== path.resolve(demoTeacher)).map(({ kind, flags }) => ({ kind, flags }));
}

/** The folder of a study's last stage, the runs its notebook reads (results/scaling for the scaling study). */
export function notebookStudyFolder(sweep: NotebookStudy, paths: NotebookPaths): string {
  const plan = planSweep(sweep, { out: notebookSweepOut(paths), check: false });
  return path.join(plan.out, plan.stages[plan.stages.length - 1].folder);
}

/**
 * Ablation variants of the demo's ECT run, one `--set` change each (ect-spec.md section 8). Full mode is the
 * sweep configs/sweeps/ablations.json, which adds "from scratch": ECT started from a teacher pretrained for a
 * single iteration (essentially the random initialisation), since `ect tune` always starts from a checkpoint;
 * that teacher comes first in the list. Small mode tunes three variants of the small demo for 4 iterations.
 */
export function notebookAblationPlan(mode: NotebookMode, paths: NotebookPaths, teacher: string): PlannedRun[] {
  if (mode === 'full') return notebookStudyPlan('ablations', paths, teacher);
  const dir = path.join(paths.runs, 'ablations');
  const tune = (name: string, set: string[]): PlannedRun => ({
    kind: 'tune',
    flags: { config: 'fmnist-ect-tiny', out: path.join(dir, name), init: teacher, iters: 4, batch: SMALL_BATCH, logEvery: 1, evalEvery: 0, set },
  });
  return [tune('baseline', []), tune('mapping-constant', ['ect.mapping="constant"']), tune('dropout-0', ['net.dropout=0'])];
}

/** Base channel widths of the full-mode scaling study (configs/sweeps/scaling.json; 16 is the demo's own network). */
export const SCALING_WIDTHS = [8, 16, 24] as const;

/**
 * The scaling study of notebook 03, the sweep configs/sweeps/scaling.json: for each width of SCALING_WIDTHS, a
 * teacher pretrained like the demo's (600 iterations of 32 images; the width-16 teacher is the demo teacher
 * itself) and an ECT run of 360 iterations evaluated every 1.28 kimg, so each width gives quality at 9 training
 * budgets. Teachers live under `teachers/`, the ECT runs (the study) under `scaling/`. Small mode has no study
 * (the notebook fits the tiny teacher's loss instead): empty plan.
 */
export function notebookScalingPlan(mode: NotebookMode, paths: NotebookPaths, demoTeacher: string): PlannedRun[] {
  return mode === 'small' ? [] : notebookStudyPlan('scaling', paths, demoTeacher);
}

/**
 * Trains a planned run unless it already finished; an interrupted one resumes (lib/train/launch.ts ensureRun).
 * After training, the run's results folder (its parent) records the machine in environment.md / .json.
 * Returns the run directory. `train` is the launcher's trainRun; tests pass a stand-in.
 */
export async function ensureRun(run: PlannedRun, log: (line: string) => void = () => {}, train = trainRun): Promise<string> {
  const outcome = await ensureLaunched(run, { log }, train);
  if (!outcome.reused) writeEnvironment(path.dirname(run.flags.out));
  return outcome.runDir;
}

/** The demo teacher and ECT run of a mode, trained when missing. */
export async function ensureDemoRuns(mode: NotebookMode, paths: NotebookPaths,
  log: (line: string) => void = () => {}): Promise<{ teacher: string; student: string }> {
  const plan = notebookDemoPlan(mode, paths);
  const teacher = await ensureRun(plan.teacher, log);
  const student = await ensureRun(plan.student, log);
  return { teacher, student };
}
