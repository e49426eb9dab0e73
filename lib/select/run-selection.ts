/**
 * The selection protocol applied to a run folder (`ect select`): post-hoc EMAs reconstructed at the run's last
 * snapshot, every (EMA, t_mid) scored on validation, the choice and the last checkpoint scored on test, and the
 * records: selection/validation.csv, selection/selection.json and test rows in the run's evaluations.csv.
 *
 * With `at`, the same protocol at an earlier point of the run (one of its snapshot iterations; the run may still be
 * training): every candidate is reconstructed there from the snapshots up to it, the reference with no choice is the
 * run's own EMA width there with its first t_mid (in place of the last checkpoint), and the records go to
 * selection/iter-<n>/ beside the others, the test rows carrying that iteration. A run's curve of test scores along
 * its length is one `at` per point.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Split } from '../data';
import { DEFAULT_SAMPLE_SEED } from '../sample';
import { VALIDATION_SAMPLE_SEED } from '../config/defaults';
import { evaluationColumns } from '../metrics/columns';
import { createRunEvaluator, type SampleEvaluator } from '../metrics/evaluate';
import { appendTableRow } from '../train/metrics-log';
import { runPaths } from '../runs/folder';
import { disposeModel, loadRunModel, resolveCheckpointFile, samplerModelOf, type LoadedModel } from '../runs/model';
import { machineFacts } from '../machine/facts';
import { listSnapshots, reconstructPosthocEma, writePosthocEma } from './posthoc-ema';
import { describeCandidate, runSelection, type Candidate, type ScoringReference, type SelectionResult } from './protocol';

/** What `ect select` is asked. */
export interface RunSelectionOptions {
  runDir: string;
  sigmaRels: number[];        // post-hoc EMA widths to reconstruct ([]: the run's own EMA only)
  iterations?: number[];      // snapshot iterations to reconstruct them at, so the training point is chosen too (default: the last)
  at?: number;                // select at this snapshot iteration instead of the run's end (see the file header)
  midTs: number[];            // t_mid candidates of 2-step sampling ([]: the run's own)
  validationN: number;
  testN: number;
  validationSeed?: number;    // VALIDATION_SAMPLE_SEED
  testSeed?: number;          // DEFAULT_SAMPLE_SEED: the seed every reported number uses
  batch?: number;             // images per generation call
  classifierDir?: string;
  inceptionDir?: string;
  cacheDir?: string;
  referenceLimit?: number;    // reference statistics of the first N images of each split only (quick checks; absent: all)
  backend?: string;           // recorded with the test rows
  onInfo?: (line: string) => void;
}

/** Files the selection wrote. */
export interface RunSelectionOutcome {
  result: SelectionResult;
  posthocCheckpoints: string[];
  validationTable: string;
  record: string;
  evaluations: string;
}

/** The folder of a run's selection records. */
export const SELECTION_DIR = 'selection';

/** Where a selection's records go inside SELECTION_DIR: the run's end, or an earlier point of it (`at`). */
export function selectionSubfolder(at?: number): string {
  return at === undefined ? '' : `iter-${String(at).padStart(9, '0')}`;
}

/** A path relative to `base`, with forward slashes, for records that move with the repository. */
function relativeTo(base: string, file: string): string {
  return path.relative(base, file).split(path.sep).join('/');
}

