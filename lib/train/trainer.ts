/**
 * One training loop for EDM pretraining and ECT tuning: steps, optimiser, EMA, metrics.csv, sample grids,
 * periodic evaluation and atomic checkpoints that a killed run resumes from exactly.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '../tf-gradients';
import type { RunConfig } from '../config/types';
import type { BackendInfo } from '../backend/select';
import { BatchLoader, loadDataset, type ImageDataset, type LoaderState } from '../data';
import { edmLoss } from '../edm/loss';
import { EctStep } from '../ect/loss';
import { stageAt } from '../ect/mapping';
import { UNet } from '../nn/unet';
import { generateImages, samplerModelFor, type SampleSteps, type SamplerModel } from '../sample';
import { imagesToGridPng } from '../image/png';
import { createOptimizer, type Optimizer } from './optim';
import { Ema } from './ema';
import {
  assertParamsMatch, checkpointPath, disposeCheckpoint, latestCheckpoint, loadCheckpoint, pruneCheckpoints, saveCheckpoint,
} from './checkpoint';
import { appendMetricsRow, truncateMetrics } from './metrics-log';
import {
  modelFromCheckpoint, recordedRunConfig, resolveCheckpointFile, writeRunConfig, CHECKPOINT_DIR, CHECKPOINTS_KEPT,
} from './run';

/** Progress of the loop, reported after every step. */
export interface StepStats {
  iteration: number;      // steps done
  totalIters: number;
  kimg: number;           // thousands of training images seen
  loss: number;
  lr: number;
  stage: number;          // ECT stage (0 for EDM)
  imgPerSec: number;      // over the last logging window
  wallSeconds: number;    // training time of the run, summed over resumes
}

/** Computes sample-quality metrics; see lib/metrics/evaluate.ts. */
export interface SampleEvaluator {
  evaluate(generate: (count: number, offset: number) => tf.Tensor4D, n: number, label: string,
    onProgress?: (done: number, total: number) => void): Promise<Record<string, number>>;
}

export interface TrainerEvents {
  onStep?(stats: StepStats): void;
  onInfo?(message: string): void;
  onEvalProgress?(label: string, done: number, total: number): void;
  shouldStop?(): boolean;   // e.g. after Ctrl-C: the loop checkpoints and returns
}

export interface TrainerOptions {
  runDir: string | null;    // null: no files (tests, benchmarks)
  resume?: boolean;         // continue from the newest checkpoint in runDir
  backend?: BackendInfo;
  dataset?: ImageDataset;   // otherwise loaded from cfg.data
  evaluator?: SampleEvaluator | null;
  environment?: Record<string, unknown>;
}

/** Which samplers a run's grids and evaluations use. */
export function samplerStepsFor(cfg: RunConfig): SampleSteps[] {
  return cfg.kind === 'pretrain' ? ['heun'] : cfg.ect.midT.length ? [1, 2] : [1];
}

export class Trainer {
  iteration = 0;
  imagesSeen = 0;
  private wallOffset = 0;            // training seconds of earlier sessions of this run
  private wallSeconds = 0;           // training seconds so far, as of the last step
  private readonly tfNames = new Map<string, string>();  // tfjs variable name -> our parameter name
  private readonly trainable: tf.Variable[];

  private constructor(readonly cfg: RunConfig, readonly net: UNet, readonly optimizer: Optimizer, readonly ema: Ema,
    readonly loader: BatchLoader, private readonly opts: TrainerOptions) {
    for (const [name, variable] of net.params) this.tfNames.set(variable.name, name);
    this.trainable = [...net.params.values()];
  }

