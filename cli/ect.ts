/** The `ect` command line: pretrain, tune, sample, demo (and the metrics commands). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { DATASET_NAMES, EVAL_SPLITS, NON_FINITE_POLICIES, PRECISIONS, type RunKind } from '../lib/config/types';
import { BACKEND_CHOICES } from '../lib/backend/select';
import { repositoryPath } from '../lib/repository';
import { trainRun, type RunFlags } from '../lib/train/launch';
import { startBackend } from '../lib/backend/select';
import { disposeModel, loadRunModel, samplerModelOf } from '../lib/runs/model';
import { DEFAULT_SAMPLE_SEED, parseSampleSteps, parseSeedRanges, perClassLabels, sampleSeedRanges, seedIndices, type ImageLabels, type SeedRange } from '../lib/sample';
import { createSampleWriter, SAMPLE_FORMAT_INFO, SAMPLE_FORMATS, type SampleFormat } from '../lib/image/export';
import { checkOutputFile, checkOutputFolder } from '../lib/output-paths';
import { batchForMemory, defaultSamplingBudgetBytes, MAX_DERIVED_BATCH, samplingBytesPerImage } from '../lib/nn/memory';
import { commandLineHooks, countProgress } from './progress';
import { watchStopRequests } from './stop-requests';
import { registerMetricsCommands } from './commands/metrics';
import { registerScoreCommands } from './commands/score';
import { registerPresetsCommand } from './commands/presets';
import { registerSweepCommands } from './commands/sweep';
import { registerExportWebCommand } from './commands/export-web';
import { registerEdmCommands } from './commands/import-edm';
import { registerShipTeacherCommand, registerTrimCheckpointCommand } from './commands/ship-teacher';
import { registerSelectCommands } from './commands/select';
import { DEMO_TEACHER, DEMO_TUNE_ITERS, runDemo } from './demo';
import { fraction, growthFactor, integer, nonNegativeNumber, positiveInteger, positiveNumber, sampleSteps, seedRanges } from './options';

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
    .option('--iters <n>', 'total training iterations', positiveInteger('--iters'))
    .option('--batch <n>', 'images per iteration', positiveInteger('--batch'))
    .option('--lr <x>', 'learning rate', positiveNumber('--lr'))
    .option('-o, --out <dir>', 'run directory: config.json, metrics.csv, checkpoints/, samples/ (default runs/<preset name>)')
    .option('--resume', 'continue the run in --out from its newest checkpoint, exactly where it stopped')
    .option('--log-every <n>', 'iterations between metrics.csv rows', positiveInteger('--log-every'))
    .option('--ckpt-every <n>', 'iterations between checkpoints (the newest 3 are kept)', positiveInteger('--ckpt-every'))
    .option('--sample-every <n>', 'iterations between sample grids in samples/ (0: only at the end)', integer('--sample-every'))
    .option('--eval-every <kimg>', 'thousands of images between sample-quality evaluations (0: never)', nonNegativeNumber('--eval-every'))
    .option('--eval-n <n>', 'generated images per evaluation', integer('--eval-n'))
    .option('--eval-growth <g>', 'space evaluations geometrically: at E, E*g, E*g^2, ... kimg for --eval-every E (e.g. 1.4142: two budgets per doubling of the images, for scaling studies); 1: every E kimg (default)', growthFactor('--eval-growth'))
    .addOption(new Option('--eval-split <split>', 'the dataset split evaluations compare the samples with (default train, as the paper\'s FID; test: the 10k held-out images)').choices([...EVAL_SPLITS]))
    .option('--plateau-gain <x>', 'finish the run early once doubling the training images improves the evaluated fd (Heun when pretraining, 2-step else 1-step when tuning) by less than this fraction (0.1 = 10%), checked at each evaluation; 0: never (default); needs --eval-every', fraction('--plateau-gain'))
    .addOption(new Option('--on-non-finite <policy>', 'a NaN or infinite loss or gradient: stop the run (the last good checkpoint stays the newest; default) or skip the batch (counted in metrics.csv\'s skipped column)').choices([...NON_FINITE_POLICIES]))
    .option('--divergence-factor <x>', 'stop the run once the mean loss of 50 steps exceeds this many times its lowest 50-step mean in this session (default 100; healthy runs stay within 2x; 0: never): a learning rate far too high, caught while the loss is still finite', nonNegativeNumber('--divergence-factor'))
    .addOption(new Option('--precision <p>', 'arithmetic of the training steps: fp32 (default) or bf16 mixed precision (bf16 inputs to the convolutions but the input one; float32 accumulation, matrix products, weights, optimiser state and EMA); bf16 needs the onednn backend and a CPU with avx512_bf16 or amx_bf16, and is refused elsewhere; measured on a Zen 5: 1.2-1.55x the fp32 speed, and 10-20% worse fd than fp32 at the annealed recipe\'s budget over two seeds (docs/benchmarks.md)').choices([...PRECISIONS]))
    .option('--set <key=value>', 'override any config field by its path, e.g. --set ect.mapping=constant --set net.dropout=0 (repeatable; value parsed as JSON when it can be)', collect, [])
    .option('--no-progress', 'print a line per log interval instead of a progress bar')
    .option('--no-step-replay', 'run every training step through tfjs op by op; by default (onednn backend) a step of each structure is recorded, checked bit for bit against the eager step, and replayed natively from then on, the same numbers without tfjs\'s per-op work (docs/benchmarks.md); also ECT_STEP_REPLAY=off');
}

/**
 * Runs pretraining or tuning through the launcher, with a progress bar; returns the run directory. Stopped
 * (Ctrl-C, SIGTERM, its npm launcher gone), it checkpoints and sets the exit status to 128 + the signal.
 */
