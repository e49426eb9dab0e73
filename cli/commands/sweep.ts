/** The `ect sweep` commands: plan, run (here or as Slurm array jobs) and follow a grid of runs given as a JSON spec (lib/sweep). */
import * as path from 'node:path';
import { Command, Option } from 'commander';
import {
  planSweep, runCommand, runStatusOf, runSweepLocal, runSweepTask, submitSweep, sweepStatus, SWEEP_EXECUTORS,
  type SweepExecutor, type SweepPlan, type SweepRunStatus,
} from '../../lib/sweep';
import { parseMetricColumn } from '../../lib/metrics/columns';
import { integer, positiveInteger } from '../options';
import { commandLineHooks } from '../progress';
import { watchStopRequests } from '../stop-requests';

/** A folder as shown to the user: relative to the current directory when under it. */
function shown(dir: string): string {
  const relative = path.relative(process.cwd(), dir);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : dir;
}

/** Left-aligned columns, two spaces apart. */
function textTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  return [header, ...rows].map((cells) => cells.map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd());
}

/** The plan as lines: per stage, each run's name, state and exact command. */
export function planLines(plan: SweepPlan): string[] {
  const lines = [`sweep ${plan.name}: ${plan.runs.length} runs in ${plan.stages.length} stage${plan.stages.length > 1 ? 's' : ''} -> ${shown(plan.out)}${plan.spec.file ? ` (spec ${shown(plan.spec.file)})` : ''}`];
  for (const stage of plan.stages) {
    const runs = stage.runs.map((i) => plan.runs[i]);
    lines.push(`stage ${stage.name}: ${runs.length} ${stage.kind} run${runs.length > 1 ? 's' : ''} in ${shown(path.join(plan.out, stage.folder))}`);
    lines.push(...textTable(['  run', 'state', 'command'], runs.map((run) => [`  ${run.name}`, runStatusOf(run).state, runCommand(run)])));
  }
  return lines;
}

function formatNumber(value: number | null): string {
  return value === null || !Number.isFinite(value) ? '-' : String(Number(value.toPrecision(4)));
}

/** The status as lines: a row per run with its state, iteration, last loss and Frechet distances, and its Slurm task. */
export function statusLines(plan: SweepPlan, runs: SweepRunStatus[], slurm: string): string[] {
  // the Frechet distances (fd_*, fid_*) only: every metric is in --json
  const metricNames = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].filter((name) => parseMetricColumn(name)?.metric === 'fd').sort();
  const withSlurm = runs.some((r) => r.slurm);
  const header = ['stage', 'run', 'state', 'iter', 'loss', ...metricNames, ...(withSlurm ? ['slurm task'] : [])];
  const rows = runs.map((r) => [
    r.run.stage, r.run.name, r.training ? `training (${r.training})` : r.state, `${r.iteration}/${r.iters}`, formatNumber(r.loss),
    ...metricNames.map((m) => (r.metrics[m] ? `${formatNumber(r.metrics[m].value)} @${r.metrics[m].iter}` : '-')),
    ...(withSlurm ? [r.slurm ? `${r.slurm.task} ${r.slurm.state}${r.slurm.reason ? ` (${r.slurm.reason})` : ''}` : '-'] : []),
  ]);
  const training = runs.filter((r) => r.training).length;
  const counts = [...(training ? [`${training} training`] : []),
    ...['finished', 'interrupted', 'new'].map((state) => `${runs.filter((r) => r.state === state && !r.training).length} ${state}`)].join(', ');
  return [`sweep ${plan.name} in ${shown(plan.out)}: ${counts}${slurm === 'available' ? '' : ` (no Slurm states: ${slurm})`}`, ...textTable(header, rows)];
}

interface PlanFlags { out?: string; json?: boolean }
interface RunFlags { out?: string; executor: SweepExecutor; partition?: string; account?: string; maxParallel?: number; dryRun?: boolean; progress: boolean }