  /**
   * Builds a trainer: a fresh network, or the --init checkpoint's EMA weights (tuning), or the newest
   * checkpoint of the run when resuming. Writes config.json when there is a run directory. `cfg.init` is
   * absolute or relative to the current directory; config.json and the checkpoints record it relative to
   * the run directory (lib/train/run.ts recordedRunInit).
   */
  static async create(cfg: RunConfig, opts: TrainerOptions): Promise<Trainer> {
    const ckptDir = opts.runDir ? path.join(opts.runDir, CHECKPOINT_DIR) : null;
    const resumeFile = opts.resume && ckptDir ? latestCheckpoint(ckptDir) : null;
    if (opts.resume && !resumeFile) throw new Error(`--resume: no checkpoint in ${ckptDir ?? '(no run directory)'} to resume from`);
    if (!opts.resume && ckptDir && latestCheckpoint(ckptDir)) {
      throw new Error(`${opts.runDir} already holds checkpoints of a run: pass --resume to continue it, or choose another --out`);
    }

    // tuning starts from a pretrained model: its architecture, its EMA weights for both online and EMA
    let initWeights: Map<string, tf.Tensor> | undefined;
    if (cfg.kind === 'tune' && cfg.init && !resumeFile) {
      const init = modelFromCheckpoint(resolveCheckpointFile(path.resolve(cfg.init)));
      cfg.net = { ...init.config.net, dropout: cfg.net.dropout };
      initWeights = init.ema;
      init.net.dispose();
    }
    if (resumeFile) checkConfigMatchesCheckpoint(cfg, resumeFile);

    const dataset = opts.dataset ?? loadDataset(cfg.data, 'train');
    if (dataset.height !== cfg.net.resolution || dataset.width !== cfg.net.resolution || dataset.channels !== cfg.net.imageChannels) {
      throw new Error(`data ${dataset.name} (${dataset.source}) has ${dataset.height}x${dataset.width}x${dataset.channels} images, ` +
        `but the network expects ${cfg.net.resolution}x${cfg.net.resolution}x${cfg.net.imageChannels}`);
    }
    const net = new UNet(cfg.net, cfg.seed);
    if (initWeights) {
      assertParamsMatch(cfg.init ?? 'init', net.paramShapes(), initWeights);
      for (const [name, p] of net.params) p.assign(initWeights.get(name) as tf.Tensor);
    }
    const optimizer = createOptimizer(cfg.optimizer, net.params);
    const ema = new Ema(net.params, cfg.ema, initWeights);
    initWeights?.forEach((t) => t.dispose());
    const loader = new BatchLoader(dataset, { batch: cfg.batch, seed: cfg.seed, flip: cfg.data.flip });
    const trainer = new Trainer(cfg, net, optimizer, ema, loader, opts);
    if (resumeFile) trainer.restore(resumeFile);
    if (opts.runDir) {
      fs.mkdirSync(opts.runDir, { recursive: true });
      writeRunConfig(opts.runDir, cfg, opts.backend, opts.environment);
      truncateMetrics(path.join(opts.runDir, 'metrics.csv'), trainer.iteration);
    }
    return trainer;
  }

  /** One optimisation step on a batch of clean images; returns the loss. Frees everything it makes. */
  step(x0: tf.Tensor4D): number {
    const { cfg } = this;
    let lossValue: number;
    let grads: tf.NamedTensorMap;
    if (cfg.kind === 'tune') {
      const ect = new EctStep(this.net, x0, cfg.ect, cfg.edm, cfg.seed, this.iteration);
      const target = ect.target();
      try {
        const out = tf.variableGrads(() => ect.loss(target), this.trainable);
        grads = out.grads;
        lossValue = out.value.dataSync()[0];
        out.value.dispose();
      } finally {
        target.dispose();
        ect.dispose();
      }
    } else {
      const out = tf.variableGrads(() => edmLoss({ net: this.net, x0, edm: cfg.edm, seed: cfg.seed, iteration: this.iteration }), this.trainable);
      grads = out.grads;
      lossValue = out.value.dataSync()[0];
      out.value.dispose();
    }
    // the optimiser sanitises NaN/inf gradients itself (ect-spec.md 6.7)
    const named = new Map<string, tf.Tensor>();
    for (const [tfName, g] of Object.entries(grads)) named.set(this.tfNames.get(tfName) as string, g);
    this.optimizer.apply(named, this.imagesSeen);
    named.forEach((g) => g.dispose());
    // EDM's EMA schedule uses the image count before this step (its first update copies the weights)
    this.ema.update(this.imagesSeen, x0.shape[0]);
    this.imagesSeen += x0.shape[0];
    this.iteration += 1;
    return lossValue;
  }

  /** Current learning rate. */
  learningRate(): number {
    return this.optimizer.learningRate(this.imagesSeen);
  }