/** Runs the protocol on a run folder; see the file header. */
export async function selectForRun(opts: RunSelectionOptions): Promise<RunSelectionOutcome> {
  const log = opts.onInfo ?? (() => {});
  const runDir = opts.runDir;
  const lastCheckpoint = resolveCheckpointFile(runDir);
  const models = new Map<string, LoadedModel>();
  const evaluators = new Map<Split, SampleEvaluator>();
  const load = async (file: string) => {
    let model = models.get(file);
    if (!model) {
      model = await loadRunModel(file);
      models.set(file, model);
    }
    return model;
  };
  try {
    const last = await load(lastCheckpoint);
    const config = last.config;
    const at = opts.at;
    const ownWidth = config.ema.sigmaRel ?? null;
    if (at !== undefined) {
      if (opts.iterations?.length) throw new Error('select: give either --at (one point of the run) or --iterations (points to choose among at its end), not both');
      if (ownWidth === null) throw new Error(`${runDir}: --at needs a run with a power-function EMA (ema.sigmaRel), whose own EMA can be reconstructed at iteration ${at}; this one has ${JSON.stringify(config.ema)}`);
    }
    const posthoc: Array<{ file: string; sigmaRel: number; iteration: number }> = [];
    // at an earlier point the run's own EMA is reconstructed too, as the reference with no choice
    const sigmaRels = at === undefined ? opts.sigmaRels : [...new Set([ownWidth!, ...opts.sigmaRels])];
    if (sigmaRels.length) {
      const snapshots = listSnapshots(runDir);
      const final = snapshots[snapshots.length - 1];
      if (at === undefined && final.iteration !== last.iteration) {
        throw new Error(`${runDir}: its last post-hoc snapshot is at iteration ${final.iteration}, its last checkpoint at ${last.iteration}; finish the run (--resume) first, or select at a snapshot with --at`);
      }
      const iterations = at !== undefined ? [at] : opts.iterations?.length ? opts.iterations : [final.iteration];
      const missing = iterations.filter((it) => !snapshots.some((s) => s.iteration === it));
      if (missing.length) throw new Error(`${at !== undefined ? '--at' : '--iterations'} ${missing.join(',')}: ${runDir} has no snapshot there (snapshots at ${snapshots.map((s) => s.iteration).join(', ')})`);
      for (const iteration of iterations) {
        for (const sigmaRel of sigmaRels) {
          const rec = reconstructPosthocEma(runDir, sigmaRel, iteration);
          try {
            const file = writePosthocEma(runDir, rec);
            posthoc.push({ file, sigmaRel, iteration });
            log(`post-hoc EMA sigma_rel ${sigmaRel} at iteration ${rec.iteration} from ${rec.snapshots} snapshots (profile error ${rec.profileError.toExponential(2)}): ${file}`);
          } finally {
            rec.weights.forEach((t) => t.dispose());
          }
        }
      }
    }
    const posthocCheckpoints = posthoc.map((p) => p.file);
    const midTs = opts.midTs.length ? opts.midTs : config.ect.midT;
    const ways = (name: string, checkpoint: string, sigmaRel: number | null, times: number[]): Candidate[] => [
      { name, checkpoint, sigmaRel, steps: 1, midT: null },
      ...times.map((midT) => ({ name, checkpoint, sigmaRel, steps: 2 as const, midT })),
    ];
    const posthocWays = (p: (typeof posthoc)[number]) =>
      ways(`post-hoc EMA sigma_rel ${p.sigmaRel}${p.iteration === (at ?? last.iteration) ? '' : ` at iteration ${p.iteration}`}`, p.file, p.sigmaRel, midTs);
    // at the run's end the run's EMA is its last checkpoint; at an earlier point, its width reconstructed there
    const own = at === undefined ? null : posthoc.find((p) => p.sigmaRel === ownWidth)!;
    const candidates = at === undefined
      ? [...ways('run EMA', lastCheckpoint, ownWidth, midTs), ...posthoc.map(posthocWays).flat()]
      : posthoc.filter((p) => p !== own || opts.sigmaRels.includes(p.sigmaRel)).map(posthocWays).flat();
    const reference = own
      ? ways(`run EMA width at iteration ${at}`, own.file, ownWidth, config.ect.midT.slice(0, 1))
      : ways('run EMA, last checkpoint', lastCheckpoint, ownWidth, config.ect.midT.slice(0, 1));
    const validation: ScoringReference = { split: 'train', seed: opts.validationSeed ?? VALIDATION_SAMPLE_SEED, n: opts.validationN };
    const test: ScoringReference = { split: 'test', seed: opts.testSeed ?? DEFAULT_SAMPLE_SEED, n: opts.testN };
    const evaluatorFor = async (split: Split) => {
      let evaluator = evaluators.get(split);
      if (!evaluator) {
        let reason = '';
        const made = await createRunEvaluator(config, {
          referenceSplit: split, referenceLimit: opts.referenceLimit, classifierDir: opts.classifierDir, inceptionDir: opts.inceptionDir, cacheDir: opts.cacheDir,
          batch: opts.batch, onInfo: log, onUnavailable: (why) => (reason = why),
        });
        if (!made) throw new Error(`cannot evaluate ${runDir}: ${reason}`);
        evaluator = made;
        evaluators.set(split, evaluator);
      }
      return evaluator;
    };
    const lastLabel = at === undefined ? undefined : `the run's own EMA width ${ownWidth} at iteration ${at} with its t_mid ${config.ect.midT[0]}`;
    const result = await runSelection({ candidates, last: reference, lastLabel, validation, test },
      async (candidate, reference) => {
        const model = await load(candidate.checkpoint);
        const evaluator = await evaluatorFor(reference.split);
        const sampler = { ...samplerModelOf(model), midT: candidate.midT === null ? model.config.ect.midT : [candidate.midT] };
        const label = `${candidate.steps}step`;
        const metrics = await evaluator.evaluate(sampler, candidate.steps, { n: reference.n, seed: reference.seed });
        return { fd: metrics[evaluationColumns(evaluator.featureNetwork, label).fd], metrics };
      }, log);
    const point = at === undefined ? last : { iteration: at, config };
    return { result, posthocCheckpoints, ...writeSelectionRecords(runDir, result, point, opts.backend, at) };
  } finally {
    for (const model of models.values()) disposeModel(model);
    for (const evaluator of evaluators.values()) evaluator.dispose();
  }
}