export async function trainCommand(kind: RunKind, flags: TrainFlags, log: (line: string) => void = console.log): Promise<string> {
  const stop = watchStopRequests(log);
  try {
    const outcome = await trainRun({ kind, flags }, commandLineHooks(flags.progress, log, stop));
    // a stop during the final grids or evaluation: the run is finished, what was left of them skipped
    if (stop.reason) process.exitCode = stop.reason.exitCode;
    log(outcome.stopped ? `stopped at iteration ${outcome.iteration}; resume with --resume --out ${outcome.runDir}`
      : stop.reason ? `${stop.reason.cause} after the last iteration: ${outcome.runDir} is finished and checkpointed; what was left of its final grids and evaluation was skipped`
        : `done: ${outcome.runDir}`);
    return outcome.runDir;
  } finally {
    stop.close();
  }
}

export interface SampleFlags {
  checkpoint: string; steps: string; n?: number; seeds?: SeedRange[]; out?: string; seed: number; midT?: number[]; batch?: number; memory?: number; backend?: string;
  class?: number | 'all'; format: SampleFormat; heunSteps?: number; progress: boolean;
}

/** The images `ect sample` draws: --seeds, else --n images from index 0 (64 when neither is given). */
function sampleRanges(flags: Pick<SampleFlags, 'n' | 'seeds'>): SeedRange[] {
  if (flags.seeds && flags.n !== undefined) throw new Error('--n and --seeds exclude each other: --n N draws images 0..N-1, as --seeds 0-(N-1)');
  return flags.seeds ?? [{ start: 0, count: flags.n ?? 64 }];
}

/** `--class k` or `--class all`. */
function parseClass(text: string): number | 'all' {
  return text === 'all' ? 'all' : integer('--class')(text);
}

/**
 * The classes `ect sample` asks of a model: one class for every image, or (`all`) --n / classes images of each class,
 * one grid row each; none for an unconditional model (a conditional one without --class draws them per image index).
 */
function sampleClasses(flags: SampleFlags & { n: number }, classes: number): { labels?: ImageLabels; columns?: number } {
  if (flags.class === undefined) return {};
  if (!classes) throw new Error(`--class: ${flags.checkpoint} is an unconditional model (net.labelDim 0); it takes no class`);
  if (flags.class !== 'all') {
    if (flags.class >= classes) throw new Error(`--class ${flags.class}: the model's classes are 0..${classes - 1}`);
    return { labels: flags.class };
  }
  if (flags.n % classes) throw new Error(`--class all: --n must be a multiple of the ${classes} classes (one grid row per class), got ${flags.n}`);
  return { labels: perClassLabels(classes, flags.n / classes), columns: flags.n / classes };
}