/** Registers `ect sweep plan|run|status|task`. */
export function registerSweepCommands(program: Command): void {
  const sweep = program.command('sweep')
    .description('grids of runs from a JSON spec (configs/sweeps/): plan them, run them here or as Slurm array jobs, follow them');
  const specArgument = '<spec>';
  const specHelp = 'sweep spec: a JSON file, or a name in configs/sweeps/ (e.g. scaling, ablations)';
  const outOption = () => new Option('-o, --out <dir>', "folder the sweep's runs land in (default: the spec's out, else runs/<sweep name>)");

  sweep.command('plan').description('list the runs of a sweep: stable names, state and the exact ect command of each (checks every run\'s config)')
    .argument(specArgument, specHelp)
    .addOption(outOption())
    .option('--json', 'the plan as JSON')
    .action((spec: string, flags: PlanFlags) => {
      const plan = planSweep(spec, { out: flags.out });
      if (flags.json) {
        console.log(JSON.stringify(plan.runs.map((run) => ({ index: run.index, stage: run.stage, name: run.name, dir: run.flags.out, kind: run.kind,
          state: runStatusOf(run).state, after: run.after, command: runCommand(run, null), resources: run.resources })), null, 2));
      } else {
        for (const line of planLines(plan)) console.log(line);
      }
    });

  sweep.command('run').description('run a sweep: here one run after another, or as Slurm array jobs (one task per run, a tuning run after its teacher); finished runs are reused, interrupted ones resumed')
    .argument(specArgument, specHelp)
    .addOption(outOption())
    .addOption(new Option('--executor <name>', 'where the runs run').choices([...SWEEP_EXECUTORS]).default('local'))
    .option('--partition <name>', 'slurm: the partition to submit to (sbatch --partition)')
    .option('--account <name>', 'slurm: the account to charge (sbatch --account)')
    .option('--max-parallel <n>', 'slurm: at most N tasks of each array at once (--array=...%N)', positiveInteger('--max-parallel'))
    .option('--dry-run', 'slurm: write the sbatch scripts and show the sbatch commands, submit nothing')
    .option('--no-progress', 'local: plain log lines instead of progress bars')
    .action(async (spec: string, flags: RunFlags) => {
      if (flags.executor !== 'slurm') {
        const slurmOnly = (['partition', 'account', 'maxParallel', 'dryRun'] as const).filter((key) => flags[key] !== undefined);
        if (slurmOnly.length) throw new Error(`${slurmOnly.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')}: only with --executor slurm`);
      }
      const plan = planSweep(spec, { out: flags.out });
      for (const line of planLines(plan)) console.log(line);
      if (flags.executor === 'slurm') {
        const result = submitSweep(plan, { partition: flags.partition, account: flags.account, maxParallel: flags.maxParallel, dryRun: flags.dryRun, log: console.log });
        if (result.submissions.length) console.log(`follow it with: ect sweep status ${spec}${flags.out ? ` --out ${flags.out}` : ''} (logs in ${shown(path.join(plan.folder, 'logs'))})`);
        return;
      }
      // one listener for the whole sweep: a stop request ends the run in training (checkpointed) and the sweep
      const stop = watchStopRequests(console.log);
      try {
        const results = await runSweepLocal(plan, { log: console.log, hooks: () => commandLineHooks(flags.progress, console.log, stop) });
        const unfinished = results.filter((r) => r.outcome !== 'trained' && r.outcome !== 'reused');
        console.log(`sweep ${plan.name}: ${results.length - unfinished.length} of ${results.length} runs finished in ${shown(plan.out)}`);
        for (const r of unfinished) console.log(`  ${r.run.stage}/${r.run.name}: ${r.outcome}${r.reason ? `: ${r.reason}` : ''}`);
        if (unfinished.length) {
          console.log('run the same command again to continue: finished runs are reused, interrupted ones resume');
          process.exitCode = stop.reason?.exitCode ?? 1;
        }
      } finally {
        stop.close();
      }
    });

  sweep.command('status').description("each run's state, iteration and last metrics, from the run folders, and its Slurm task's state (squeue, sacct) when submitted")
    .argument(specArgument, specHelp)
    .addOption(outOption())
    .option('--json', 'the status as JSON')
    .action((spec: string, flags: PlanFlags) => {
      const plan = planSweep(spec, { out: flags.out });
      const status = sweepStatus(plan);
      if (flags.json) {
        console.log(JSON.stringify(status.runs.map(({ run, slurm, ...rest }) => ({
          stage: run.stage, name: run.name, dir: run.flags.out, ...rest,
          slurm: slurm ? { task: slurm.task, state: slurm.state, reason: slurm.reason, log: slurm.log } : null,
        })), null, 2));
      } else {
        for (const line of statusLines(plan, status.runs, status.slurm)) console.log(line);
      }
    });

  sweep.command('task').description('run one task of a submitted sweep (what each Slurm array task runs): its run is trained, resumed, or reused when finished')
    .argument('<manifest>', "the sweep's manifest-<hash>.json (written when it was submitted)")
    .argument('<index>', 'the run index ($SLURM_ARRAY_TASK_ID)', integer('<index>'))
    .action(async (manifest: string, index: number) => {
      // scancel and preemption send SIGTERM: the run checkpoints and the task ends with 143, to resume when requeued
      const stop = watchStopRequests(console.log);
      try {
        const result = await runSweepTask(manifest, index, commandLineHooks(false, console.log, stop));
        if (result.outcome === 'stopped') {
          console.log(`stopped at iteration ${result.iteration}; the run resumes from its newest checkpoint when the task runs again`);
          process.exitCode = stop.reason?.exitCode ?? 1;
        } else {
          console.log(`${result.run.stage}/${result.run.name}: ${result.outcome} (${result.iteration} iterations) in ${result.run.flags.out}`);
        }
      } finally {
        stop.close();
      }
    });
}
