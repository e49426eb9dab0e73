/** `ect demo` (npm start): pretrain a tiny Fashion-MNIST teacher, ECT-tune it, write grids and metrics. Re-running resumes. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunConfig, RunKind } from '../lib/config/types';
import { resolveRunConfig } from '../lib/config/resolve';
import type { BackendInfo } from '../lib/backend/select';
import { PASSES_PER_IMAGE } from '../lib/nn/flops';
import { secondsPerIteration } from '../lib/train/estimate';
import { latestCheckpoint } from '../lib/train/checkpoint';
import { CHECKPOINT_DIR } from '../lib/train/run';
import { readMetrics } from '../lib/train/metrics-log';

export interface DemoFlags { out: string; teacherIters?: number; tuneIters?: number; evalN: number; backend?: string; progress: boolean }

type TrainFn = (kind: RunKind, flags: never, log?: (line: string) => void) => Promise<string>;

const TEACHER_PRESET = 'fmnist-edm-tiny';
const TUNE_PRESET = 'fmnist-ect-tiny';

/** Iteration of the newest checkpoint in a run directory (0 when there is none). */
function checkpointIteration(runDir: string): number {
  const file = latestCheckpoint(path.join(runDir, CHECKPOINT_DIR));
  const match = file ? /ckpt-(\d+)\.ckpt$/.exec(file) : null;
  return match ? Number(match[1]) : 0;
}

/** Iterations a stage still has to run (0 when it finished). */
function remainingIterations(runDir: string, cfg: RunConfig): number {
  return Math.max(0, cfg.iters - checkpointIteration(runDir));
}

/**
 * The demo's duration on this backend, from a few timed training steps of each stage's network: the
 * remaining iterations, plus the sample grids and the final evaluation as forward passes at the same speed.
 */
async function estimateMinutes(teacherCfg: RunConfig, tuneCfg: RunConfig, teacherDir: string, studentDir: string, evalN: number): Promise<number> {
  const teacherStep = await secondsPerIteration(teacherCfg);
  const tuneStep = await secondsPerIteration(tuneCfg);
  const forwardPerImage = tuneStep / tuneCfg.batch / PASSES_PER_IMAGE.ect;   // the same network in both stages
  const heunEvaluations = 2 * teacherCfg.edm.heunSteps - 1;
  const gridImages = 64;
  const forwards = gridImages * heunEvaluations + (gridImages + evalN) * (1 + 2);  // teacher grid; 1- and 2-step grids and evaluation
  const seconds = remainingIterations(teacherDir, teacherCfg) * teacherStep + remainingIterations(studentDir, tuneCfg) * tuneStep + forwards * forwardPerImage;
  return seconds / 60;
}

/** Runs one stage of the demo unless it already finished; resumes it when it was interrupted. */
async function stage(kind: RunKind, preset: string, runDir: string, iters: number | undefined, extra: Record<string, unknown>,
  flags: DemoFlags, train: TrainFn, log: (line: string) => void): Promise<void> {
  const done = checkpointIteration(runDir);
  const configFile = path.join(runDir, 'config.json');
  const target = iters ?? (fs.existsSync(configFile) ? (JSON.parse(fs.readFileSync(configFile, 'utf8')) as { iters: number }).iters : undefined);
  if (done > 0 && target !== undefined && done >= target) {
    log(`${kind}: ${runDir} already finished (${done} iterations); delete it to start over`);
    return;
  }
  await train(kind, {
    config: preset, out: runDir, resume: done > 0, backend: flags.backend, progress: flags.progress, set: [],
    ...(iters !== undefined ? { iters } : {}), ...extra,
  } as never, log);
}

/** The whole demo; returns the two run directories. */
export async function runDemo(flags: DemoFlags, train: TrainFn, startBackend: (choice: string | undefined) => Promise<BackendInfo>,
  log: (line: string) => void = console.log): Promise<{ teacher: string; student: string }> {
  const started = Date.now();
  const teacher = path.resolve(flags.out, 'teacher');
  const student = path.resolve(flags.out, 'ect');
  // first lines: the backend this runs on and how long that will take here
  const backend = await startBackend(flags.backend);
  const teacherCfg = resolveRunConfig('pretrain', TEACHER_PRESET, flags.teacherIters !== undefined ? [{ iters: flags.teacherIters }] : []);
  const tuneCfg = resolveRunConfig('tune', TUNE_PRESET, flags.tuneIters !== undefined ? [{ iters: flags.tuneIters }] : []);
  const minutes = await estimateMinutes(teacherCfg, tuneCfg, teacher, student, flags.evalN);
  log(`demo: about ${minutes < 10 ? minutes.toFixed(1) : Math.round(minutes)} min on the ${backend.name} backend here (timed from a few training steps)` +
    (backend.name === 'onednn' || backend.name.startsWith('tensorflow') ? '' : '; the oneDNN backend is several times faster: see the setup lines above'));
  log(`demo: 1) EDM pretraining of a tiny teacher -> ${teacher}`);
  await stage('pretrain', TEACHER_PRESET, teacher, flags.teacherIters, {}, flags, train, log);
  log(`demo: 2) ECT tuning of that teacher -> ${student}`);
  // evaluate once, at the end of tuning (an interval longer than the run)
  const evaluation = flags.evalN > 0 ? { evalEvery: 1e9, evalN: flags.evalN, evalReferenceSplit: 'test' } : {};
  await stage('tune', TUNE_PRESET, student, flags.tuneIters, { init: teacher, ...evaluation }, flags, train, log);

  const grids = fs.existsSync(path.join(student, 'samples')) ? fs.readdirSync(path.join(student, 'samples')).filter((f) => f.startsWith('final')) : [];
  const { rows } = readMetrics(path.join(student, 'metrics.csv'));
  const last = rows[rows.length - 1] ?? {};
  const metrics = Object.entries(last).filter(([k, v]) => v !== '' && !['iter', 'kimg', 'lr', 'stage', 'img_per_s', 'wall_s'].includes(k));
  log('');
  log(`demo finished in ${((Date.now() - started) / 60000).toFixed(1)} min`);
  log(`  teacher grid (Heun, 35 evaluations): ${path.join(teacher, 'samples', 'final-heun.png')}`);
  for (const g of grids) log(`  ECT grid: ${path.join(student, 'samples', g)}`);
  log(`  metrics: ${path.join(teacher, 'metrics.csv')}, ${path.join(student, 'metrics.csv')}`);
  if (metrics.length) log(`  last row (fd_fmnist etc.: our Fashion-MNIST classifier's features, against the 10k test images; not FID): ${metrics.map(([k, v]) => `${k}=${v}`).join('  ')}`);
  return { teacher, student };
}
