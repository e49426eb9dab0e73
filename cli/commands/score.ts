/**
 * `ect fd`: scores images made anywhere (an .npz, a folder of PNGs) or a checkpoint against reference statistics, with
 * the feature networks of `ect eval`; `ect ref`: writes a dataset split's reference statistics to a file to share.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { BACKEND_CHOICES, startBackend } from '../../lib/backend/select';
import { DATASET_NAMES, type DatasetName } from '../../lib/config/types';
import { limitDataset, loadDataset, SPLITS, type Split } from '../../lib/data';
import { readImageSet, type ImageSet } from '../../lib/image/read';
import { createRunEvaluator, featureNetworkFor, type RunEvaluatorOptions, type SampleEvaluator } from '../../lib/metrics/evaluate';
import { DEFAULT_CLASSIFIER_DIR } from '../../lib/metrics/features';
import { imagesToTensor } from '../../lib/metrics/fmnist-classifier';
import { loadOrComputeReference } from '../../lib/metrics/reference';
import { readReferenceFile, writeReferenceFile } from '../../lib/metrics/reference-file';
import { DEFAULT_SAMPLE_SEED, parseSampleSteps, samplerLabel } from '../../lib/sample';
import { checkOutputFile } from '../../lib/output-paths';
import { appendTableRow } from '../../lib/train/metrics-log';
import { disposeModel, loadRunModel, samplerModelOf } from '../../lib/runs/model';
import { resolveInitTarget } from '../../lib/teachers/shipped';
import { integer, positiveInteger, positiveNumber, sampleSteps } from '../options';
import { countProgress } from '../progress';

/** The split a score is against unless told otherwise: the held-out test images, as every number the project reports. */
export const DEFAULT_SCORE_SPLIT: Split = 'test';

/** The dataset images of a shape most likely are, for images given without --data or --ref. */
const DATASET_OF_SHAPE: Record<string, DatasetName> = { '28x28x1': 'fashion-mnist', '32x32x3': 'cifar10' };

interface ReferenceFlags {
  data?: DatasetName; dataDir?: string; split: Split; referenceLimit?: number; classifier?: string; inception?: string;
  cacheDir?: string; batch: number; backend?: string; progress: boolean;
}

interface FdFlags extends ReferenceFlags {
  ref?: string; n?: number; steps: string; seed: number; midT?: number[]; heunSteps?: number; label?: string; table?: string;
}

/** What a row of `ect fd --table` says besides the metrics: the source, how its images were made, the reference and the features. */
function tableRow(source: string, flags: FdFlags, evaluator: SampleEvaluator, what: Record<string, string | number>, metrics: Record<string, number>): Record<string, string | number> {
  const net = evaluator.featureNetwork;
  return {
    source, ...what,
    reference: flags.ref ?? `${flags.split}${flags.referenceLimit ? `-first${flags.referenceLimit}` : ''}`,
    features: net.name,
    // which weights: the classifier folder (relative to where the command ran) and its hash, since two classifiers share the name
    feature_weights: net.name === 'fmnist' && flags.classifier ? path.relative(process.cwd(), path.resolve(flags.classifier)) : '',
    feature_sha256: net.weightsHash.slice(0, 12),
    ...metrics,
  };
}

function backendOption(): Option {
  return new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND); auto picks the fastest that loads').choices([...BACKEND_CHOICES]);
}

/** Whether `source` is images (an .npz, a folder holding PNGs) rather than a checkpoint, a run folder or a teacher's name. */
function isImageSource(source: string): boolean {
  if (/\.npz$/i.test(source)) return true;
  return fs.existsSync(source) && fs.statSync(source).isDirectory() && fs.readdirSync(source).some((f) => /\.png$/i.test(f));
}

/** The evaluator options of the reference flags. */
function evaluatorOptions(flags: FdFlags, log: (line: string) => void): RunEvaluatorOptions {
  return {
    inceptionDir: flags.inception, classifierDir: flags.classifier, cacheDir: flags.cacheDir, referenceFile: flags.ref,
    referenceSplit: flags.split, referenceLimit: flags.referenceLimit, batch: flags.batch, onInfo: log,
  };
}