/** Writes samples of a checkpoint's EMA weights as a PNG grid, a folder of PNGs or an .npz, batch by batch. */
export async function sampleCommand(options: SampleFlags, log: (line: string) => void = console.log): Promise<void> {
  const ranges = sampleRanges(options);
  const flags = { ...options, n: ranges.reduce((sum, range) => sum + range.count, 0) };
  const steps = parseSampleSteps(flags.steps);
  if (flags.heunSteps !== undefined && steps !== 'heun') throw new Error(`--heun-steps: only the Heun sampler (--steps heun) has time steps to set; got --steps ${flags.steps}`);
  const out = flags.out ?? SAMPLE_FORMAT_INFO[flags.format].out;
  (flags.format === 'png-dir' ? checkOutputFolder : checkOutputFile)(out, '--out');  // before any work
  await startBackend(flags.backend, log);
  const model = await loadRunModel(flags.checkpoint);
  try {
    const { sigmaMax } = model.config.edm;
    const tooLate = (flags.midT ?? []).filter((t) => t >= sigmaMax);
    if (tooLate.length) throw new Error(`--mid-t ${tooLate.join(' ')}: an intermediate time must be below the model's edm.sigmaMax (${sigmaMax}), where sampling starts`);
    const { resolution, imageChannels, labelDim } = model.config.net;
    const { labels, columns } = sampleClasses(flags, labelDim);
    const edm = { ...model.config.edm, heunSteps: flags.heunSteps ?? model.config.edm.heunSteps };
    const which = options.seeds ? `seeds ${ranges.map((r) => (r.count === 1 ? `${r.start}` : `${r.start}-${r.start + r.count - 1}`)).join(',')}` : `images 0-${flags.n - 1}`;
    log(`sampling ${flags.n} images (${which} of noise seed ${flags.seed})${flags.class === undefined ? '' : ` of class ${flags.class}`}, ` +
      `${steps === 'heun' ? `Heun, ${edm.heunSteps} steps (${2 * edm.heunSteps - 1} network evaluations)` : `${steps} step(s)`}, from ${model.checkpoint} (iteration ${model.iteration})`);
    const writer = createSampleWriter(flags.format, out, { n: flags.n, shape: [resolution, resolution, imageChannels], columns, indices: seedIndices(ranges) });
    const batchSize = flags.batch ?? batchForMemory(model.config.net, flags.memory !== undefined ? flags.memory * 1e9 : defaultSamplingBudgetBytes());
    if (flags.batch === undefined) {
      log(`batch ${batchSize}: about ${(samplingBytesPerImage(model.config.net) / 1e6).toFixed(0)} MB per image within ` +
        `${flags.memory !== undefined ? `--memory ${flags.memory} GB` : `a quarter of this machine's memory (${(defaultSamplingBudgetBytes() / 1e9).toFixed(1)} GB)`}; --batch sets it`);
    }
    const progress = countProgress('sampling', flags.n, flags.progress, log);
    try {
      for (const batch of sampleSeedRanges({ ...samplerModelOf(model), edm }, steps, ranges, { batch: batchSize, seed: flags.seed, midT: flags.midT, labels, onBatch: (done) => progress.update(done) })) {
        writer.write(batch.images, batch.labels);
        batch.images.dispose();
      }
    } finally {
      progress.stop();
    }
    log(`wrote ${writer.close()}`);
  } finally {
    disposeModel(model);
  }
}

/** The version in package.json. */
export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(repositoryPath('package.json'), 'utf8')) as { version: string }).version;
}

