/** The `ect train-classifier` and `ect eval` commands: the Fashion-MNIST feature network, and sample-quality metrics of a checkpoint. */
import * as path from 'node:path';
import { SingleBar } from 'cli-progress';
import { Command, Option } from 'commander';
import { BACKEND_CHOICES, startBackend, type BackendInfo } from '../../lib/backend/select';
import { loadDataset, SPLITS, type Split } from '../../lib/data';
import { createRunEvaluator } from '../../lib/metrics/evaluate';
import { DEFAULT_CLASSIFIER_DIR } from '../../lib/metrics/features';
import {
  classifierAccuracy,
  DEFAULT_CLASSIFIER_ARCH,
  DEFAULT_CLASSIFIER_TRAINING,
  loadClassifier,
  saveClassifier,
  trainClassifier,
  type ClassifierArch,
} from '../../lib/metrics/fmnist-classifier';
import { classAccuracy, type ClassAccuracy } from '../../lib/metrics/class-accuracy';
import { DEFAULT_SAMPLE_SEED, parseSampleSteps, samplerLabel, type SampleSteps } from '../../lib/sample';
import { appendMetricsRow, appendTableRow } from '../../lib/train/metrics-log';
import { runPaths } from '../../lib/runs/folder';
import { disposeModel, loadRunModel, samplerModelOf, type LoadedModel } from '../../lib/runs/model';
import { SHIPPED_TEACHERS_DIR } from '../../lib/teachers/shipped';
import { acquireRunLock, runLockHolder, type RunLock } from '../../lib/runs/lock';
import { assertWritable } from '../../lib/write-file';
import { integer, positiveInteger, positiveNumber, sampleSteps } from '../options';
import { DEFAULT_SCORE_SPLIT } from './score';

function backendOption(): Option {
  return new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND); auto picks the fastest that loads').choices([...BACKEND_CHOICES]);
}

interface TrainClassifierFlags {
  dataDir?: string; out: string; epochs: number; batch: number; lr: number; seed: number; limit?: number; backend?: string;
  conv1: number; conv2: number; hidden: number;
}

/** Trains the Fashion-MNIST classifier, prints its test accuracy and writes its weights. */
export async function trainClassifierCommand(flags: TrainClassifierFlags, log: (line: string) => void = console.log): Promise<number> {
  const backend = await startBackend(flags.backend, log);
  const train = loadDataset({ name: 'fashion-mnist', dir: flags.dataDir, flip: false, limit: flags.limit }, 'train');
  const test = loadDataset({ name: 'fashion-mnist', dir: flags.dataDir, flip: false }, 'test');
  const arch: ClassifierArch = { ...DEFAULT_CLASSIFIER_ARCH, conv1: flags.conv1, conv2: flags.conv2, hidden: flags.hidden };
  log(`training the Fashion-MNIST classifier (convs ${arch.conv1}/${arch.conv2}, ${arch.hidden} features) on ${train.count} images (${train.source}), ${flags.epochs} epochs, batch ${flags.batch}`);
  const started = Date.now();
  const model = trainClassifier(train, {
    epochs: flags.epochs, batch: flags.batch, lr: flags.lr, seed: flags.seed,
    onEpoch: (epoch, loss, seconds) => log(`epoch ${epoch + 1}/${flags.epochs}: mean cross-entropy ${loss.toFixed(4)} (${seconds.toFixed(0)} s)`),
  }, arch);
  try {
    const accuracy = classifierAccuracy(model, test);
    log(`test accuracy: ${(100 * accuracy).toFixed(2)}% on ${test.count} test images`);
    const manifest = saveClassifier(model, flags.out, {
      testAccuracy: accuracy,
      training: {
        epochs: flags.epochs, batch: flags.batch, lr: flags.lr, seed: flags.seed, trainImages: train.count,
        backend: backend.name, seconds: Math.round((Date.now() - started) / 1000),
      },
    });
    log(`wrote ${flags.out} (weights SHA-256 ${manifest.weightsSha256.slice(0, 12)}...)`);
    if (accuracy < 0.9) log('warning: below the 90% test accuracy this feature network is meant to have; train longer (--epochs)');
    return accuracy;
  } finally {
    model.dispose();
  }
}