/** The dataset whose features score these images: --data, else the reference file's, else the images' shape. */
function datasetOfImages(images: ImageSet, flags: FdFlags, log: (line: string) => void): DatasetName {
  if (flags.data) return flags.data;
  if (flags.ref) return readReferenceFile(flags.ref).key.dataset as DatasetName;
  const shape = `${images.height}x${images.width}x${images.channels}`;
  const guessed = DATASET_OF_SHAPE[shape];
  if (!guessed) throw new Error(`${images.source}: ${shape} images; say which dataset they are of (--data ${DATASET_NAMES.join('|')}) or give --ref`);
  log(`${images.source}: ${shape} images, scored as ${guessed} (--data sets another)`);
  return guessed;
}

/** Scores `n` images of an evaluator with a progress display. */
async function withProgress(flags: FdFlags, n: number, log: (line: string) => void, score: (onProgress: (done: number) => void) => Promise<Record<string, number>>): Promise<Record<string, number>> {
  const progress = countProgress('scoring', n, flags.progress, log);
  try {
    return await score((done) => progress.update(done));
  } finally {
    progress.stop();
  }
}

/**
 * `ect fd <source>`: the metrics of `ect eval` (FD or FID, KID, precision, recall) for images in an .npz or a PNG folder,
 * or for a checkpoint's samples, against a reference file (--ref) or a dataset split's cached statistics. Printed, not
 * appended anywhere. The images of `ect sample --seeds 0-(N-1) --format npz` score exactly as `ect eval --n N`.
 */
export async function fdCommand(source: string, flags: FdFlags, log: (line: string) => void = console.log): Promise<Record<string, number>> {
  const against = flags.ref ? `the reference file ${flags.ref}` : `the ${flags.split} split${flags.referenceLimit ? ` (first ${flags.referenceLimit} images)` : ''}`;
  if (isImageSource(source)) {
    const images = readImageSet(source);
    const n = flags.n ?? images.count;
    if (n > images.count) throw new Error(`--n ${n}: ${source} holds ${images.count} images`);
    const data = datasetOfImages(images, flags, log);
    log(`scoring ${n} images of ${source} against ${against} of ${data}`);
    await startScoringBackend(flags, log);
    const evaluator = await evaluatorFor({ name: data, dir: flags.dataDir }, flags, log);
    try {
      const metrics = await withProgress(flags, n, log, (onProgress) => evaluator.scoreImages((count, offset) => imagesToTensor({ ...images, labels: new Uint8Array(0) }, offset, count), n, flags.label ?? '', onProgress));
      if (flags.table) appendTableRow(flags.table, tableRow(source, flags, evaluator, { sampler: 'images', n }, metrics));
      return printMetrics(metrics, log);
    } finally {
      evaluator.dispose();
    }
  }
  const steps = parseSampleSteps(flags.steps);
  if (flags.midT !== undefined && steps !== 2) throw new Error(`--mid-t: only 2-step sampling has an intermediate time; got --steps ${flags.steps}`);
  if (flags.heunSteps !== undefined && steps !== 'heun') throw new Error(`--heun-steps: only the Heun sampler (--steps heun) has time steps to set; got --steps ${flags.steps}`);
  const n = flags.n ?? 10000;
  log(`scoring ${n} samples (${samplerLabel(steps)}, images 0-${n - 1} of noise seed ${flags.seed}) of ${source} against ${against}`);
  await startScoringBackend(flags, log);
  const model = await loadRunModel(resolveInitTarget(source));  // a path, or a shipped teacher's name
  try {
    const evaluator = await evaluatorFor({ ...model.config.data, dir: flags.dataDir ?? model.config.data.dir }, flags, log);
    try {
      const sampler = { ...samplerModelOf(model), edm: { ...model.config.edm, heunSteps: flags.heunSteps ?? model.config.edm.heunSteps } };
      const metrics = await withProgress(flags, n, log, (onProgress) => evaluator.evaluate(sampler, steps, { n, seed: flags.seed, midT: flags.midT, label: flags.label, onProgress }));
      if (flags.table) {
        const midT = steps === 2 ? (flags.midT ?? model.config.ect.midT) : undefined;
        appendTableRow(flags.table, tableRow(source, flags, evaluator, {
          iter: model.iteration, sampler: samplerLabel(steps), mid_t: midT === undefined ? '' : [midT].flat().join(' '), n, seed: flags.seed,
        }, metrics));
      }
      return printMetrics(metrics, log);
    } finally {
      evaluator.dispose();
    }
  } finally {
    disposeModel(model);
  }
}

