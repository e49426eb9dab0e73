/**
 * One task of a submitted sweep (`ect sweep task <manifest> <index>`, what each Slurm array task runs): the run
 * of that index in the manifest, through ensureRun, after checking the runs it tunes from have finished.
 */
import * as path from 'node:path';
import type { RunHooks } from '../train/launch';
import { runStatus } from '../runs/status';
import { ensureSweepRun, type SweepRunResult } from './local';
import type { SweepRun } from './plan';
import { readManifest, SlurmError } from './slurm';

/** The run of a manifest's task index, as a planned run, and its command. */
export function manifestRun(manifestFile: string, index: number): { run: SweepRun; command: string } {
  const manifest = readManifest(manifestFile);
  const entry = manifest.runs.find((run) => run.index === index);
  if (!entry) throw new SlurmError(`${manifestFile}: no run with index ${index} (it has ${manifest.runs.length} runs)`);
  const { command, ...run } = entry;
  return { run: { ...run, values: {}, iters: 0, resources: {} }, command };
}

/** Runs a manifest's task: trains its run, resumes it, or reuses it when it finished. */
export async function runSweepTask(manifestFile: string, index: number, hooks: RunHooks): Promise<SweepRunResult> {
  const { run, command } = manifestRun(manifestFile, index);
  const log = hooks.log ?? (() => {});
  log(`sweep task ${index}: ${run.stage}/${run.name} (${run.kind})${process.env.SLURM_ARRAY_JOB_ID ? `, Slurm task ${process.env.SLURM_ARRAY_JOB_ID}_${process.env.SLURM_ARRAY_TASK_ID} (restarts: ${process.env.SLURM_RESTART_COUNT ?? 0})` : ''}`);
  log(`  ${command}`);
  const waiting = run.after.map((dir) => ({ dir, status: runStatus(dir) })).filter(({ status }) => status.state !== 'finished');
  if (waiting.length) {
    throw new SlurmError(`${run.stage}/${run.name} starts from runs that have not finished: `
      + `${waiting.map(({ dir, status }) => `${path.basename(dir)} (${status.state}, iteration ${status.iteration})`).join(', ')}`);
  }
  return ensureSweepRun(run, hooks);
}
