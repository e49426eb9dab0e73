/**
 * Notebook 05's t_mid study as `ect eval --table` rows, one path for both modes. Full mode: the committed recipe
 * checkpoint's rows (results/manifest.json 'midT'), never recomputed. Small mode: its miniature, the small demo's ECT
 * run with 2 steps at SMALL_MID_T, 100 samples against the first 500 training images, written once into the small
 * runs' folder with the same columns, so the notebook reads both through midTTable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../backend/select';
import type { NotebookMode, NotebookPaths } from '../env';
import { createRunEvaluator } from '../metrics/evaluate';
import { DEFAULT_SAMPLE_SEED } from '../sample';
import { appendTableRow } from '../train/metrics-log';
import { disposeModel, loadRunModel, samplerModelOf } from '../runs/model';
import { notebookCommittedRuns, type NotebookDemo } from './notebook-runs';

/** The miniature's t_mid values: one below the paper's 0.821, the paper's, one above. */
export const SMALL_MID_T = [0.2, 0.821, 2.0] as const;
/** The miniature's sample count and reference images: enough to run the code, not to rank settings. */
export const SMALL_MID_T_SAMPLES = 100;
export const SMALL_MID_T_REFERENCE = 500;

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
  const file = path.join(paths.runs, 'demo', 'midt.csv');
  if (fs.existsSync(file)) return file;
  const backend = await initBackend();
  const model = await loadRunModel(demo.student);
  let reason = '';
  const evaluator = await createRunEvaluator(model.config, { referenceSplit: 'train', referenceLimit: SMALL_MID_T_REFERENCE, onUnavailable: (why) => (reason = why) });
  try {
    if (!evaluator) throw new Error(`cannot score the small t_mid study: ${reason}`);
    const partial = `${file}.partial`;
    fs.rmSync(partial, { force: true });
    for (const midT of SMALL_MID_T) {
      const started = Date.now();
      const metrics = await evaluator.evaluate({ ...samplerModelOf(model), midT: [midT] }, 2, { n: SMALL_MID_T_SAMPLES, seed: DEFAULT_SAMPLE_SEED });
      // the columns of `ect eval --table` (cli/commands/metrics.ts), so midTTable reads both modes alike
      appendTableRow(partial, {
        checkpoint: path.relative(path.dirname(paths.runs), model.checkpoint).split(path.sep).join('/'), iter: model.iteration,
        kimg: (model.iteration * model.config.batch) / 1000, sampler: '2step', mid_t: String(midT), n: SMALL_MID_T_SAMPLES, seed: DEFAULT_SAMPLE_SEED,
        reference: `${model.config.data.name}-train-first${SMALL_MID_T_REFERENCE}`, features: evaluator.featureNetwork.name,
        backend: backend.name, seconds: Number(((Date.now() - started) / 1000).toFixed(1)), ...metrics,
      });
      log(`t_mid ${midT}: ${Object.entries(metrics).map(([k, v]) => `${k} ${v.toPrecision(4)}`).join(', ')}`);
    }
    fs.renameSync(partial, file);   // whole or absent: an interrupted study is made again
    return file;
  } finally {
    evaluator?.dispose();
    disposeModel(model);
  }
}