interface EvalFlags {
  checkpoint: string; steps: string; n: number; batch: number; seed: number; inception?: string; classifier?: string;
  cacheDir?: string; referenceSplit: Split; referenceLimit?: number; append: boolean; backend?: string; progress: boolean;
  classAccuracy?: boolean; midT?: number[]; table?: string; ref?: string; heunSteps?: number;
}

/**
 * `ect eval --class-accuracy`: how often the Fashion-MNIST classifier assigns a conditional model's samples (--n / 10
 * of each class, the images of `ect sample --class all`) to the class asked for, beside chance and beside the
 * classifier's own accuracy on the real test images. Printed, not appended to metrics.csv.
 */
export async function classAccuracyCommand(flags: EvalFlags, log: (line: string) => void = console.log): Promise<ClassAccuracy & { realAccuracy: number }> {
  const steps = parseSampleSteps(flags.steps);
  const backend = await startBackend(flags.backend, log);
  const model = await loadRunModel(flags.checkpoint);
  const { model: classifier } = loadClassifier(flags.classifier ?? DEFAULT_CLASSIFIER_DIR);
  try {
    const classes = model.config.net.labelDim;
    if (!classes) throw new Error(`--class-accuracy: ${model.checkpoint} is an unconditional model (net.labelDim 0)`);
    if (flags.n % classes) throw new Error(`--class-accuracy: --n must be a multiple of the ${classes} classes, got ${flags.n}`);
    const test = loadDataset({ ...model.config.data, limit: undefined }, 'test');
    const realAccuracy = classifierAccuracy(classifier, test);
    log(`class accuracy of ${model.checkpoint} (iteration ${model.iteration}): ${flags.n} images (${flags.n / classes} per class), sampler ${samplerLabel(steps)}, seed ${flags.seed}`);
    const progress = flags.progress && process.stderr.isTTY;
    const result = classAccuracy(samplerModelOf(model), classifier, steps, {
      perClass: flags.n / classes, seed: flags.seed, batch: flags.batch,
      onProgress: (done, total) => { if (progress) process.stderr.write(`\rgenerating ${done}/${total} images`); },
    });
    if (progress) process.stderr.write('\n');
    const names = test.classNames ?? [];
    result.perClass.forEach((share, k) => log(`  class ${k}${names[k] ? ` (${names[k]})` : ''}`.padEnd(28) + `${(100 * share).toFixed(1)}%`));
    log(`assigned to the class asked for: ${(100 * result.accuracy).toFixed(1)}% (chance ${(100 * result.chance).toFixed(0)}%; ` +
      `the classifier on ${test.count} real test images: ${(100 * realAccuracy).toFixed(1)}%)`);
    return { ...result, realAccuracy };
  } finally {
    classifier.dispose();
    disposeModel(model);
  }
}

/**
 * Generates n images from a checkpoint on the evaluation noise of --seed, prints the metrics and appends them to
 * the run's metrics.csv. With the default seed these are the numbers the run's own evaluation at that iteration gave.
 */
