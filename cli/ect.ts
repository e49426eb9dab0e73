/** The `ect` command line: pretrain, tune, sample, demo (and the metrics commands). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { DATASET_NAMES, type RunKind } from '../lib/config/types';
import { BACKEND_CHOICES } from '../lib/backend/select';
import { startBackend, trainRun, type RunFlags } from '../lib/train/launch';
import { disposeModel, loadRunModel, samplerModelOf } from '../lib/train/run';
import { DEFAULT_SAMPLE_SEED, generateImages, parseSampleSteps } from '../lib/sample';
import { imagesToGridPng } from '../lib/image/png';
import { commandLineHooks } from './progress';
import { registerMetricsCommands } from './commands/metrics';
import { runDemo } from './demo';
import { integer, positiveNumber } from './options';

const BACKENDS = [...BACKEND_CHOICES];

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Options shared by pretrain and tune: the run's flags (lib/train/launch.ts RunFlags) and the display's. */
export interface TrainFlags extends RunFlags {
  progress: boolean;
}

function addTrainingOptions(cmd: Command, kind: RunKind): Command {
  return cmd
    .option('-c, --config <preset>', `preset: a JSON file, or a name in configs/ (e.g. ${kind === 'pretrain' ? 'fmnist-edm-tiny, cifar10-edm' : 'fmnist-ect-tiny, cifar10-ect, cifar10-ect-1hour'}); defaults are the paper's CIFAR-10 settings`)
    .addOption(new Option('--data <name>', 'dataset').choices([...DATASET_NAMES]))
    .option('--data-dir <dir>', 'folder holding the dataset files (default: data/cifar-10-batches-bin, data/fashion-mnist or /usr/share/datasets/fashion-mnist)')
    .option('--data-limit <n>', 'train on the first N images only (0: all)', integer('--data-limit'))
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND); auto picks the fastest that loads').choices(BACKENDS))
    .option('--seed <n>', 'seed of initialisation, batches, noise and dropout', integer('--seed'))
    .option('--iters <n>', 'total training iterations', integer('--iters'))
    .option('--batch <n>', 'images per iteration', integer('--batch'))
    .option('--lr <x>', 'learning rate', positiveNumber('--lr'))
    .option('-o, --out <dir>', 'run directory: config.json, metrics.csv, checkpoints/, samples/ (default runs/<preset name>)')
    .option('--resume', 'continue the run in --out from its newest checkpoint, exactly where it stopped')
    .option('--log-every <n>', 'iterations between metrics.csv rows', integer('--log-every'))
    .option('--ckpt-every <n>', 'iterations between checkpoints (the newest 3 are kept)', integer('--ckpt-every'))
    .option('--sample-every <n>', 'iterations between sample grids in samples/ (0: only at the end)', integer('--sample-every'))
    .option('--eval-every <kimg>', 'thousands of images between sample-quality evaluations (0: never)', Number)
    .option('--eval-n <n>', 'generated images per evaluation', integer('--eval-n'))
    .option('--set <key=value>', 'override any config field by its path, e.g. --set ect.mapping=constant --set net.dropout=0 (repeatable; value parsed as JSON when it can be)', collect, [])
    .option('--no-progress', 'print a line per log interval instead of a progress bar');
}

/** Runs pretraining or tuning through the launcher, with a progress bar; returns the run directory. */
export async function trainCommand(kind: RunKind, flags: TrainFlags, log: (line: string) => void = console.log): Promise<string> {
  const outcome = await trainRun({ kind, flags }, commandLineHooks(flags.progress, log));
  log(outcome.stopped ? `stopped at iteration ${outcome.iteration}; resume with --resume --out ${outcome.runDir}` : `done: ${outcome.runDir}`);
  return outcome.runDir;
}

interface SampleFlags { checkpoint: string; steps: string; n: number; out: string; seed: number; midT?: number[]; batch: number; backend?: string }