async function startScoringBackend(flags: { backend?: string }, log: (line: string) => void): Promise<void> {
  await startBackend(flags.backend, log);
}

async function evaluatorFor(data: { name: DatasetName; dir?: string }, flags: FdFlags, log: (line: string) => void): Promise<SampleEvaluator> {
  let reason = '';
  const evaluator = await createRunEvaluator({ data: { ...data, flip: false } }, { ...evaluatorOptions(flags, log), onUnavailable: (why) => (reason = why) });
  if (!evaluator) throw new Error(`cannot score ${data.name} images: ${reason}`);
  return evaluator;
}

function printMetrics(metrics: Record<string, number>, log: (line: string) => void): Record<string, number> {
  for (const [column, value] of Object.entries(metrics)) log(`${column.padEnd(28)} ${value.toPrecision(6)}`);
  return metrics;
}

interface RefFlags extends ReferenceFlags { data: DatasetName; out: string }

/**
 * `ect ref`: the reference statistics of a dataset split under its feature network (the cached ones when current),
 * written to one file that `ect eval --ref` and `ect fd --ref` read on any machine.
 */
export async function refCommand(flags: RefFlags, log: (line: string) => void = console.log): Promise<string> {
  checkOutputFile(flags.out, '--out');
  log(`reference statistics of ${flags.data} ${flags.split}${flags.referenceLimit ? ` (first ${flags.referenceLimit} images)` : ''} -> ${flags.out}`);
  await startScoringBackend(flags, log);
  const picked = await featureNetworkFor({ data: { name: flags.data, flip: false } }, { classifierDir: flags.classifier, inceptionDir: flags.inception });
  if ('unavailable' in picked) throw new Error(`cannot make a ${flags.data} reference: ${picked.unavailable}`);
  const net = picked;
  try {
    const dataset = limitDataset(loadDataset({ name: flags.data, dir: flags.dataDir, flip: false }, flags.split), flags.referenceLimit);
    const progress = countProgress('embedding', dataset.count, flags.progress, log);
    let lookup;
    try {
      lookup = await loadOrComputeReference(net, dataset, {
        cacheDir: flags.cacheDir, batch: flags.batch,
        onCompute: (why) => log(`computing them from ${dataset.count} images (${why})`),
        onProgress: (done) => progress.update(done),
      });
    } finally {
      progress.stop();
    }
    if (lookup.source === 'cache') log(`from the cache: ${lookup.note}`);
    writeReferenceFile(flags.out, lookup.reference);
    const { key } = lookup.reference;
    log(`wrote ${flags.out}: ${key.count} images, ${net.name} features (${net.dim} dimensions, weights SHA-256 ${key.weightsHash.slice(0, 12)}...), ${lookup.reference.featureRows} features kept`);
    return flags.out;
  } finally {
    net.dispose();
  }
}