export async function evalCommand(flags: EvalFlags, log: (line: string) => void = console.log): Promise<Record<string, number>> {
  const steps = parseSampleSteps(flags.steps);
  const label = samplerLabel(steps);
  if (flags.heunSteps !== undefined && steps !== 'heun') throw new Error(`--heun-steps: only the Heun sampler (--steps heun) has time steps to set; got --steps ${flags.steps}`);
  if (flags.heunSteps !== undefined && flags.append) throw new Error('--heun-steps: the run\'s heun columns in metrics.csv are for its own edm.heunSteps; add --no-append (and --table <file> to keep the numbers)');
  // the first line says what the numbers are against: the split (test unless told) or the reference file
  log(flags.ref ? `against the reference statistics in ${flags.ref} (--ref)`
    : `against the ${flags.referenceSplit} split${flags.referenceLimit ? ` (first ${flags.referenceLimit} images)` : ''} (--reference-split; test is what the project reports)`);
  const backend = await startBackend(flags.backend, log);
  const model = await loadRunModel(flags.checkpoint);
  try {
    const runMidT = model.config.ect.midT;
    const midT = flags.midT ?? runMidT;
    if (flags.midT !== undefined && steps !== 2) throw new Error(`--mid-t: only 2-step sampling has an intermediate time; got --steps ${flags.steps}`);
    if (flags.midT !== undefined && flags.append && midT.join() !== runMidT.join()) {
      throw new Error(`--mid-t ${midT.join(' ')}: the run's ${samplerLabel(steps)} columns in metrics.csv are for its own ect.midT (${runMidT.join(' ') || 'none'}); add --no-append (and --table <file> to keep the numbers)`);
    }
    // outputs are checked before the work (minutes to hours), not after it
    if (flags.table) assertWritable(flags.table);
    const shipped = path.relative(SHIPPED_TEACHERS_DIR, model.runDir);
    const isShipped = !shipped.startsWith('..') && !path.isAbsolute(shipped);
    const metricsFile = flags.append && !isShipped ? runPaths(model.runDir).metrics : undefined;
    if (metricsFile) assertWritable(metricsFile);
    const lock = metricsFile ? lockRunForAppend(model.runDir, metricsFile, `ect eval --checkpoint ${flags.checkpoint}`, log) : undefined;
    try {
      return await evaluateAndRecord(flags, model, { steps, label, midT, backend, metricsFile }, log);
    } finally {
      lock?.release();
    }
  } finally {
    disposeModel(model);
  }
}

/**
 * Locks a run folder for appending to its metrics.csv (`file`), or says which process writes it now: a training
 * run appends its own rows there.
 */
function lockRunForAppend(runDir: string, file: string, command: string, log: (line: string) => void): RunLock {
  const holder = runLockHolder(runDir);
  if (holder) {
    throw new Error(`cannot append to ${file}: ${runDir} is in use by pid ${holder.pid} on ${holder.host} (${holder.command}, since ${holder.started}). ` +
      'Add --no-append (and --table <file> to keep the numbers), or wait for that process to finish');
  }
  return acquireRunLock(runDir, command, log);
}

interface EvalPlan {
  steps: SampleSteps; label: string; midT: number[]; backend: BackendInfo; metricsFile?: string;   // metricsFile: the run's, when appending
}