  /** Runs until cfg.iters (or shouldStop), logging, sampling, evaluating and checkpointing as configured. */
  async run(events: TrainerEvents = {}): Promise<{ iteration: number; stopped: boolean; checkpoint: string | null }> {
    const { cfg } = this;
    const runDir = this.opts.runDir;
    const metricsFile = runDir ? path.join(runDir, 'metrics.csv') : null;
    const sessionStart = Date.now();
    let windowStart = Date.now();
    let windowImages = 0;
    let lastCheckpoint: string | null = null;
    let stopped = false;
    const kimgPerEval = cfg.evalEvery > 0 ? cfg.evalEvery : Infinity;
    let nextEvalKimg = (Math.floor(this.imagesSeen / 1000 / kimgPerEval) + 1) * kimgPerEval;

    while (this.iteration < cfg.iters) {
      const x0 = this.loader.next();
      const loss = this.step(x0);
      x0.dispose();
      windowImages += cfg.batch;
      const elapsed = (Date.now() - windowStart) / 1000;
      const stats: StepStats = {
        iteration: this.iteration, totalIters: cfg.iters, kimg: this.imagesSeen / 1000, loss, lr: this.learningRate(),
        stage: cfg.kind === 'tune' ? stageAt(this.iteration - 1, cfg.ect.stageIters) : 0,
        imgPerSec: elapsed > 0 ? windowImages / elapsed : 0,
        wallSeconds: this.wallOffset + (Date.now() - sessionStart) / 1000,
      };
      this.wallSeconds = stats.wallSeconds;
      events.onStep?.(stats);
      const last = this.iteration === cfg.iters;
      stopped = !last && (events.shouldStop?.() ?? false);
      const row: Record<string, number> = {};
      if (metricsFile && (this.iteration % cfg.logEvery === 0 || last || stopped)) {
        Object.assign(row, { iter: stats.iteration, kimg: stats.kimg, loss, lr: stats.lr, stage: stats.stage,
          img_per_s: stats.imgPerSec, wall_s: stats.wallSeconds });
        windowStart = Date.now();
        windowImages = 0;
      }
      if (this.opts.evaluator && cfg.evalN > 0 && (stats.kimg >= nextEvalKimg || (last && cfg.evalEvery > 0))) {
        Object.assign(row, await this.evaluate(events), { iter: stats.iteration, kimg: stats.kimg });
        nextEvalKimg = (Math.floor(stats.kimg / kimgPerEval) + 1) * kimgPerEval;
      }
      if (metricsFile && Object.keys(row).length) appendMetricsRow(metricsFile, row);
      if (runDir && ((cfg.sampleEvery > 0 && this.iteration % cfg.sampleEvery === 0) || last)) {
        for (const file of this.writeSampleGrids(last ? 'final' : `iter-${String(this.iteration).padStart(7, '0')}`)) events.onInfo?.(`wrote ${file}`);
      }
      if (runDir && (this.iteration % cfg.ckptEvery === 0 || last || stopped)) {
        lastCheckpoint = this.saveCheckpoint();
        events.onInfo?.(`checkpoint ${lastCheckpoint}`);
      }
      if (stopped) break;
    }
    return { iteration: this.iteration, stopped, checkpoint: lastCheckpoint };
  }

  /** Evaluates the EMA model with each of the run's samplers; returns metric columns. */
  async evaluate(events: TrainerEvents = {}): Promise<Record<string, number>> {
    const evaluator = this.opts.evaluator;
    if (!evaluator) return {};
    const out: Record<string, number> = {};
    for (const steps of samplerStepsFor(this.cfg)) {
      const label = steps === 'heun' ? 'heun' : `${steps}step`;
      const generate = (count: number, offset: number) =>
        generateImages(this.samplerModel(), steps, count, { batch: Math.min(count, 250), seed: 1000003 + offset });
      Object.assign(out, await evaluator.evaluate(generate, this.cfg.evalN, label,
        (done, total) => events.onEvalProgress?.(label, done, total)));
    }
    return out;
  }

  /** The EMA model as the samplers see it. */
  samplerModel(): SamplerModel {
    return samplerModelFor(this.net, this.ema.weights, this.cfg);
  }

