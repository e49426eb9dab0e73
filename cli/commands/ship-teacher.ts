/** The `ect ship-teacher` command: a pretraining run's EMA weights, config, metrics and measured quality as data/teachers/<name>/. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SingleBar } from 'cli-progress';
import { Command, Option } from 'commander';
import { BACKEND_CHOICES, initBackend } from '../../lib/backend/select';
import { runStatus } from '../../lib/runs/status';
import { startBackend } from '../../lib/backend/select';
import { writeEmaOnlyCheckpoint } from '../../lib/train/checkpoint';
import { runPaths, CHECKPOINT_DIR } from '../../lib/runs/folder';
import { resolveCheckpointFile } from '../../lib/runs/model';
import { SHIPPED_TEACHERS_DIR } from '../../lib/teachers/shipped';
import { DEFAULT_TEACHER_CHECK_N, DEFAULT_TEACHER_EVAL_N, shipTeacher, type ShippedTeacher } from '../../lib/teachers/ship';
import { TEACHER_FILE } from '../../lib/teachers/record';
import { positiveInteger } from '../options';

interface ShipTeacherFlags {
  run: string; name: string; out?: string; evalN: number; checkN: number; command?: string; commit?: string;
  cacheDir?: string; backend?: string; progress: boolean;
}

/** Progress of an evaluation: a bar on a terminal, else a line every tenth of the images. */
function evaluationProgress(interactive: boolean, log: (line: string) => void): { update(label: string, done: number, total: number): void; stop(): void } {
  let bar: SingleBar | null = null;
  let current = '';
  let nextTenth = 1;
  const stop = () => { bar?.stop(); bar = null; };
  return {
    update(label, done, total) {
      if (label !== current) {
        stop();
        current = label;
        nextTenth = 1;
        if (interactive) {
          bar = new SingleBar({ format: `${label} {bar} {value}/{total} | ETA {eta_formatted}`, hideCursor: true, stream: process.stderr });
          bar.start(total, 0);
        }
      }
      if (bar) bar.update(done);
      else if (done >= (nextTenth * total) / 10) {
        log(`${label}: ${done}/${total}`);
        while (done >= (nextTenth * total) / 10) nextTenth++;
      }
    },
    stop,
  };
}

/** Ships the teacher and prints what teacher.json records. */
export async function shipTeacherCommand(flags: ShipTeacherFlags, log: (line: string) => void = console.log): Promise<ShippedTeacher> {
  await startBackend(flags.backend, log);
  const progress = evaluationProgress(flags.progress && Boolean(process.stderr.isTTY), log);
  let shipped: ShippedTeacher;
  try {
    shipped = await shipTeacher({
      run: flags.run, name: flags.name, out: flags.out, evalN: flags.evalN, checkN: flags.checkN, command: flags.command, commit: flags.commit,
      cacheDir: flags.cacheDir,
      onInfo: (message) => { progress.stop(); log(message); },
      onEvalProgress: (label, done, total) => progress.update(label, done, total),
    });
  } finally {
    progress.stop();
  }
  const { record, dir } = shipped;
  const { headline, check } = record.evaluations;
  log(`shipped ${record.name} -> ${dir}`);
  log(`  from ${record.run}, iteration ${record.iteration} (${record.kimg} kimg), ${record.parameters.toLocaleString('en-US')} parameters, seed ${record.seed}`);
  log(`  trained by \`${record.training.command}\` at ${record.training.commit}, ${record.training.backend} on ${record.training.machine ? `${record.training.machine.cores} cores of ${record.training.machine.cpu}` : 'an unrecorded machine'}; ` +
    `${record.training.images.toLocaleString('en-US')} training images, ${record.training.flops.toExponential(2)} FLOPs`);
  for (const evaluation of [headline, check]) {
    log(`  ${evaluation.metric} ${evaluation.value.toPrecision(4)}: ${evaluation.n} images (${evaluation.networkEvaluations} network evaluations each, seed ${evaluation.seed}) ` +
      `against the ${evaluation.reference.images} ${evaluation.reference.split} images, ${evaluation.wallSeconds.toFixed(0)} s on ${evaluation.backend}`);
  }
  log(`  tune from it with \`ect tune --init ${record.name}\`${path.resolve(dir, '..') === SHIPPED_TEACHERS_DIR ? '' : ` (or --init ${dir}: only data/teachers/ is searched by name)`}; provenance in ${path.join(dir, TEACHER_FILE)}`);
  return shipped;
}

