/**
 * The notebooks' studies beyond the demo runs, one path for both modes: each function returns the same kind of files
 * in small and full mode, and the mode only picks which. Full mode reads the committed results (results/manifest.json)
 * and computes nothing; small mode makes a miniature of the same study from the small demo, once, with the same
 * columns: the headline evaluations, the annealed recipe's seeds through the selection protocol, and the CIFAR-10 runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import { repositoryRelativePath, type NotebookMode, type NotebookPaths } from '../env';
import { SELECTION_DIR, selectForRun, selectionSubfolder } from '../select/run-selection';
import { readTeacherRecord } from '../teachers/record';
import { SHIPPED_TEACHERS_DIR } from '../teachers/shipped';
import { writeEvaluationTable } from './evaluation-table';
import { manifestEntry, readManifest, type ResultsManifest } from './manifest';
import { smallMidTFile, SMALL_MID_T, SMALL_MID_T_SAMPLES } from './midt-study';
import {
  ensurePlannedRun, notebookCommittedRuns, notebookDemoPlan, plannedRunCommand, smallAblationsDir, type CommittedResult, type NotebookDemo, type PlannedRun,
} from './notebook-runs';
import { findRunDirs, frechetColumns, lastEvaluatedRows, loadRunsTable } from './runs';

/** The results notebook 01 lists, with the same ids in both modes: where each is, what it is, the command that makes it. */
export type NotebookStudyResults = Record<'teacher' | 'teacherRun' | 'student' | 'evaluations' | 'recipe' | 'midT', CommittedResult>;

/**
 * The results the notebooks read in this mode, by the ids of results/manifest.json. Full: the manifest's entries
 * (notebookCommittedRuns). Small: the miniatures under the small runs' folder, with the commands (or the library
 * function) that make them.
 */
export function notebookStudyResults(mode: NotebookMode, paths: NotebookPaths, teachers = SHIPPED_TEACHERS_DIR): NotebookStudyResults {
  if (mode === 'full') return notebookCommittedRuns(paths, teachers);
  const root = paths.root;
  const plan = notebookDemoPlan(paths);
  const relative = (dir: string) => path.relative(root, dir).split(path.sep).join('/');
  const { shipped } = plan;
  return {
    teacher: { path: shipped.dir, what: `the small demo's shipped teacher (Heun fd on ${shipped.evalN} samples in teacher.json)`,
      command: `node bin/ect.js ship-teacher --run ${relative(plan.teacher.flags.out)} --name ${shipped.name} --out ${relative(shipped.out)} --eval-n ${shipped.evalN} --check-n ${shipped.checkN}` },
    teacherRun: { path: plan.teacher.flags.out, what: 'the small demo teacher\'s training run', command: plannedRunCommand(plan.teacher, root) },
    student: { path: plan.student.flags.out, what: 'the small demo\'s ECT run, tuned from its shipped teacher', command: plannedRunCommand(plan.student, root) },
    evaluations: { path: smallHeadlineFile(paths), what: `the small ECT run's last checkpoint with 1 and 2 steps on as many samples as the teacher's Heun fd, against the test images`,
      command: 'ensureHeadlineEvaluations (lib/results/notebook-studies.ts), in notebook 02' },
    recipe: { path: smallAblationsDir(paths), what: 'the small recipe study: variants of the small ECT run, one setting changed per run',
      command: 'ensureAblationRuns (lib/results/notebook-runs.ts), in notebook 04' },
    midT: { path: smallMidTFile(paths), what: `the small ECT run with 2 steps at t_mid ${SMALL_MID_T.join(', ')} (${SMALL_MID_T_SAMPLES} samples)`,
      command: 'ensureMidTStudy (lib/results/midt-study.ts), in notebooks 04 and 05' },
  };
}

/** Where small mode keeps its headline evaluations. */
const smallHeadlineFile = (paths: NotebookPaths): string => path.join(paths.runs, 'demo', 'evaluations.csv');