  /** Writes 8x8 sample grids of the EMA model (fixed noise, so grids are comparable across iterations). */
  writeSampleGrids(tag: string): string[] {
    const runDir = this.opts.runDir;
    if (!runDir) return [];
    const dir = path.join(runDir, 'samples');
    fs.mkdirSync(dir, { recursive: true });
    return samplerStepsFor(this.cfg).map((steps) => {
      const images = generateImages(this.samplerModel(), steps, 64, { batch: 64, seed: 7 });
      const file = path.join(dir, `${tag}-${steps === 'heun' ? 'heun' : `${steps}step`}.png`);
      fs.writeFileSync(file, imagesToGridPng(images, 8));
      images.dispose();
      return file;
    });
  }

  /** Saves online weights, EMA, optimiser state, counters and loader state; keeps the newest few. */
  saveCheckpoint(): string {
    if (!this.opts.runDir) throw new Error('saveCheckpoint: this trainer has no run directory');
    const dir = path.join(this.opts.runDir, CHECKPOINT_DIR);
    const file = checkpointPath(dir, this.iteration);
    const optState = this.optimizer.getState();
    try {
      saveCheckpoint(file, {
        meta: {
          format: 'ect-workbench-run', iteration: this.iteration, imagesSeen: this.imagesSeen,
          wallSeconds: this.wallSeconds, optimizerStep: optState.step, loader: this.loader.getState(),
          config: recordedRunConfig(this.cfg, this.opts.runDir), backend: this.opts.backend ?? null,
        },
        groups: { params: new Map(this.net.params), ema: this.ema.weights, optimizer: optState.slots },
      });
    } finally {
      optState.slots.forEach((t) => t.dispose());
    }
    pruneCheckpoints(dir, CHECKPOINTS_KEPT);
    return file;
  }

  /** Restores everything saveCheckpoint wrote. */
  private restore(file: string): void {
    const ckpt = loadCheckpoint(file);
    try {
      const { params, ema, optimizer } = ckpt.groups;
      if (!params || !ema || !optimizer) throw new Error(`${file}: not a training checkpoint (needs params, ema and optimizer groups)`);
      assertParamsMatch(file, this.net.paramShapes(), params);
      assertParamsMatch(file, this.net.paramShapes(), ema);
      for (const [name, p] of this.net.params) p.assign(params.get(name) as tf.Tensor);
      this.ema.setWeights(ema);
      const meta = ckpt.meta as { iteration: number; imagesSeen: number; wallSeconds: number; optimizerStep: number; loader: LoaderState };
      this.optimizer.setState({ step: meta.optimizerStep, slots: optimizer });
      this.loader.setState(meta.loader);
      this.iteration = meta.iteration;
      this.imagesSeen = meta.imagesSeen;
      this.wallOffset = meta.wallSeconds ?? 0;
      this.wallSeconds = this.wallOffset;
    } finally {
      disposeCheckpoint(ckpt);
    }
  }

  /** Frees the network, optimiser and EMA. */
  dispose(): void {
    this.optimizer.dispose();
    this.ema.dispose();
    this.net.dispose();
  }
}

/** A resumed run must train the same thing: the fields that define the result must match the checkpoint's. */
function checkConfigMatchesCheckpoint(cfg: RunConfig, file: string): void {
  const ckpt = loadCheckpoint(file);
  const saved = ckpt.meta.config as RunConfig | undefined;
  disposeCheckpoint(ckpt);
  if (!saved) throw new Error(`${file}: checkpoint has no config; cannot check it matches this run`);
  if (cfg.kind === 'tune' && cfg.init) cfg.net = { ...saved.net };
  const keys: Array<keyof RunConfig> = ['kind', 'net', 'edm', 'ect', 'optimizer', 'ema', 'batch', 'seed', 'data'];
  const differing = keys.filter((k) => JSON.stringify(cfg[k]) !== JSON.stringify(saved[k]));
  if (differing.length) {
    const details = differing.map((k) => `${String(k)}: checkpoint ${JSON.stringify(saved[k])} vs now ${JSON.stringify(cfg[k])}`).join('; ');
    throw new Error(`${file}: the checkpoint does not match this config (${details}). Resume with the run's own config (omit --config/flags that change it).`);
  }
}
