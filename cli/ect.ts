/** The `ect` command line: pretrain, tune, sample, demo (and the metrics commands). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import type { RunConfig, RunKind } from '../lib/config/types';
import { parseOverride, resolveRunConfig } from '../lib/config/resolve';
import { describeBackend, initBackend, type BackendChoice, type BackendInfo } from '../lib/backend/select';
import { Trainer, type SampleEvaluator } from '../lib/train/trainer';
import { disposeModel, loadRunModel, resolveRunInit, samplerModelOf } from '../lib/train/run';
import { generateImages, parseSampleSteps } from '../lib/sample';
import { imagesToGridPng } from '../lib/image/png';
import { TrainingProgress } from './progress';
import { registerMetricsCommands } from './commands/metrics';
import { createRunEvaluator } from '../lib/metrics/evaluate';
import { runDemo } from './demo';
import { integer, positiveNumber } from './options';

const BACKENDS = ['auto', 'tensorflow-gpu', 'tensorflow', 'onednn', 'wasm', 'cpu'];

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Options shared by pretrain and tune. */
interface TrainFlags {
  config?: string; data?: string; dataDir?: string; dataLimit?: number; backend?: string; seed?: number;
  iters?: number; batch?: number; lr?: number; out?: string; resume?: boolean; logEvery?: number;
  ckptEvery?: number; sampleEvery?: number; evalEvery?: number; evalN?: number; set: string[];
  init?: string; fromScratch?: boolean; progress: boolean;
  evalReferenceSplit?: 'train' | 'test';  // the demo compares with the 10k test images (faster first run)
}