/** Writes a PNG grid of samples from a checkpoint's EMA weights. */
async function sampleCommand(flags: SampleFlags, log: (line: string) => void = console.log): Promise<void> {
  const steps = parseSampleSteps(flags.steps);
  await startBackend(flags.backend, log);
  const model = await loadRunModel(flags.checkpoint);
  try {
    log(`sampling ${flags.n} images, ${steps === 'heun' ? `Heun (${2 * model.config.edm.heunSteps - 1} network evaluations)` : `${steps} step(s)`}, from ${model.checkpoint} (iteration ${model.iteration})`);
    const images = generateImages(samplerModelOf(model), steps, flags.n, { batch: flags.batch, seed: flags.seed, midT: flags.midT });
    fs.mkdirSync(path.dirname(path.resolve(flags.out)), { recursive: true });
    fs.writeFileSync(flags.out, imagesToGridPng(images, Math.ceil(Math.sqrt(flags.n))));
    images.dispose();
    log(`wrote ${flags.out}`);
  } finally {
    disposeModel(model);
  }
}

/** Builds the command tree (exported for tests of the help text). */
export function buildProgram(): Command {
  const program = new Command('ect')
    .description('Easy Consistency Tuning (ECT) workbench: pretrain a diffusion model with EDM, tune it into a 1-2 step consistency model, sample and evaluate it.')
    .showHelpAfterError();

  addTrainingOptions(program.command('pretrain').description('EDM diffusion pretraining (the teacher ECT starts from)'), 'pretrain')
    .action(async (flags: TrainFlags) => { await trainCommand('pretrain', flags); });

  addTrainingOptions(program.command('tune').description('ECT: tune a pretrained diffusion model into a consistency model'), 'tune')
    .option('--init <checkpoint>', 'pretrained model to start from: a checkpoint file or a run directory (its newest checkpoint); both the online and EMA weights start from its EMA')
    .option('--from-scratch', 'tune a randomly initialised network (the paper\'s ablation without diffusion pretraining)')
    .action(async (flags: TrainFlags) => { await trainCommand('tune', flags); });

  program.command('sample')
    .description('draw samples from a checkpoint (EMA weights) into a PNG grid')
    .requiredOption('--checkpoint <path>', 'checkpoint file, or a run directory (its newest checkpoint)')
    .option('--steps <1|2|heun>', '1 or 2 consistency steps, or heun: the 18-step Heun sampler of a diffusion teacher', '1')
    .option('--n <n>', 'number of images', integer('--n'), 64)
    .option('--out <file>', 'PNG file to write', 'samples.png')
    .option('--seed <n>', 'noise seed: image i of a seed is the same whatever --n and --batch (and the same as `ect eval`\'s)', integer('--seed'), DEFAULT_SAMPLE_SEED)
    .option('--mid-t <t...>', 'intermediate time(s) of multistep sampling (default: the run\'s ect.midT, 0.821 on CIFAR-10)', (v: string, prev: number[] | undefined) => [...(prev ?? []), positiveNumber('--mid-t')(v)])
    .option('--batch <n>', 'images per network call', integer('--batch'), 64)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND)').choices(BACKENDS))
    .action(async (flags: SampleFlags) => { await sampleCommand(flags); });

  program.command('demo')
    .description('the end-to-end demo on Fashion-MNIST: pretrain a tiny teacher, ECT-tune it, write 1- and 2-step grids and metrics (resumes if interrupted)')
    .option('-o, --out <dir>', 'where the two runs go', path.join('runs', 'demo'))
    .option('--teacher-iters <n>', 'pretraining iterations (default: the fmnist-edm-tiny preset)', integer('--teacher-iters'))
    .option('--tune-iters <n>', 'ECT iterations (default: the fmnist-ect-tiny preset)', integer('--tune-iters'))
    .option('--eval-n <n>', 'images generated for the final fd_fmnist evaluation (0: skip)', integer('--eval-n'), 1000)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND)').choices(BACKENDS))
    .option('--no-progress', 'plain log lines instead of progress bars')
    .action(async (flags) => { await runDemo(flags); });

  registerMetricsCommands(program);
  return program;
}

/** Entry point used by bin/ect.js. */
export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
