/** `ect demo` (npm start): pretrain a tiny Fashion-MNIST teacher, ECT-tune it, write grids and metrics. Re-running resumes. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunConfig } from '../lib/config/types';
import { parseMetricColumn } from '../lib/metrics/columns';
import { PASSES_PER_IMAGE } from '../lib/nn/flops';
import { secondsPerIteration } from '../lib/train/estimate';
import { ensureRun, plannedRunConfig, runDirOf, runStatus, startBackend, type RunSpec } from '../lib/train/launch';
import { readMetrics } from '../lib/train/metrics-log';
import { checkOutputFolder } from '../lib/output-paths';
import { commandLineHooks } from './progress';
import { watchStopRequests } from './stop-requests';

export interface DemoFlags { out: string; teacherIters?: number; tuneIters?: number; evalN: number; backend?: string; progress: boolean }

const TEACHER_PRESET = 'fmnist-edm-tiny';
const TUNE_PRESET = 'fmnist-ect-tiny';

/** The demo's two runs: a tiny teacher, and its ECT run evaluated once at the end of tuning. */
export function demoRuns(flags: DemoFlags): { teacher: RunSpec; student: RunSpec } {
  const teacherDir = path.resolve(flags.out, 'teacher');
  const common = { backend: flags.backend };
  // evaluate once, at the end of tuning (an interval longer than the run), against the 10k test images (a faster first run)
  const evaluation = flags.evalN > 0 ? { evalEvery: 1e9, evalN: flags.evalN, evalSplit: 'test' as const } : {};
  return {
    teacher: { kind: 'pretrain', flags: { ...common, config: TEACHER_PRESET, out: teacherDir, iters: flags.teacherIters } },
    student: { kind: 'tune', flags: { ...common, config: TUNE_PRESET, out: path.resolve(flags.out, 'ect'), iters: flags.tuneIters, init: teacherDir, ...evaluation } },
  };
}

/** Iterations a stage still has to run (0 when it finished). */
function remainingIterations(spec: RunSpec, cfg: RunConfig): number {
  const status = runStatus(runDirOf(spec), cfg.iters);
  return status.state === 'finished' ? 0 : Math.max(0, cfg.iters - status.iteration);
}

/**
 * The demo's duration on this backend, from a few timed training steps of each stage's network: the
 * remaining iterations, plus the sample grids and the final evaluation as forward passes at the same speed.
 */
async function estimateMinutes(runs: { teacher: RunSpec; student: RunSpec }, evalN: number): Promise<number> {
  // the configs the presets and flags name (the student's network is the teacher's, trained or not)
  const teacherCfg = plannedRunConfig(runs.teacher);
  const tuneCfg = plannedRunConfig(runs.student);
  const teacherStep = await secondsPerIteration(teacherCfg);
  const tuneStep = await secondsPerIteration(tuneCfg);
  const forwardPerImage = tuneStep / tuneCfg.batch / PASSES_PER_IMAGE.ect;   // the same network in both stages
  const heunEvaluations = 2 * teacherCfg.edm.heunSteps - 1;
  const gridImages = 64;
  const forwards = gridImages * heunEvaluations + (gridImages + evalN) * (1 + 2);  // teacher grid; 1- and 2-step grids and evaluation
  const seconds = remainingIterations(runs.teacher, teacherCfg) * teacherStep + remainingIterations(runs.student, tuneCfg) * tuneStep + forwards * forwardPerImage;
  return seconds / 60;
}

/** The whole demo (each stage reused when it finished, resumed when it was interrupted); returns the two run directories. */
export async function runDemo(flags: DemoFlags, log: (line: string) => void = console.log): Promise<{ teacher: string; student: string }> {
  const started = Date.now();
  checkOutputFolder(flags.out, '--out');
  const runs = demoRuns(flags);
  const teacher = runDirOf(runs.teacher);
  const student = runDirOf(runs.student);
  // first lines: the backend this runs on and how long that will take here
  const backend = await startBackend(flags.backend, log);
  const minutes = await estimateMinutes(runs, flags.evalN);
  log(`demo: about ${minutes < 10 ? minutes.toFixed(1) : Math.round(minutes)} min on the ${backend.name} backend here (timed from a few training steps)` +
    (backend.name === 'onednn' || backend.name.startsWith('tensorflow') ? '' : '; the oneDNN backend is several times faster: see the setup lines above'));
  const stop = watchStopRequests(log);
  const hooks = commandLineHooks(flags.progress, log, stop);
  const stopped = () => {
    log('demo: stopped; run it again to continue where it stopped');
    if (stop.reason) process.exitCode = stop.reason.exitCode;
    return { teacher, student };
  };
  try {
    log(`demo: 1) EDM pretraining of a tiny teacher -> ${teacher}`);
    if ((await ensureRun(runs.teacher, hooks)).stopped || stop.reason) return stopped();
    log(`demo: 2) ECT tuning of that teacher -> ${student}`);
    if ((await ensureRun(runs.student, hooks)).stopped) return stopped();
  } finally {
    stop.close();
  }

  const grids = fs.existsSync(path.join(student, 'samples')) ? fs.readdirSync(path.join(student, 'samples')).filter((f) => f.startsWith('final')) : [];
  const { rows } = readMetrics(path.join(student, 'metrics.csv'));
  const last = rows[rows.length - 1] ?? {};
  const metrics = Object.entries(last).filter(([k, v]) => v !== '' && parseMetricColumn(k) !== null);
  log('');
  log(`demo finished in ${((Date.now() - started) / 60000).toFixed(1)} min`);
  log(`  teacher grid (Heun, 35 evaluations): ${path.join(teacher, 'samples', 'final-heun.png')}`);
  for (const g of grids) log(`  ECT grid: ${path.join(student, 'samples', g)}`);
  log(`  metrics: ${path.join(teacher, 'metrics.csv')}, ${path.join(student, 'metrics.csv')}`);
  if (metrics.length) log(`  last row (fd_fmnist etc.: our Fashion-MNIST classifier's features, against the 10k test images; not FID): ${metrics.map(([k, v]) => `${k}=${v}`).join('  ')}`);
  return { teacher, student };
}