function addTrainingOptions(cmd: Command, kind: RunKind): Command {
  return cmd
    .option('-c, --config <preset>', `preset: a JSON file, or a name in configs/ (e.g. ${kind === 'pretrain' ? 'fmnist-edm-tiny, cifar10-edm' : 'fmnist-ect-tiny, cifar10-ect, cifar10-ect-1hour'}); defaults are the paper's CIFAR-10 settings`)
    .addOption(new Option('--data <name>', 'dataset').choices(['cifar10', 'fashion-mnist', 'synthetic']))
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

/** Turns flags into config patches, in the order they apply after the preset. */
function flagOverrides(flags: TrainFlags): Record<string, unknown>[] {
  const patches: Record<string, unknown>[] = [];
  const data: Record<string, unknown> = {};
  if (flags.data) data.name = flags.data;
  if (flags.dataDir) data.dir = flags.dataDir;
  if (flags.dataLimit !== undefined) data.limit = flags.dataLimit;
  if (Object.keys(data).length) patches.push({ data });
  const top: Record<string, unknown> = {};
  if (flags.seed !== undefined) top.seed = flags.seed;
  if (flags.iters !== undefined) top.iters = flags.iters;
  if (flags.batch !== undefined) top.batch = flags.batch;
  if (flags.logEvery !== undefined) top.logEvery = flags.logEvery;
  if (flags.ckptEvery !== undefined) top.ckptEvery = flags.ckptEvery;
  if (flags.sampleEvery !== undefined) top.sampleEvery = flags.sampleEvery;
  if (flags.evalEvery !== undefined) top.evalEvery = flags.evalEvery;
  if (flags.evalN !== undefined) top.evalN = flags.evalN;
  if (flags.init !== undefined) top.init = path.resolve(flags.init);  // the user's path, from the current directory
  if (flags.lr !== undefined) top.optimizer = { lr: flags.lr };
  if (Object.keys(top).length) patches.push(top);
  for (const assignment of flags.set) patches.push(parseOverride(assignment));
  return patches;
}

/** Initialises the backend and says which one runs. */
export async function startBackend(choice: string | undefined, log: (line: string) => void): Promise<BackendInfo> {
  const info = await initBackend(choice as BackendChoice | undefined);
  log(describeBackend(info));
  return info;
}

/** Runs pretraining or tuning with a progress bar; Ctrl-C checkpoints and stops (a second Ctrl-C quits at once). */
export async function trainCommand(kind: RunKind, flags: TrainFlags, log: (line: string) => void = console.log): Promise<string> {
  const runDir = path.resolve(flags.out ?? path.join('runs', presetName(flags.config, kind)));
  let cfg: RunConfig;
  if (flags.resume && fs.existsSync(path.join(runDir, 'config.json'))) {
    // a resumed run keeps its own config; only bookkeeping fields may change
    const saved = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as RunConfig & { backend?: unknown; environment?: unknown; writtenAt?: unknown };
    delete saved.backend; delete saved.environment; delete saved.writtenAt;
    // the run records init relative to its own folder (older runs: absolute)
    if (typeof saved.init === 'string') saved.init = resolveRunInit(saved.init, runDir);
    const tmp = path.join(runDir, `.resume-config-${process.pid}.json`);
    fs.writeFileSync(tmp, JSON.stringify(saved));
    try { cfg = resolveRunConfig(kind, tmp, flagOverrides(flags) as never); } finally { fs.rmSync(tmp, { force: true }); }
  } else {
    cfg = resolveRunConfig(kind, flags.config, flagOverrides(flags) as never);
  }
  // an init from a preset or --set init=... is the user's path too; the trainer records it relative to runDir
  if (cfg.init) cfg.init = path.resolve(cfg.init);
  if (kind === 'tune' && !cfg.init && !flags.resume && !flags.fromScratch) {
    throw new Error('tune needs --init <checkpoint or run directory> of a pretrained model (or --resume, or --from-scratch for the ablation without pretraining)');
  }
  if (kind === 'tune' && cfg.init && flags.fromScratch) throw new Error('--from-scratch and --init exclude each other');
  const backend = await startBackend(flags.backend, log);
  const evaluator = cfg.evalEvery > 0 ? await makeEvaluator(cfg, log, flags.evalReferenceSplit) : null;
  const trainer = await Trainer.create(cfg, { runDir, resume: flags.resume, backend, evaluator });
  log(`${kind} ${cfg.name}: ${trainer.net.paramCount().toLocaleString('en-US')} parameters, ${cfg.data.name} (${trainer.loader.dataset.count} images), ` +
    `batch ${cfg.batch}, ${cfg.iters} iterations${trainer.iteration ? `, resuming at ${trainer.iteration}` : ''} -> ${runDir}`);
  let interrupts = 0;
  const onSigint = () => {
    interrupts += 1;
    if (interrupts > 1) process.exit(130);
    log('\nstopping after this step and writing a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);
  const progress = new TrainingProgress(cfg, trainer.iteration, flags.progress && Boolean(process.stderr.isTTY), log);
  try {
    const result = await trainer.run({
      onStep: (s) => progress.update(s),
      onInfo: (m) => progress.note(m),
      onEvalProgress: (label, done, total) => progress.note(`evaluating ${label}: ${done}/${total}`, true),
      shouldStop: () => interrupts > 0,
    });
    progress.stop();
    log(result.stopped ? `stopped at iteration ${result.iteration}; resume with --resume --out ${runDir}` : `done: ${runDir}`);
  } finally {
    progress.stop();
    process.off('SIGINT', onSigint);
    trainer.dispose();
  }
  return runDir;
}

function presetName(config: string | undefined, kind: RunKind): string {
  if (!config) return kind === 'pretrain' ? 'edm-pretrain' : 'ect-tune';
  return path.basename(config).replace(/\.json$/, '');
}

/** The evaluator for a run's dataset, or null (with the reason logged) when none is available. */
async function makeEvaluator(cfg: RunConfig, log: (line: string) => void, referenceSplit?: 'train' | 'test'): Promise<SampleEvaluator | null> {
  try {
    const evaluator = await createRunEvaluator(cfg, { referenceSplit, onInfo: log });
    if (!evaluator) log('evaluation: no feature network for this dataset; metric columns stay empty');
    return evaluator;
  } catch (err) {
    log(`evaluation disabled: ${(err as Error).message}`);
    return null;
  }
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
    .option('--seed <n>', 'noise seed', integer('--seed'), 0)
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
    .action(async (flags) => { await runDemo(flags, trainCommand, (choice) => startBackend(choice, console.log)); });

  registerMetricsCommands(program);
  return program;
}

/** Entry point used by bin/ect.js. */
export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
