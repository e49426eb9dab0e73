/**
 * Notebook 05's t_mid study as `ect eval --table` rows, one path for both modes. Full mode: the committed recipe
 * checkpoint's rows (results/manifest.json 'midT'), never recomputed. Small mode: its miniature, the small demo's ECT
 * run with 2 steps at SMALL_MID_T, 100 samples against the first 500 training images, written once into the small
 * runs' folder with the same columns, so the notebook reads both through midTTable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NotebookMode, NotebookPaths } from '../env';
import { writeEvaluationTable } from './evaluation-table';
import { notebookCommittedRuns, type NotebookDemo } from './notebook-runs';

/** The miniature's t_mid values: one below the paper's 0.821, the paper's, one above. */
export const SMALL_MID_T = [0.2, 0.821, 2.0] as const;
/** The miniature's sample count and reference images: enough to run the code, not to rank settings. */
export const SMALL_MID_T_SAMPLES = 100;
export const SMALL_MID_T_REFERENCE = 500;

/** Where small mode keeps its t_mid study. */
export function smallMidTFile(paths: NotebookPaths): string {
  return path.join(paths.runs, 'demo', 'midt.csv');
}

/**
 * The CSV of the t_mid study for this mode. Full: the committed file (an error naming the command when it is missing).
 * Small: made once from `demo.student` when missing (needs the Fashion-MNIST dataset, like the small runs themselves).
 */
export async function ensureMidTStudy(mode: NotebookMode, paths: NotebookPaths, demo: NotebookDemo, log: (line: string) => void = () => {}): Promise<string> {
  if (mode === 'full') {
    const { midT } = notebookCommittedRuns(paths);
    if (!fs.existsSync(midT.path)) throw new Error(`${midT.path}: missing (${midT.what}); from the repository root, make it with: ${midT.command}`);
    return midT.path;
  }
  const file = smallMidTFile(paths);
  if (fs.existsSync(file)) return file;
  return writeEvaluationTable(file, [demo.student], SMALL_MID_T.map((midT) => ({ steps: 2, midT })), {
    n: SMALL_MID_T_SAMPLES, referenceSplit: 'train', referenceLimit: SMALL_MID_T_REFERENCE, root: paths.root, log,
  });
}
