/**
 * The local executor: a sweep's runs one after another on this machine, in stage order, through the launcher's
 * ensureRun (finished runs reused, interrupted ones resumed). A run whose teacher did not finish is skipped; a
 * failed run does not stop the others; a stopped run (Ctrl-C) stops the sweep.
 */
import * as path from 'node:path';
import { writeEnvironment } from '../env';
import { ensureRun, trainRun, type RunHooks } from '../train/launch';
import { runCommand, runSpecOf, runStatusOf, type SweepPlan, type SweepRun } from './plan';

/** What became of one run of a sweep. */
export interface SweepRunResult {
  run: SweepRun;
  outcome: 'trained' | 'reused' | 'stopped' | 'failed' | 'skipped' | 'not started';
  iteration?: number;
  reason?: string;           // why it failed or was skipped
}

/** Options of the local executor. */
export interface LocalSweepOptions {
  log?: (line: string) => void;
  hooks?: (run: SweepRun) => RunHooks;   // a run's progress display and stop requests (the CLI's)
  train?: typeof trainRun;               // the launcher's trainRun; tests pass a stand-in
}

/** Trains a run unless it finished; then its folder records the machine (environment.md), as notebook runs do. */
export async function ensureSweepRun(run: SweepRun, hooks: RunHooks, train = trainRun): Promise<SweepRunResult> {
  const outcome = await ensureRun(runSpecOf(run), hooks, train);
  if (!outcome.reused) writeEnvironment(path.dirname(run.flags.out));
  return { run, outcome: outcome.reused ? 'reused' : outcome.stopped ? 'stopped' : 'trained', iteration: outcome.iteration };
}

/** Runs a planned sweep here, run after run; returns what became of each. */
export async function runSweepLocal(plan: SweepPlan, opts: LocalSweepOptions = {}): Promise<SweepRunResult[]> {
  const log = opts.log ?? (() => {});
  const results = new Map<string, SweepRunResult>();
  let stopped = false;
  for (const run of plan.runs) {
    if (stopped) {
      results.set(run.flags.out, { run, outcome: 'not started', reason: 'the sweep was stopped' });
      continue;
    }
    const unfinished = run.after.filter((dir) => runStatusOf(plan.runs.find((r) => r.flags.out === dir)!).state !== 'finished');
    if (unfinished.length) {
      const names = unfinished.map((dir) => `${results.get(dir)?.run.stage ?? '?'}/${path.basename(dir)} (${results.get(dir)?.outcome ?? 'not run'})`);
      results.set(run.flags.out, { run, outcome: 'skipped', reason: `its init did not finish: ${names.join(', ')}` });
      log(`[${run.index + 1}/${plan.runs.length}] ${run.stage}/${run.name}: skipped, its init did not finish (${names.join(', ')})`);
      continue;
    }
    log(`[${run.index + 1}/${plan.runs.length}] ${run.stage}/${run.name}: ${runCommand(run)}`);
    try {
      const result = await ensureSweepRun(run, opts.hooks?.(run) ?? { log }, opts.train);
      results.set(run.flags.out, result);
      stopped = result.outcome === 'stopped';
    } catch (err) {
      results.set(run.flags.out, { run, outcome: 'failed', reason: (err as Error).message });
      log(`[${run.index + 1}/${plan.runs.length}] ${run.stage}/${run.name}: failed: ${(err as Error).message}`);
    }
  }
  return plan.runs.map((run) => results.get(run.flags.out)!);
}
