/**
 * Where each run of a sweep stands: its folder's state (new, interrupted, finished) and iteration, its last
 * metrics, and, where the sweep was submitted to Slurm and squeue is here, its newest task's state.
 */
import { parseMetricColumn } from '../metrics/columns';
import { readMetrics } from '../train/metrics-log';
import type { RunStatus } from '../runs/status';
import { runPaths } from '../runs/folder';
import { runLockHolder } from '../runs/lock';
import { runStatusOf, type SweepPlan, type SweepRun } from './plan';
import { slurmTaskStates, type SlurmOptions, type TaskState } from './slurm';

/** One run's status. */
export interface SweepRunStatus {
  run: SweepRun;
  state: RunStatus['state'];
  iteration: number;                           // iterations done (newest checkpoint, or the last logged row when finished)
  iters: number;                               // iterations the run trains
  loss: number | null;                         // the last logged training loss
  metrics: Record<string, { value: number; iter: number }>;  // the last value of each sample-quality column
  slurm?: TaskState;                           // its newest Slurm task, when submitted
  training?: string;                           // the process training it now (its folder's lock): 'pid 1234', or 'pid 1234 on <host>'
}

/** The sweep's status, run by run; `slurm` says why runs have no Slurm state when squeue could not tell ('available' otherwise). */
export interface SweepStatus { runs: SweepRunStatus[]; slurm: string }

/** The last training loss and the last value of each metric column of a run folder's metrics.csv. */
function lastMetrics(dir: string): Pick<SweepRunStatus, 'loss' | 'metrics'> & { iter: number } {
  const { header, rows } = readMetrics(runPaths(dir).metrics);
  const metrics: SweepRunStatus['metrics'] = {};
  for (const column of header.filter((name) => parseMetricColumn(name) !== null)) {
    const row = [...rows].reverse().find((r) => (r[column] ?? '').trim() !== '');
    if (row) metrics[column] = { value: Number(row[column]), iter: Number(row.iter) };
  }
  // an evaluation's own row has no loss: the loss is the last row that logged one
  const logged = [...rows].reverse().find((r) => (r.loss ?? '').trim() !== '');
  const loss = logged ? Number(logged.loss) : null;
  const iter = rows.length ? Number(rows[rows.length - 1].iter) : 0;
  return { loss: loss === null || Number.isNaN(loss) ? null : loss, metrics, iter: Number.isFinite(iter) ? iter : 0 };
}

/** Reads each run's folder, and the Slurm queue (squeue, sacct) when the sweep was submitted; the folders alone when Slurm cannot answer. */
export function sweepStatus(plan: SweepPlan, opts: SlurmOptions = {}): SweepStatus {
  let tasks: Map<string, TaskState> | null;
  let slurm = 'available';
  try {
    tasks = slurmTaskStates(plan, opts);
    if (tasks === null) slurm = 'squeue not found here';
  } catch (err) {
    tasks = null;
    slurm = (err as Error).message;
  }
  const runs = plan.runs.map((run): SweepRunStatus => {
    const status = runStatusOf(run);
    const holder = status.state === 'finished' ? null : runLockHolder(run.flags.out);
    const last = lastMetrics(run.flags.out);
    // a run training now: its last logged iteration is further on than its newest checkpoint
    const iteration = holder ? Math.max(status.iteration, last.iter) : status.iteration;
    return { run, state: status.state, iteration, iters: run.iters, loss: last.loss, metrics: last.metrics, slurm: tasks?.get(run.flags.out),
      ...(holder ? { training: `pid ${holder.pid}${holder.otherHost ? ` on ${holder.host}` : ''}` } : {}) };
  });
  return { runs, slurm };
}