/** Writes the validation table, the JSON record and the test rows (with the rule that chose them). */
function writeSelectionRecords(runDir: string, result: SelectionResult, last: Pick<LoadedModel, 'iteration' | 'config'>, backend?: string, at?: number)
  : Pick<RunSelectionOutcome, 'validationTable' | 'record' | 'evaluations'> {
  const dir = path.join(runDir, SELECTION_DIR, selectionSubfolder(at));
  fs.mkdirSync(dir, { recursive: true });
  const validationTable = path.join(dir, 'validation.csv');
  if (fs.existsSync(validationTable)) fs.rmSync(validationTable);  // one table per selection: the newest
  const row = (s: SelectionResult['validation'][number]) => ({
    candidate: s.candidate.name, checkpoint: relativeTo(runDir, s.candidate.checkpoint), sigma_rel: s.candidate.sigmaRel ?? '',
    sampler: `${s.candidate.steps}step`, mid_t: s.candidate.midT ?? '', split: s.reference.split, seed: s.reference.seed, n: s.reference.n, fd: s.fd,
  });
  for (const s of result.validation) appendTableRow(validationTable, row(s));
  const evaluations = runPaths(runDir).evaluations;
  for (const s of result.test) {
    appendTableRow(evaluations, {
      ...row(s), iter: last.iteration, kimg: (last.iteration * last.config.batch) / 1000, backend: backend ?? '',
      chosen_by: s.role === 'chosen' ? `validation (${relativeTo(runDir, path.join(dir, 'selection.json'))})`
        : at === undefined ? 'last checkpoint, run EMA and t_mid (no choice)' : `run EMA width and t_mid at iteration ${at} (no choice)`, ...s.metrics,
    });
  }
  const record = path.join(dir, 'selection.json');
  const summary = (s: SelectionResult['validation'][number] | null) => (s ? { ...row(s), what: describeCandidate(s.candidate) } : null);
  fs.writeFileSync(record, `${JSON.stringify({
    rule: result.rule,
    iteration: last.iteration,
    chosen: { '1step': summary(result.chosen['1step']), '2step': summary(result.chosen['2step']) },
    test: result.test.map((s) => ({ role: s.role, ...summary(s), metrics: s.metrics })),
    validation: result.validation.map(row),
    machine: machineFacts(),
    backend: backend ?? null,
    writtenAt: new Date().toISOString(),
  }, null, 2)}\n`);
  return { validationTable, record, evaluations };
}

/**
 * The t_mid that `ect select` chose for 2-step sampling of this checkpoint, or null: one of the run's selection
 * records (selection/selection.json or selection/iter-<n>/selection.json beside the checkpoints/ or posthoc-ema/
 * folder the file is in) must have chosen this very checkpoint for 2 steps. A t_mid chosen for another EMA is not
 * this checkpoint's.
 */
export function chosenTwoStepMidT(checkpoint: string): number | null {
  const file = path.resolve(checkpoint);
  for (const runDir of [path.dirname(file), path.dirname(path.dirname(file))]) {
    for (const record of selectionRecords(runDir)) {
      const midT = chosenMidTIn(record, runDir, file);
      if (midT !== undefined) return midT;
    }
  }
  return null;
}

/** A run's selection records: the one of its end (selection/selection.json) and those of earlier points (selection/iter-*). */
function selectionRecords(runDir: string): string[] {
  const dir = path.join(runDir, SELECTION_DIR);
  if (!fs.existsSync(dir)) return [];
  const points = fs.readdirSync(dir).filter((name) => /^iter-\d+$/.test(name)).sort().map((name) => path.join(dir, name, 'selection.json'));
  return [path.join(dir, 'selection.json'), ...points].filter((file) => fs.existsSync(file));
}

/** The 2-step t_mid a selection record chose for checkpoint `file`; undefined when it chose another checkpoint. */
function chosenMidTIn(record: string, runDir: string, file: string): number | null | undefined {
  let parsed: { chosen?: { '2step'?: { checkpoint?: string; mid_t?: number | string } | null } };
  try {
    parsed = JSON.parse(fs.readFileSync(record, 'utf8'));
  } catch (err) {
    throw new Error(`${record}: not valid JSON (${(err as Error).message})`);
  }
  const chosen = parsed.chosen?.['2step'];
  if (!chosen?.checkpoint || path.resolve(runDir, chosen.checkpoint) !== file) return undefined;
  const midT = Number(chosen.mid_t);
  return Number.isFinite(midT) && midT > 0 ? midT : null;
}