/**
 * The headline evaluations (rows of `ect eval --table`) for this mode. Full: the committed file (an error naming its
 * command when it is missing). Small: made once when missing, the small ECT run's last checkpoint with 1 and 2 steps on
 * as many samples (and the same noise seed and reference, the whole test split) as its shipped teacher's headline Heun
 * fd, so headlineTable compares like with like in both modes.
 */
export async function ensureHeadlineEvaluations(mode: NotebookMode, paths: NotebookPaths, demo: NotebookDemo, log: (line: string) => void = () => {}): Promise<string> {
  if (mode === 'full') {
    const { evaluations } = notebookCommittedRuns(paths);
    if (!fs.existsSync(evaluations.path)) throw new Error(`${evaluations.path}: missing (${evaluations.what}); from the repository root, make it with: ${evaluations.command}`);
    return evaluations.path;
  }
  const file = smallHeadlineFile(paths);
  if (fs.existsSync(file)) return file;
  const { headline } = readTeacherRecord(demo.teacher).evaluations;
  return writeEvaluationTable(file, [demo.student], [{ steps: 1 }, { steps: 2 }], {
    n: headline.n, seed: headline.seed, referenceSplit: headline.reference.split as 'test', root: paths.root, log,
  });
}

/** The annealed recipe's study as the notebook reads it: the teacher's Heun score (an `ect eval --table` CSV) and the seeds' run folders. */
export interface AnnealedStudy { teacherScore: string; runs: string[] }

/** The miniature's training seeds, its post-hoc EMA widths and t_mid candidates, and its sample counts. */
export const SMALL_ANNEALED = { seeds: [0, 1], sigmaRels: [0.05, 0.1], midTs: [0.821, 1.5], n: 50, referenceLimit: 500 } as const;

/**
 * The small annealed study's runs: the annealed preset tuned from the small demo's shipped teacher for 8 iterations of 8
 * images, one run per training seed, tracking post-hoc EMAs with a snapshot every 2 iterations.
 */
export function smallAnnealedPlan(paths: NotebookPaths, teacher: string): PlannedRun[] {
  return SMALL_ANNEALED.seeds.map((seed) => ({ kind: 'tune', flags: {
    config: 'fmnist-ect-annealed', out: path.join(paths.runs, 'annealed', `seed${seed}`), init: teacher, seed, iters: 8, batch: 8, logEvery: 1,
    ckptEvery: 8, sampleEvery: 0, evalEvery: 0, set: ['ema.posthoc.snapshotEvery=2'],
  } }));
}

/**
 * The annealed recipe's study for this mode. Full: the committed seeds and the teacher's score (results/manifest.json
 * 'annealed'), an error naming the command when one is missing. Small: its miniature, made once when missing: two
 * seeds of the small annealed run (smallAnnealedPlan), each through the selection protocol (EMA width and t_mid chosen
 * on validation samples, test scored once) and the shipped small teacher's Heun score on the same test samples, all
 * against the first SMALL_ANNEALED.referenceLimit images of each split.
 */
