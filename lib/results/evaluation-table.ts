/**
 * Scoring a checkpoint into the rows of an `ect eval --table` CSV from library code: the notebooks' small-mode
 * miniatures (the t_mid study, the headline evaluations, the teacher's score) are written with the command's columns,
 * so one reader (readEvaluationTable) serves the committed files and their miniatures alike.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../backend/select';
import type { Split } from '../data';
import { createRunEvaluator } from '../metrics/evaluate';
import { DEFAULT_SAMPLE_SEED, samplerLabel, type SampleSteps } from '../sample';
import { appendTableRow } from '../train/metrics-log';
import { disposeModel, loadRunModel, samplerModelOf } from '../train/run';

/** One scored setting: the sampler and, for 2 steps, its t_mid (else the checkpoint's own). */
export interface EvaluationSetting { steps: SampleSteps; midT?: number }

/** What each row is scored on: samples, their noise seed, and the reference images (a split, or its first N images). */
export interface EvaluationTableOptions {
  n: number;
  seed?: number;                 // DEFAULT_SAMPLE_SEED, the seed of every reported number
  referenceSplit: Split;
  referenceLimit?: number;       // the first N images of the split only (absent: all)
  root: string;                  // checkpoint paths in the rows are relative to it (the repository root)
  log?: (line: string) => void;
}

/** The `reference` column of a row, as `ect eval` writes it: <dataset>-<split>[-first<N>]. */
export function referenceLabel(dataset: string, split: string, limit?: number): string {
  return `${dataset}-${split}${limit ? `-first${limit}` : ''}`;
}

/**
 * Scores each checkpoint at each setting and writes the rows to `file` (columns of `ect eval --table`: checkpoint,
 * iter, kimg, sampler, mid_t, n, seed, reference, features, backend, seconds, then the metric columns). The file is
 * written under a temporary name and renamed at the end: it is whole or absent, never half a study. Returns `file`.
 */
export async function writeEvaluationTable(file: string, checkpoints: string[], settings: EvaluationSetting[], opts: EvaluationTableOptions): Promise<string> {
  const seed = opts.seed ?? DEFAULT_SAMPLE_SEED;
  const backend = await initBackend();
  const partial = `${file}.partial`;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.rmSync(partial, { force: true });
  for (const checkpoint of checkpoints) {
    const model = await loadRunModel(checkpoint);
    let reason = '';
    const evaluator = await createRunEvaluator(model.config, {
      referenceSplit: opts.referenceSplit, referenceLimit: opts.referenceLimit, onUnavailable: (why) => (reason = why),
    });
    try {
      if (!evaluator) throw new Error(`cannot score ${checkpoint}: ${reason}`);
      for (const { steps, midT } of settings) {
        const started = Date.now();
        const sampler = { ...samplerModelOf(model), ...(midT === undefined ? {} : { midT: [midT] }) };
        const metrics = await evaluator.evaluate(sampler, steps, { n: opts.n, seed });
        appendTableRow(partial, {
          checkpoint: path.relative(opts.root, model.checkpoint).split(path.sep).join('/'), iter: model.iteration,
          kimg: (model.iteration * model.config.batch) / 1000, sampler: samplerLabel(steps), mid_t: steps === 2 ? sampler.midT.join(' ') : '',
          n: opts.n, seed, reference: referenceLabel(model.config.data.name, opts.referenceSplit, opts.referenceLimit),
          features: evaluator.featureNetwork.name, backend: backend.name, seconds: Number(((Date.now() - started) / 1000).toFixed(1)), ...metrics,
        });
        opts.log?.(`${path.basename(model.checkpoint)} ${samplerLabel(steps)}${steps === 2 ? ` t_mid ${sampler.midT.join(' ')}` : ''}: `
          + Object.entries(metrics).map(([k, v]) => `${k} ${v.toPrecision(4)}`).join(', '));
      }
    } finally {
      evaluator?.dispose();
      disposeModel(model);
    }
  }
  fs.renameSync(partial, file);
  return file;
}
