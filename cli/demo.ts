/**
 * `ect demo` (npm start): ECT-tune the shipped Fashion-MNIST teacher (data/teachers/fmnist-edm-base), then write the
 * teacher's Heun grid and the tuned model's 1- and 2-step grids from the same noise, side by side, and its
 * fd_fmnist. Re-running reuses a finished tuning run and resumes an interrupted one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunConfig } from '../lib/config/types';
import { parseMetricColumn } from '../lib/metrics/columns';
import { PASSES_PER_IMAGE } from '../lib/nn/flops';
import { COMPARISON_GRID, writeComparisonGrids } from '../lib/grids';
import { secondsPerIteration } from '../lib/train/estimate';
import { ensureRun, plannedRunConfig, runDirOf, type RunSpec } from '../lib/train/launch';
import { runStatus } from '../lib/runs/status';
import { startBackend } from '../lib/backend/select';
import { readMetrics } from '../lib/train/metrics-log';
import { runPaths } from '../lib/runs/folder';
import { resolveInitTarget, shippedTeachers } from '../lib/teachers/shipped';
import { checkOutputFolder } from '../lib/output-paths';
import { commandLineHooks } from './progress';
import { watchStopRequests } from './stop-requests';

export interface DemoFlags { out: string; teacher: string; tuneIters?: number; evalN: number; backend?: string; progress: boolean }

/** The shipped teacher the demo tunes by default, and the preset it tunes with (the recipe study's choice). */
export const DEMO_TEACHER = 'fmnist-edm-base';
const TUNE_PRESET = 'fmnist-ect-base';
/** Tuning length of the demo: 16 kimg (250 iterations of 64), about 3-4 minutes on 2 cores with oneDNN. */
export const DEMO_TUNE_ITERS = 250;
/** The preset's EMA (0.995 per step) would still weigh the teacher by 0.995^250 = 0.29 after the demo's 250 steps: 0.99 for the short run. */
const DEMO_SET = ['ema.beta=0.99'];

/** The teacher folder `--teacher` names (a shipped teacher or a run folder), or an error listing the shipped ones. */
export function demoTeacherDir(teacher: string): string {
  const dir = resolveInitTarget(teacher);
  if (!fs.existsSync(dir)) {
    const names = shippedTeachers();
    throw new Error(`--teacher ${teacher}: neither a run folder nor a shipped teacher (shipped in data/teachers/: ${names.join(', ') || 'none; this checkout lacks data/teachers'})`);
  }
  return dir;
}

/** The demo's run: ECT tuning of the teacher, evaluated once at the end against the 10k test images. */
export function demoRuns(flags: DemoFlags): { teacher: string; student: RunSpec } {
  const teacher = demoTeacherDir(flags.teacher);
  // evaluate once, at the end of tuning (an interval longer than the run), against the 10k test images
  const evaluation = flags.evalN > 0 ? { evalEvery: 1e9, evalN: flags.evalN, evalSplit: 'test' as const } : { evalEvery: 0 };
  return {
    teacher,
    student: { kind: 'tune', flags: { backend: flags.backend, config: TUNE_PRESET, out: path.resolve(flags.out, 'ect'), iters: flags.tuneIters ?? DEMO_TUNE_ITERS, init: teacher, sampleEvery: 0, set: DEMO_SET, ...evaluation } },
  };
}

/** Iterations a stage still has to run (0 when it finished). */
function remainingIterations(spec: RunSpec, cfg: RunConfig): number {
  const status = runStatus(runDirOf(spec), cfg.iters);
  return status.state === 'finished' ? 0 : Math.max(0, cfg.iters - status.iteration);
}

/**
 * The demo's duration on this backend, from a few timed training steps of the tuning run's network: the remaining
 * iterations, plus the grids (the teacher's Heun grid, 1- and 2-step grids) and the final evaluation as forward
 * passes at the same speed.
 */
async function estimateMinutes(student: RunSpec, evalN: number): Promise<number> {
  const tuneCfg = plannedRunConfig(student);
  const tuneStep = await secondsPerIteration({ ...tuneCfg, init: undefined });
  const forwardPerImage = tuneStep / tuneCfg.batch / PASSES_PER_IMAGE.ect;
  const heunEvaluations = 2 * tuneCfg.edm.heunSteps - 1;
  const forwards = COMPARISON_GRID.images * heunEvaluations + (COMPARISON_GRID.images + evalN) * (1 + 2);
  return (remainingIterations(student, tuneCfg) * tuneStep + forwards * forwardPerImage) / 60;
}

/** The whole demo (a finished tuning run reused, an interrupted one resumed); returns the teacher and the tuning run's folder. */
export async function runDemo(flags: DemoFlags, log: (line: string) => void = console.log): Promise<{ teacher: string; student: string; grids: string[] }> {
  const started = Date.now();
  checkOutputFolder(flags.out, '--out');
  const { teacher, student: studentSpec } = demoRuns(flags);
  const student = runDirOf(studentSpec);
  // first lines: the backend this runs on and how long that will take here
  const backend = await startBackend(flags.backend, log);
  const minutes = await estimateMinutes(studentSpec, flags.evalN);
  log(`demo: about ${minutes < 10 ? minutes.toFixed(1) : Math.round(minutes)} min on the ${backend.name} backend here (timed from a few training steps)` +
    (backend.name === 'onednn' || backend.name.startsWith('tensorflow') ? '' : '; the oneDNN backend is several times faster: see the setup lines above'));
  const stop = watchStopRequests(log);
  const hooks = commandLineHooks(flags.progress, log, stop);
  try {
    log(`demo: 1) ECT tuning of the teacher ${path.relative(process.cwd(), teacher) || teacher} -> ${student}`);
    if ((await ensureRun(studentSpec, hooks)).stopped || stop.reason) {
      log('demo: stopped; run it again to continue where it stopped');
      if (stop.reason) process.exitCode = stop.reason.exitCode;
      return { teacher, student, grids: [] };
    }
  } finally {
    stop.close();
  }
  log('demo: 2) grids of the teacher (Heun, 35 network evaluations) and of the tuned model (1 and 2 steps), from the same noise');
  const grids = await writeComparisonGrids(teacher, student, path.join(flags.out, 'grids'));
  const { rows } = readMetrics(runPaths(student).metrics);
  const last = rows[rows.length - 1] ?? {};
  const metrics = Object.entries(last).filter(([k, v]) => v !== '' && parseMetricColumn(k) !== null && parseMetricColumn(k)!.metric === 'fd');
  log('');
  log(`demo finished in ${((Date.now() - started) / 60000).toFixed(1)} min`);
  log(`  teacher | 1 step | 2 steps: ${grids[0]}`);
  for (const g of grids.slice(1)) log(`  ${path.basename(g, '.png').padEnd(14)} ${g}`);
  log(`  metrics: ${runPaths(student).metrics}`);
  if (metrics.length) {
    log(`  ${metrics.map(([k, v]) => `${k} = ${Number(v).toPrecision(4)}`).join(', ')} (${flags.evalN} samples against the 10k test images; fd_fmnist uses our Fashion-MNIST classifier's features, it is not FID)`);
  }
  return { teacher, student, grids };
}