/** Options of both commands: where the reference comes from and how images are embedded. */
function addReferenceOptions(cmd: Command): Command {
  return cmd
    .option('--data-dir <dir>', 'folder holding the dataset files (default: data/cifar-10-batches-bin, data/fashion-mnist or /usr/share/datasets/fashion-mnist)')
    .addOption(new Option('--split <split>', 'the dataset split of the reference').choices([...SPLITS]).default(DEFAULT_SCORE_SPLIT))
    .option('--reference-limit <n>', 'the first N images of that split only (quick checks)', positiveInteger('--reference-limit'))
    .option('--classifier <dir>', 'Fashion-MNIST: the classifier whose features give fd_fmnist', DEFAULT_CLASSIFIER_DIR)
    .option('--inception <dir>', 'CIFAR-10: TF.js graph model of the FID Inception-v3 (default $ECT_INCEPTION_DIR; see docs/inception.md)')
    .option('--cache-dir <dir>', 'reference statistics cache (default $ECT_CACHE_DIR or ~/.cache/ect-workbench/reference-stats)')
    .option('--batch <n>', 'images embedded (and generated) per call', positiveInteger('--batch'), 250)
    .option('--no-progress', 'no progress bar (without a terminal: no line at each tenth)')
    .addOption(backendOption());
}

/** Adds `fd` and `ref` to the `ect` program. */
export function registerScoreCommands(program: Command): void {
  addReferenceOptions(program.command('fd')
    .description('score images made anywhere, or a checkpoint, with the metrics of `ect eval` (FD or FID, KID, precision, recall) against a reference: ' +
      'an .npz (arr_0 uint8 [N, H, W, C], as guided-diffusion and `ect sample --format npz` write), a folder of PNGs (EDM\'s layout), or a checkpoint ' +
      '(file, run folder or shipped teacher); printed, and appended to a CSV with --table. See docs/scoring.md')
    .argument('<source>', 'an .npz, a folder of PNGs, or a checkpoint file / run folder / shipped teacher name')
    .option('--ref <file>', 'reference statistics written by `ect ref` (instead of the dataset split\'s; must be of the same feature network)')
    .addOption(new Option('--data <name>', 'images: the dataset they are scored as (default: the --ref file\'s, else 28x28x1 fashion-mnist, 32x32x3 cifar10)').choices([...DATASET_NAMES]))
    .option('--n <n>', 'images: score the first N (default all); a checkpoint: generate N (default 10000)', positiveInteger('--n'))
    .option('--steps <1|2|heun>', 'a checkpoint: 1 or 2 consistency steps, or heun', sampleSteps('--steps'), '1')
    .option('--seed <n>', 'a checkpoint: the noise seed, as `ect eval --seed` and `ect sample --seed`', integer('--seed'), DEFAULT_SAMPLE_SEED)
    .option('--mid-t <t...>', 'a checkpoint, 2 steps: intermediate time(s) (default: the run\'s ect.midT)', (v: string, prev: number[] | undefined) => [...(prev ?? []), positiveNumber('--mid-t')(v)])
    .option('--heun-steps <n>', 'a checkpoint, --steps heun: Heun time steps (default: the run\'s edm.heunSteps)', positiveInteger('--heun-steps'))
    .option('--label <text>', 'suffix of the printed metric names (default: the sampler\'s, 1step/2step/heun, none for images)')
    .option('--table <file>', 'also append a row to this CSV: the source, sampler, t_mid, n and seed, the reference, the feature network and its weights (folder and SHA-256), and the metrics'))
    .action(async (source: string, flags: FdFlags) => { await fdCommand(source, flags); });

  addReferenceOptions(program.command('ref')
    .description('write the reference statistics of a dataset split (mean, covariance, features kept for KID and precision/recall, the ' +
      'feature network and its weights\' SHA-256, dataset, split, image count and hash) to one .npz that `ect eval --ref` and `ect fd --ref` read; see docs/scoring.md')
    .addOption(new Option('--data <name>', 'dataset').choices([...DATASET_NAMES]).makeOptionMandatory())
    .requiredOption('-o, --out <file>', 'the reference file to write (.npz; mu and sigma as EDM\'s fid.py references)'))
    .action(async (flags: RefFlags) => { await refCommand(flags); });
}