/** Evaluates the loaded model, prints the metrics and appends them to --table and `plan.metricsFile`. */
async function evaluateAndRecord(flags: EvalFlags, model: LoadedModel, plan: EvalPlan, log: (line: string) => void): Promise<Record<string, number>> {
  const { steps, label, midT, backend } = plan;
  let reason = '';
  const evaluator = await createRunEvaluator(model.config, {
    inceptionDir: flags.inception, classifierDir: flags.classifier, cacheDir: flags.cacheDir, referenceSplit: flags.referenceSplit, referenceLimit: flags.referenceLimit,
    referenceFile: flags.ref, batch: flags.batch, onInfo: log, onUnavailable: (why) => (reason = why),
  });
  if (!evaluator) throw new Error(`cannot evaluate ${model.checkpoint}: ${reason}`);
  try {
    log(`evaluating ${model.checkpoint} (iteration ${model.iteration}): ${flags.n} images, sampler ${label}${steps === 2 ? ` (t_mid ${midT.join(' ')})` : ''}, ` +
      `features ${evaluator.featureNetwork.name}, against ${flags.ref ? `${evaluator.reference.key.dataset} ${evaluator.reference.key.split} (${flags.ref})` : `the ${flags.referenceSplit} split`}`);
    const started = Date.now();
    const bar = flags.progress && process.stderr.isTTY
      ? new SingleBar({ format: 'generating {bar} {value}/{total} images | ETA {eta_formatted}', hideCursor: true, stream: process.stderr })
      : null;
    bar?.start(flags.n, 0);
    let metrics: Record<string, number>;
    try {
      const edm = { ...model.config.edm, heunSteps: flags.heunSteps ?? model.config.edm.heunSteps };
      metrics = await evaluator.evaluate({ ...samplerModelOf(model), midT, edm }, steps, { n: flags.n, seed: flags.seed, onProgress: (done) => bar?.update(done) });
    } finally {
      bar?.stop();
    }
    const seconds = (Date.now() - started) / 1000;
    for (const [column, value] of Object.entries(metrics)) log(`${column.padEnd(28)} ${value.toPrecision(6)}`);
    log(`${'seconds'.padEnd(28)} ${seconds.toFixed(1)} (generation, features and distances on ${backend.name})`);
    if (flags.table) {
      appendTableRow(flags.table, {
        checkpoint: path.relative(process.cwd(), model.checkpoint).split(path.sep).join('/'), iter: model.iteration,
        kimg: (model.iteration * model.config.batch) / 1000, sampler: label, mid_t: steps === 2 ? midT.join(' ') : '', n: flags.n, seed: flags.seed,
        reference: flags.ref ? `${evaluator.reference.key.dataset}-${evaluator.reference.key.split}-file` : `${model.config.data.name}-${flags.referenceSplit}${flags.referenceLimit ? `-first${flags.referenceLimit}` : ''}`,
        features: evaluator.featureNetwork.name, backend: backend.name, seconds: Number(seconds.toFixed(1)), ...metrics,
      });
      log(`appended to ${flags.table}`);
    }
    if (flags.append && !plan.metricsFile) {
      log(`not appended: ${model.runDir} is a shipped teacher, whose metrics.csv is its training record (--table <file> keeps the numbers)`);
    } else if (plan.metricsFile) {
      const file = plan.metricsFile;
      appendMetricsRow(file, { iter: model.iteration, kimg: (model.iteration * model.config.batch) / 1000, ...metrics });
      const split = flags.ref ? evaluator.reference.key.split : flags.referenceSplit;
      log(`appended to ${file}` + (split === model.config.evalSplit ? ''
        : ` (against the ${split} split, while the run's own evaluations there are against its evalSplit, ${model.config.evalSplit}: compare rows of one split only)`));
    }
    return metrics;
  } finally {
    evaluator.dispose();
  }
}