/** Adds `ect ship-teacher` to the program. */
export function registerShipTeacherCommand(program: Command): void {
  program.command('ship-teacher')
    .description('ship a pretraining run\'s newest checkpoint as a teacher: its EMA weights alone, config.json (no init), metrics.csv, the newest Heun grid and ' +
      `${TEACHER_FILE} (provenance, training cost, and the Heun fd measured on the shipped weights against the test images: fd_fmnist on Fashion-MNIST, not FID); \`ect tune --init <name>\` then finds it`)
    .requiredOption('--run <dir>', 'the pretraining run folder (config.json, metrics.csv, checkpoints/); its newest checkpoint is shipped')
    .requiredOption('--name <name>', 'the teacher\'s name: its folder under --out, and what `ect tune --init <name>` takes')
    .option('--out <dir>', 'the teachers\' folder; only data/teachers is searched by name (default data/teachers)')
    .option('--eval-n <n>', 'generated images of the headline evaluation: Heun (2 edm.heunSteps - 1 network evaluations) fd against the test images', positiveInteger('--eval-n'), DEFAULT_TEACHER_EVAL_N)
    .option('--check-n <n>', 'generated images of the check evaluation on the same noise, which the quality test (test/ship-teacher.test.ts) repeats', positiveInteger('--check-n'), DEFAULT_TEACHER_CHECK_N)
    .option('--command <text>', 'the command that made the run, when its config.json does not record it (required then)')
    .option('--commit <sha>', 'the workbench commit the run was made at, when its config.json does not record it (required then)')
    .option('--cache-dir <dir>', 'reference statistics cache (default $ECT_CACHE_DIR or ~/.cache/ect-workbench/reference-stats)')
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend of the evaluations (also ECT_BACKEND); recorded with them').choices([...BACKEND_CHOICES]))
    .option('--no-progress', 'a line every tenth of an evaluation instead of a progress bar')
    .action(async (flags: ShipTeacherFlags) => { await shipTeacherCommand(flags); });
}

/**
 * `ect trim-checkpoint`: a finished run's newest checkpoint reduced to its EMA weights, in place of the original
 * (or beside it with --out), to commit a run's weights at a quarter of the size. Returns the file written.
 */
export async function trimCheckpointCommand(flags: { checkpoint: string; out?: string }, log: (line: string) => void = console.log): Promise<string> {
  await initBackend('cpu');  // the tensors are only read and written again
  const source = resolveCheckpointFile(flags.checkpoint);
  if (flags.out === undefined) refuseUnfinishedRun(source);
  const target = flags.out ?? source;
  const before = fs.statSync(source).size;
  const temporary = `${target}.tmp-${process.pid}`;
  writeEmaOnlyCheckpoint(source, temporary);
  fs.renameSync(temporary, target);
  log(`wrote ${target}: the EMA weights of ${source} alone (${(fs.statSync(target).size / 1e6).toFixed(1)} MB, was ${(before / 1e6).toFixed(1)} MB); ` +
    'it samples, evaluates, exports and starts tuning runs like the original, but training cannot resume from it');
  return target;
}

/**
 * Refuses to trim a checkpoint of an unfinished run in place: --resume needs the optimizer state and the
 * data order the trimmed file drops.
 */
function refuseUnfinishedRun(checkpoint: string): void {
  const checkpointsDir = path.dirname(checkpoint);
  if (path.basename(checkpointsDir) !== CHECKPOINT_DIR) return;  // a loose file: no run to resume
  const runDir = path.dirname(checkpointsDir);
  if (!fs.existsSync(runPaths(runDir).config)) return;
  const status = runStatus(runDir);
  if (status.state === 'finished') return;
  throw new Error(`${runDir}: the run is not finished (its newest checkpoint is at iteration ${status.iteration}), ` +
    `and trimming ${checkpoint} in place would leave --resume nothing to continue from. ` +
    `Finish the run first (--resume --out ${runDir}), or write the trimmed copy elsewhere with --out <file>`);
}

/** Adds `trim-checkpoint` to the `ect` program. */
export function registerTrimCheckpointCommand(program: Command): void {
  program.command('trim-checkpoint')
    .description('keep only the EMA weights of a checkpoint (a quarter of the size; for committing a finished run): it still samples, evaluates, exports and starts tuning, but cannot resume training')
    .requiredOption('--checkpoint <path>', 'checkpoint file, or a run directory (its newest checkpoint)')
    .option('-o, --out <file>', 'write here instead of replacing the checkpoint (needed for a run that is not finished: in place, --resume could not continue it)')
    .action(async (flags: { checkpoint: string; out?: string }) => { await trimCheckpointCommand(flags); });
}