export async function ensureAnnealedStudy(mode: NotebookMode, paths: NotebookPaths, demo: NotebookDemo, log: (line: string) => void = () => {},
  manifest: ResultsManifest = readManifest()): Promise<AnnealedStudy> {
  const root = paths.root;
  if (mode === 'full') {
    const entry = manifestEntry('annealed', manifest);
    const study = { teacherScore: path.join(root, ...entry.folder.split('/')), runs: (entry.extraFolders ?? []).map((f) => path.join(root, ...f.split('/'))) };
    const missing = [study.teacherScore, ...study.runs.map((run) => path.join(run, 'evaluations.csv'))].filter((file) => !fs.existsSync(file));
    if (missing.length) throw new Error(`${missing.join(', ')}: missing (${entry.what}); from the repository root, make it with: ${entry.command}`);
    return study;
  }
  const { n, referenceLimit, sigmaRels, midTs } = SMALL_ANNEALED;
  const runs: string[] = [];
  for (const run of smallAnnealedPlan(paths, demo.teacher)) {
    const dir = await ensurePlannedRun(run, log);
    if (!fs.existsSync(path.join(dir, 'evaluations.csv'))) {
      await selectForRun({ runDir: dir, sigmaRels: [...sigmaRels], midTs: [...midTs], validationN: n, testN: n, referenceLimit, onInfo: log });
    }
    runs.push(dir);
  }
  const teacherScore = path.join(paths.runs, 'annealed', 'teacher-evaluations.csv');
  if (!fs.existsSync(teacherScore)) {
    await writeEvaluationTable(teacherScore, [demo.teacher], [{ steps: 'heun' }], { n, referenceSplit: 'test', referenceLimit, root, log });
  }
  return { teacherScore, runs };
}

/** The small mode's earlier snapshot of the along-run curve: the small annealed run's post-hoc snapshot at iteration 4 of 8. */
export const SMALL_ALONG_RUN_AT = 4;

/**
 * A run scored at several points of its training under the selection protocol (`ect select --at`), for the curve of
 * quality against tuning images. Full: the annealed recipe run to 640 kimg (results/manifest.json 'annealedLong'), an
 * error naming the command when missing. Small: the small annealed study's first seed, selected once more at its
 * snapshot of iteration SMALL_ALONG_RUN_AT (made once), so the curve has two points from numbers that only check the code.
 */
export async function ensureAlongRunStudy(mode: NotebookMode, paths: NotebookPaths, annealed: AnnealedStudy, log: (line: string) => void = () => {},
  manifest: ResultsManifest = readManifest()): Promise<string> {
  if (mode === 'full') {
    const entry = manifestEntry('annealedLong', manifest);
    const dir = path.join(paths.root, ...entry.folder.split('/'));
    if (!fs.existsSync(path.join(dir, 'evaluations.csv'))) throw new Error(`${dir}: missing its evaluations.csv (${entry.what}); from the repository root, make it with: ${entry.command}`);
    return dir;
  }
  const { n, referenceLimit, sigmaRels, midTs } = SMALL_ANNEALED;
  const dir = annealed.runs[0];
  if (!fs.existsSync(path.join(dir, SELECTION_DIR, selectionSubfolder(SMALL_ALONG_RUN_AT)))) {
    await selectForRun({ runDir: dir, at: SMALL_ALONG_RUN_AT, sigmaRels: [...sigmaRels], midTs: [...midTs], validationN: n, testN: n, referenceLimit, onInfo: log });
  }
  return dir;
}

/** What a folder of CIFAR-10 runs shows: a note, and per Frechet column the last evaluation of each run. */
export interface RunFolderSummary { note: string; tables: Array<{ column: string; table: ColumnTable }> }

/**
 * The runs under `dir` (notebook 06: <runs>/cifar10) summarised the same way whether there are some or none: a note
 * saying how many runs were found (and how to make them when none), and for each Frechet column the evaluator wrote
 * (e.g. fid_1step, fid_2step) the last evaluation of each run.
 */
export function runFolderSummary(dir: string, whenEmpty: string): RunFolderSummary {
  const runs = fs.existsSync(dir) ? findRunDirs(dir) : [];
  const table = runs.length ? loadRunsTable(runs) : aq.table({});
  const shown = repositoryRelativePath(dir);
  return {
    note: runs.length ? `${runs.length} run${runs.length === 1 ? '' : 's'} in \`${shown}\`: the last evaluation of each, per metric.` : `No runs in \`${shown}\` yet: ${whenEmpty}`,
    tables: (runs.length ? frechetColumns(table) : []).map((column) => ({
      column, table: lastEvaluatedRows(table, column).select('run_id', 'kind', 'iter', 'images_seen', 'train_flops', 'backend', column),
    })),
  };
}