/** Adds `train-classifier` and `eval` to the `ect` program. */
export function registerMetricsCommands(program: Command): void {
  program.command('train-classifier')
    .description('train the Fashion-MNIST classifier whose penultimate layer is the feature network of fd_fmnist (not FID); prints its test accuracy')
    .option('--data-dir <dir>', 'folder with the Fashion-MNIST IDX files (default: data/fashion-mnist or /usr/share/datasets/fashion-mnist)')
    .option('-o, --out <dir>', 'where classifier.json and weights.bin go', DEFAULT_CLASSIFIER_DIR)
    .option('--epochs <n>', 'passes over the training set', positiveInteger('--epochs'), DEFAULT_CLASSIFIER_TRAINING.epochs)
    .option('--batch <n>', 'images per Adam step', positiveInteger('--batch'), DEFAULT_CLASSIFIER_TRAINING.batch)
    .option('--lr <x>', 'Adam learning rate at the start of the cosine decay', positiveNumber('--lr'), DEFAULT_CLASSIFIER_TRAINING.lr)
    .option('--seed <n>', 'seed of initialisation and shuffling', integer('--seed'), DEFAULT_CLASSIFIER_TRAINING.seed)
    .option('--limit <n>', 'train on the first N training images only (quick checks)', positiveInteger('--limit'))
    .option('--conv1 <n>', 'channels of the first 3x3 convolution (28x28); another width than the default gives a second, independent feature network', positiveInteger('--conv1'), DEFAULT_CLASSIFIER_ARCH.conv1)
    .option('--conv2 <n>', 'channels of the second 3x3 convolution (14x14)', positiveInteger('--conv2'), DEFAULT_CLASSIFIER_ARCH.conv2)
    .option('--hidden <n>', 'width of the penultimate layer: the feature dimension of its fd_fmnist', positiveInteger('--hidden'), DEFAULT_CLASSIFIER_ARCH.hidden)
    .addOption(backendOption())
    .action(async (flags: TrainClassifierFlags) => { await trainClassifierCommand(flags); });

  program.command('eval')
    .description('sample-quality metrics of a checkpoint: FD (FID with real Inception weights, fd_fmnist on Fashion-MNIST), KID, precision and recall; appended to the run\'s metrics.csv')
    .requiredOption('--checkpoint <path>', 'checkpoint file, or a run directory (its newest checkpoint)')
    .option('--steps <1|2|heun>', '1 or 2 consistency steps, or heun: the 18-step Heun sampler of a diffusion teacher', sampleSteps('--steps'), '1')
    .option('--n <n>', 'number of generated images (the paper uses 50000 for FID)', positiveInteger('--n'), 10000)
    .option('--batch <n>', 'images generated and embedded per call', positiveInteger('--batch'), 250)
    .option('--seed <n>', 'evaluation noise seed: image i is the same whatever --n and --batch; the default is the one training evaluates with', integer('--seed'), DEFAULT_SAMPLE_SEED)
    .option('--inception <dir>', 'CIFAR-10: TF.js graph model of the FID Inception-v3 (default $ECT_INCEPTION_DIR; see docs/inception.md)')
    .option('--classifier <dir>', 'Fashion-MNIST: classifier weights', DEFAULT_CLASSIFIER_DIR)
    .option('--cache-dir <dir>', 'reference statistics cache (default $ECT_CACHE_DIR or ~/.cache/ect-workbench/reference-stats)')
    .addOption(new Option('--reference-split <split>', 'dataset split the generated images are compared with: test (the 10k held-out images, what the README, teachers and notebooks report) or train (the paper\'s FID; in-run evaluations\' default)').choices([...SPLITS]).default(DEFAULT_SCORE_SPLIT))
    .option('--ref <file>', 'reference statistics from a file of `ect ref` instead of --reference-split (must be of the same feature network); see docs/scoring.md')
    .option('--heun-steps <n>', '--steps heun: Heun time steps (default: the run\'s edm.heunSteps); another value needs --no-append', positiveInteger('--heun-steps'))
    .option('--reference-limit <n>', 'compare with the first N images of that split only (quick checks; the cache key includes the count)', positiveInteger('--reference-limit'))
    .option('--mid-t <t...>', '2 steps: the intermediate time(s) to sample with (default: the run\'s ect.midT); another value needs --no-append', (v: string, prev: number[] | undefined) => [...(prev ?? []), positiveNumber('--mid-t')(v)])
    .option('--no-append', 'print the metrics only; do not append a row to <run>/metrics.csv')
    .option('--table <file>', 'also append a row to this CSV, with what the evaluation was: checkpoint, iteration, sampler, t_mid, n, seed, reference split, features, backend, seconds and the metrics')
    .option('--class-accuracy', 'class-conditional Fashion-MNIST models: instead, the share of --n samples (--n / 10 per class) the classifier assigns to the class asked for, beside chance and its accuracy on real test images (printed only)')
    .option('--no-progress', 'no progress bar')
    .addOption(backendOption())
    .action(async (flags: EvalFlags) => { await (flags.classAccuracy ? classAccuracyCommand(flags) : evalCommand(flags)); });
}