/** Builds the command tree (exported for tests of the help text). */
export function buildProgram(): Command {
  const program = new Command('ect')
    .description('Easy Consistency Tuning (ECT) workbench: pretrain a diffusion model with EDM, tune it into a 1-2 step consistency model, sample and evaluate it.')
    .version(packageVersion(), '-V, --version', 'the workbench\'s version (package.json)')
    .showHelpAfterError();

  addTrainingOptions(program.command('pretrain').description('EDM diffusion pretraining (the teacher ECT starts from)'), 'pretrain')
    .action(async (flags: TrainFlags) => { await trainCommand('pretrain', flags); });

  addTrainingOptions(program.command('tune').description('ECT: tune a pretrained diffusion model into a consistency model'), 'tune')
    .option('--init <checkpoint>', 'pretrained model to start from: a checkpoint file, a run directory (its newest checkpoint), or the name of a teacher shipped in data/teachers/; both the online and EMA weights start from its EMA')
    .option('--from-scratch', 'tune a randomly initialised network (the paper\'s ablation without diffusion pretraining)')
    .action(async (flags: TrainFlags) => { await trainCommand('tune', flags); });

  program.command('sample')
    .description('draw samples from a checkpoint (EMA weights) into a PNG grid, a folder of PNGs or an .npz')
    .requiredOption('--checkpoint <path>', 'checkpoint file, or a run directory (its newest checkpoint)')
    .option('--steps <1|2|heun>', '1 or 2 consistency steps, or heun: the 18-step Heun sampler of a diffusion teacher', sampleSteps('--steps'), '1')
    .option('--n <n>', 'number of images: images 0 .. N-1 of the noise seed (default 64)', positiveInteger('--n'))
    .option('--seeds <ranges>', 'which images, as EDM\'s generate.py --seeds: indices and ranges such as 0-63,100-199 (image s of the noise seed is the same whichever range draws it, and the png-dir file is named s); instead of --n', seedRanges)
    .addOption(new Option('--format <format>', `what to write: ${SAMPLE_FORMATS.map((f) => `${f}, ${SAMPLE_FORMAT_INFO[f].what}`).join('; ')}`).choices([...SAMPLE_FORMATS]).default('grid'))
    .option('--out <path>', `file (grid, npz) or folder (png-dir) to write (default ${SAMPLE_FORMATS.map((f) => `${SAMPLE_FORMAT_INFO[f].out} for ${f}`).join(', ')})`)
    .option('--class <k|all>', 'class-conditional models: every image of class k, or all: --n / classes images of each class, one grid row per class (default: image i\'s class drawn from the seed)', parseClass)
    .option('--seed <n>', 'noise seed: image i of a seed is the same whatever --n and --batch (and the same as `ect eval`\'s)', integer('--seed'), DEFAULT_SAMPLE_SEED)
    .option('--mid-t <t...>', 'intermediate time(s) of multistep sampling (default: the run\'s ect.midT, 0.821 on CIFAR-10)', (v: string, prev: number[] | undefined) => [...(prev ?? []), positiveNumber('--mid-t')(v)])
    .option('--heun-steps <n>', 'Heun sampler (--steps heun): time steps, 2n - 1 network evaluations (default: the run\'s edm.heunSteps, 18)', positiveInteger('--heun-steps'))
    .option('--batch <n>', `images per network call (does not change the images; default: what --memory allows, at most ${MAX_DERIVED_BATCH})`, positiveInteger('--batch'))
    .option('--memory <GB>', 'memory for a network call\'s activations when --batch is not given (default: a quarter of this machine\'s memory; EDM\'s CIFAR-10 network takes about 140 MB per image)', positiveNumber('--memory'))
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND)').choices(BACKENDS))
    .option('--no-progress', 'no progress bar (without a terminal: no line at each tenth of the images)')
    .action(async (flags: SampleFlags) => { await sampleCommand(flags); });

  program.command('demo')
    .description(`the end-to-end demo on Fashion-MNIST: ECT-tune the shipped teacher (${DEMO_TEACHER}), then write the teacher's, the 1-step and the 2-step grids from the same noise, and fd_fmnist (resumes if interrupted)`)
    .option('-o, --out <dir>', 'where the tuning run and the grids go', path.join('runs', 'demo'))
    .option('--teacher <name|dir>', 'the teacher to tune: a teacher shipped in data/teachers/, or a run folder', DEMO_TEACHER)
    .option('--tune-iters <n>', `ECT iterations (default ${DEMO_TUNE_ITERS}: 16 kimg, a few minutes on 2 cores)`, positiveInteger('--tune-iters'))
    .option('--eval-n <n>', 'images generated for the final fd_fmnist evaluation, against the 10k test images (0: skip)', integer('--eval-n'), 1000)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND)').choices(BACKENDS))
    .option('--no-progress', 'plain log lines instead of progress bars')
    .action(async (flags) => { await runDemo(flags); });

  registerMetricsCommands(program);
  registerScoreCommands(program);
  registerPresetsCommand(program);
  registerSweepCommands(program);
  registerExportWebCommand(program);
  registerEdmCommands(program);
  registerShipTeacherCommand(program);
  registerTrimCheckpointCommand(program);
  registerSelectCommands(program);
  return program;
}

/** Entry point used by bin/ect.js. */
export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
