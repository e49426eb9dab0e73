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
import { assertPrecisionAvailable, withPrecision, type CpuFlagsSource } from '../backend/onednn/precision';
import { BatchLoader, loadDataset, type ImageDataset, type LoaderState } from '../data';
import type { TrainingLoss } from '../training-loss';
import { primaryFdColumn } from '../metrics/columns';
import type { SampleEvaluator } from '../metrics/evaluate';
import { UNet, type ClassLabels } from '../nn/unet';
import { DEFAULT_SAMPLE_SEED, runSamplers, sampleBatches, samplerLabel, samplerModelFor, type SamplerModel } from '../sample';
import { imagesToGridPng } from '../image/png';
import { writeFileNamed } from '../write-file';
import { trainingLossFor } from './losses';
import { createOptimizer, gradientNorm, peekFloat32, type Optimizer } from './optim';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { onednnAddon, outputPool } from '../backend/onednn';
import type { OnednnAddon } from '../backend/onednn/addon';
import { stepDropoutSeed, type LossContext, type StepHostInputs } from '../training-loss';
import {
  firstDifference, NotReplayable, recordAddonCalls, ReplayScratch, restoreState, snapshotState, StepRecording, type ReplayInputs, type ReplayOutcome,
} from './step-replay';
import { Ema, PosthocEmaTracker } from './ema';
import { DivergenceWatch } from './divergence';
import { firstNonFinite } from './finite';
import {
  checkpointPath, disposeCheckpoint, latestCheckpoint, loadCheckedCheckpoint, openCheckpoint, pruneCheckpoints, saveCheckpoint, type OpenedCheckpoint,
} from './checkpoint';
import { appendMetricsRow, readMetrics, truncateMetrics } from './metrics-log';
import { nextEvalKimg, reachedEvalBudget } from './eval-schedule';
import { describePlateau, evaluationsOf, plateauCheck, plateauRecord, type PlateauRecord } from './plateau';
import { leanVariableGrads } from './lean-gradients';
import { recordedRunConfig, runPaths, writeRunConfig, CHECKPOINTS_KEPT } from '../runs/folder';

/** Progress of the loop, reported after every step. */
export interface StepStats {
  iteration: number;      // steps done
  totalIters: number;
  kimg: number;           // thousands of training images seen
  loss: number;
  lr: number;
  stage: number;          // the loss's stage (ECT's s; 0 for EDM)
  imgPerSec: number;      // over the last logging window
  wallSeconds: number;    // training time of the run, summed over resumes
}

/** A step whose loss or gradient norm is NaN or infinite; nothing of the step was applied. */
export class NonFiniteStepError extends Error {
  constructor(readonly iteration: number, readonly loss: number, readonly gradNorm: number, detail: string, readonly repeated = false,
    readonly weights = false) {  // weights: the update itself overflowed
    super(`iteration ${iteration + 1}: the loss is ${loss}${Number.isNaN(gradNorm) && !Number.isFinite(loss) ? '' : `, the gradient norm ${gradNorm}`}; ${detail}`);
    this.name = 'NonFiniteStepError';
  }
}

/** Under onNonFinite 'skip', this many bad batches in a row stop the run anyway: the weights, not a batch, are broken. */
const MAX_CONSECUTIVE_SKIPS = 10;

export interface TrainerEvents {
  onStep?(stats: StepStats): void;
  onInfo?(message: string): void;
  onEvalProgress?(label: string, done: number, total: number): void;
  shouldStop?(): boolean;   // e.g. after Ctrl-C: the loop checkpoints and returns
}

/**
 * Where a trainer's weights come from: a fresh network, the EMA weights of a pretrained checkpoint (online
 * and EMA both start from them), or the newest checkpoint of this run (everything, to continue exactly).
 * The launcher (lib/train/launch.ts) decides it, with the config, before the trainer is built.
 */
export type RunStart = { from: 'fresh' } | { from: 'init'; checkpoint: string } | { from: 'resume'; checkpoint: string };

export interface TrainerOptions {
  runDir: string | null;    // null: no files (tests, benchmarks)
  start?: RunStart;         // default fresh
  opened?: OpenedCheckpoint; // start's checkpoint, opened by the launcher (else the trainer opens it)
  backend?: BackendInfo;
  dataset?: ImageDataset;   // otherwise loaded from cfg.data
  evaluator?: Pick<SampleEvaluator, 'evaluate'> | null;  // in-run evaluation (lib/metrics/evaluate.ts)
  environment?: Record<string, unknown>;
  log?: (line: string) => void;  // what was repaired in the run folder (a torn last row of metrics.csv dropped)
  cpuFlags?: CpuFlagsSource;     // the CPU flags cfg.precision 'bf16' is checked against (default this machine's; tests simulate others)
  stepReplay?: boolean;          // replay recorded steps on onednn (lib/train/step-replay.ts); default on, unless ECT_STEP_REPLAY=off
}

export class Trainer {
  iteration = 0;
  imagesSeen = 0;
  private wallOffset = 0;            // training seconds of earlier sessions of this run
  private wallSeconds = 0;           // training seconds so far, as of the last step
  skippedSteps = 0;                  // batches skipped for a non-finite loss or gradient (onNonFinite 'skip'), over the run
  private consecutiveSkips = 0;
  private readonly tfNames = new Map<string, string>();  // tfjs variable name -> our parameter name
  private readonly trainable: tf.Variable[];
  private replay: ReplayState | null = null;          // recorded steps (onednn), else null
  private replayUnavailable: string | null = null;    // why steps are not replayed, when they are not
  private readonly pendingNotes: string[] = [];      // said in the run's log after the next step (events.onInfo)

  private constructor(readonly cfg: RunConfig, readonly net: UNet, readonly loss: TrainingLoss, readonly optimizer: Optimizer, readonly ema: Ema,
    readonly posthoc: PosthocEmaTracker | null, readonly loader: BatchLoader, private readonly opts: TrainerOptions) {
    for (const [name, variable] of net.params) this.tfNames.set(variable.name, name);
    this.trainable = [...net.params.values()];
  }

  /**
   * Builds a trainer for a resolved config: a fresh network, the init checkpoint's EMA weights, or the run's
   * checkpoint to resume (opts.start). Writes config.json when there is a run directory. The config is used
   * as given: resolving it (presets, flags, --init's network, resume checks) is the launcher's work.
   */
  static async create(cfg: RunConfig, opts: TrainerOptions): Promise<Trainer> {
    const start = opts.start ?? { from: 'fresh' };
    if ((cfg.precision ?? 'fp32') !== 'fp32') assertPrecisionAvailable(cfg.precision, tf.getBackend(), opts.cpuFlags);
    if (cfg.init && start.from === 'fresh') {
      throw new Error(`config init ${cfg.init}: a run that starts from a checkpoint is launched with it (lib/train/launch.ts launchRun)`);
    }
    if (start.from !== 'resume' && opts.runDir && latestCheckpoint(runPaths(opts.runDir).checkpoints)) {
      throw new Error(`${opts.runDir} already holds checkpoints of a run: pass --resume to continue it, or choose another --out`);
    }
    const dataset = opts.dataset ?? loadDataset(cfg.data, 'train', cfg.net);
    if (dataset.height !== cfg.net.resolution || dataset.width !== cfg.net.resolution || dataset.channels !== cfg.net.imageChannels) {
      throw new Error(`data ${dataset.name} (${dataset.source}) has ${dataset.height}x${dataset.width}x${dataset.channels} images, ` +
        `but the network expects ${cfg.net.resolution}x${cfg.net.resolution}x${cfg.net.imageChannels}`);
    }
    const classes = dataset.labels.reduce((most, label) => Math.max(most, label + 1), 0);
    if (cfg.net.labelDim > 0 && classes > cfg.net.labelDim) {
      throw new Error(`data ${dataset.name} (${dataset.source}) has ${classes} classes, but the network embeds ${cfg.net.labelDim} (net.labelDim)`);
    }
    const net = new UNet(cfg.net, cfg.seed);
    if (start.from !== 'fresh' && opts.opened && opts.opened.file !== start.checkpoint) {
      throw new Error(`the opened checkpoint ${opts.opened.file} is not the run's start, ${start.checkpoint}`);
    }
    const checkpoint = start.from === 'fresh' ? null : opts.opened ?? start.checkpoint;
    // tuning starts from a pretrained model: its EMA weights for both the online network and the EMA
    const initWeights = start.from === 'init' && checkpoint ? loadEmaWeights(checkpoint, net) : undefined;
    try {
      if (initWeights) for (const [name, p] of net.params) p.assign(initWeights.get(name) as tf.Tensor);
      const optimizer = createOptimizer(cfg.optimizer, net.params, 'auto', cfg.iters * cfg.batch);
      const ema = new Ema(net.params, cfg.ema, initWeights);
      const posthoc = cfg.ema.posthoc ? new PosthocEmaTracker(net.params, cfg.ema.posthoc.sigmaRels, initWeights) : null;
      const loader = new BatchLoader(dataset, { batch: cfg.batch, seed: cfg.seed, flip: cfg.data.flip });
      const trainer = new Trainer(cfg, net, trainingLossFor(cfg), optimizer, ema, posthoc, loader, opts);
      trainer.setUpReplay(opts.stepReplay ?? stepReplayFromEnvironment());
      if (start.from === 'resume' && checkpoint) trainer.restore(checkpoint);
      if (opts.runDir) {
        fs.mkdirSync(opts.runDir, { recursive: true });
        writeRunConfig(opts.runDir, cfg, opts.backend, opts.environment);
        const torn = truncateMetrics(runPaths(opts.runDir).metrics, trainer.iteration);
        if (torn) opts.log?.(torn);
      }
      return trainer;
    } finally {
      initWeights?.forEach((t) => t.dispose());
    }
  }

  /**
   * One optimisation step on a batch of clean images and their class ids (used when the network is conditional);
   * returns the loss. Frees everything it makes. Runs in cfg.precision (sampling and evaluation stay fp32).
   */
  step(x0: tf.Tensor4D, labels?: ClassLabels): number {
    return withPrecision(this.cfg.precision, () => this.stepInPrecision(x0, labels));
  }

  private stepInPrecision(x0: tf.Tensor4D, labels?: ClassLabels): number {
    const ctx: LossContext = { seed: this.cfg.seed, iteration: this.iteration, labels: this.net.conditional ? labels : undefined };
    const replay = this.replay;
    if (!replay || !this.loss.hostInputs) return this.eagerStep(x0, ctx);
    // a replaying trainer's eager steps too take their intermediates from the scratch pool, so that the process holds
    // one step's working set, not one in each pool
    if (replay.off !== null) return replay.scratch.run(() => this.eagerStep(x0, ctx));
    // steps of one structure make the same kernel calls: record the first, check the next against an eager step, replay the rest
    const host = this.loss.hostInputs(this.net, x0.shape, ctx);
    const key = `${host.structure}, batch [${x0.shape.join(', ')}]`;
    const recording = replay.recordings.get(key);
    if (!recording) return this.recordStep(replay, x0, ctx, key, host.structure);
    // the most recently used recordings are kept (an ECT run meets each stage's structures in turn)
    replay.recordings.delete(key);
    replay.recordings.set(key, recording);
    host.arrays.set('x0', peekFloat32(x0));
    if (!recording.verified) return this.verifyRecording(replay, recording, x0, ctx, host);
    return this.replayStep(recording, x0.shape[0], ctx, host);
  }

  /** One step as tfjs runs it, op by op; `trace` (a step being recorded or checked) is told what the replay needs to know. */
  private eagerStep(x0: tf.Tensor4D, ctx: LossContext, trace?: EagerStepTrace): number {
    // the loss draws this step's noise and dropout masks from (seed, iteration) and does its no-gradient work
    const step = this.loss.prepare(this.net, x0, ctx);
    let lossValue: number;
    let grads: tf.NamedTensorMap;
    try {
      const out = leanVariableGrads(() => step.loss(), this.trainable);
      grads = out.grads;
      if (trace) Object.assign(trace, { loss: peekFloat32(out.value), host: step.host, dropoutLayers: [...(step.dropout?.layers ?? [])] });
      lossValue = out.value.dataSync()[0];
      out.value.dispose();
    } finally {
      step.dispose();
    }
    const named = new Map<string, tf.Tensor>();
    for (const [tfName, g] of Object.entries(grads)) named.set(this.tfNames.get(tfName) as string, g);
    // a NaN or infinite loss or gradient norm is never applied (cfg.onNonFinite: stop, or skip the batch)
    const gradNorm = Number.isFinite(lossValue) ? gradientNorm(named.values()) : NaN;
    if (!Number.isFinite(gradNorm)) {
      named.forEach((g) => g.dispose());
      this.skipNonFinite(lossValue, gradNorm, x0.shape[0]);
      return lossValue;
    }
    this.consecutiveSkips = 0;
    this.optimizer.apply(named, this.imagesSeen);
    named.forEach((g) => g.dispose());
    // a finite gradient times a learning rate far too high overflows: such weights are never trained on or saved
    const broken = firstNonFinite({ params: this.net.params });
    if (broken !== null) {
      throw new NonFiniteStepError(this.iteration, lossValue, gradNorm, `the update made ${broken} NaN or infinite, so no weights of this step are kept`, false, true);
    }
    // EDM's EMA schedule uses the image count before this step (its first update copies the weights)
    this.ema.update(this.imagesSeen, x0.shape[0]);
    this.posthoc?.update(this.imagesSeen, x0.shape[0]);
    this.imagesSeen += x0.shape[0];
    this.iteration += 1;
    if (trace) trace.applied = true;
    return lossValue;
  }

  /**
   * An eager step with its kernel calls recorded (intermediates in the replay's scratch pool): the recording of its
   * structure, checked on the next step of that structure. A step whose update was skipped is not kept.
   */
  private recordStep(replay: ReplayState, x0: tf.Tensor4D, ctx: LossContext, key: string, structure: string): number {
    const stateBefore = this.stateTensors();
    const stateBeforeArrays = new Map([...stateBefore].map(([key, t]) => [backendArray(t), key]));
    // a fresh EMA shares its arrays with the weights until its first update: record a later step
    if (stateBeforeArrays.size !== stateBefore.size) return replay.scratch.run(() => this.eagerStep(x0, ctx));
    const trace: EagerStepTrace = { applied: false };
    const x0Values = peekFloat32(x0);
    const { result, calls, unexpected } = recordAddonCalls(replay.addon, () => replay.scratch.run(() => this.eagerStep(x0, ctx, trace)));
    if (!trace.applied || !trace.loss || !trace.host) return result;
    try {
      if (trace.host.structure !== structure) throw new NotReplayable(`the loss computed the structure '${structure}' ahead, its step '${trace.host.structure}'`);
      const recording = StepRecording.fromStep(replay.addon, {
        calls, unexpected, structure: key, host: new Map(trace.host.arrays).set('x0', x0Values), stateBeforeArrays,
        stateAfter: new Map([...this.stateTensors()].map(([key, t]) => [key, backendArray(t)])),
        loss: trace.loss, dropoutLayers: trace.dropoutLayers ?? [], dropoutSeed: stepDropoutSeed(ctx), scratchBytesInUse: replay.scratch.pool.bytesInUse,
      });
      replay.recordings.set(key, recording);
      for (const old of replay.recordings.keys()) if (replay.recordings.size > RECORDINGS_KEPT) replay.recordings.delete(old);
      // the backend's pool serves no training step from now on: chunks it made for earlier work (an evaluator's set-up) can go
      outputPool.dropEmptyChunks();
    } catch (error) {
      if (!(error instanceof NotReplayable)) throw error;
      this.turnOffReplay(replay, error.message);
    }
    return result;
  }

  /**
   * The step after a recording, both ways: the replay on the state as it is (then put back), and the eager step for
   * real. Agreeing bit for bit (loss, every weight, moment and average) makes the recording the structure's from now
   * on; any difference turns replays off for the run. A step whose update was skipped proves nothing: the next one checks.
   */
  private verifyRecording(replay: ReplayState, recording: StepRecording, x0: tf.Tensor4D, ctx: LossContext, host: StepHostInputs): number {
    const state = this.stateTensors();
    const before = snapshotState(state);
    let replayed: ReplayOutcome | null = null;
    let after: Map<string, Float32Array> | null = null;
    try {
      replayed = recording.replay(this.replayInputs(recording, state, host, ctx, x0.shape[0]), (_, gradNorm) => Number.isFinite(gradNorm));
      if (replayed.applied) after = snapshotState(state);
    } catch (error) {
      this.turnOffReplay(replay, `the replay of '${recording.structure}' failed: ${(error as Error).message}`);
    } finally {
      restoreState(state, before);
    }
    const trace: EagerStepTrace = { applied: false };
    const loss = replay.scratch.run(() => this.eagerStep(x0, ctx, trace));
    if (!replayed) return loss;
    if (replayed.applied !== trace.applied) {
      this.turnOffReplay(replay, 'the replayed step and the eager one disagree on whether the update runs');
    } else if (after) {
      const difference = !Object.is(replayed.loss, loss) ? `the loss (${replayed.loss} replayed, ${loss} eager)` : firstDifference(this.stateTensors(), after);
      if (difference) this.turnOffReplay(replay, `the replayed step of '${recording.structure}' differs from the eager one in ${difference}`);
      else {
        if (!replay.announced) this.pendingNotes.push(`iteration ${this.iteration}: training steps are replayed natively from now on (each structure recorded and checked bit for bit against an eager step; --no-step-replay turns this off)`);
        replay.announced = true;
        recording.verified = true;
      }
    }
    return loss;
  }

  /** A step replayed from its structure's checked recording: the same numbers as an eager step, without tfjs. */
  private replayStep(recording: StepRecording, batch: number, ctx: LossContext, host: StepHostInputs): number {
    const outcome = recording.replay(this.replayInputs(recording, this.stateTensors(), host, ctx, batch), (_, gradNorm) => Number.isFinite(gradNorm));
    if (!outcome.applied) {
      this.skipNonFinite(outcome.loss, outcome.gradNorm, batch);
      return outcome.loss;
    }
    this.consecutiveSkips = 0;
    this.optimizer.countReplayedUpdate?.();
    // as after an eager step (where this check comes before the EMA update; the run stops either way)
    const broken = firstNonFinite({ params: this.net.params });
    if (broken !== null) {
      throw new NonFiniteStepError(this.iteration, outcome.loss, outcome.gradNorm, `the update made ${broken} NaN or infinite, so no weights of this step are kept`, false, true);
    }
    this.imagesSeen += batch;
    this.iteration += 1;
    return outcome.loss;
  }

  /** What a replay of the step at ctx needs besides its recording. */
  private replayInputs(recording: StepRecording, state: Map<string, tf.Tensor>, host: StepHostInputs, ctx: LossContext, batch: number): ReplayInputs {
    const momentCoefficients = this.optimizer.nextKernelCoefficients?.(this.imagesSeen);
    if (!momentCoefficients) throw new Error("replay: the optimiser does not update with the backend's kernel");
    return {
      structure: recording.structure, host: host.arrays, state, dropoutSeed: stepDropoutSeed(ctx), momentCoefficients,
      emaBetas: [this.ema, ...(this.posthoc?.emas ?? [])].map((ema) => ema.beta(this.imagesSeen, batch)),
    };
  }

  /**
   * Every tensor a step reads and replaces, by key: the parameters ('param/<name>'), the optimiser's moments
   * ('m/<name>', 'v/<name>'), the EMA ('ema0/<name>') and the tracked post-hoc EMAs ('ema1/<name>', ...).
   */
  private stateTensors(): Map<string, tf.Tensor> {
    const state = new Map<string, tf.Tensor>();
    for (const [name, p] of this.net.params) state.set(`param/${name}`, p);
    for (const [slot, t] of this.optimizer.liveSlots?.() ?? []) state.set(slot, t);
    [this.ema, ...(this.posthoc?.emas ?? [])].forEach((ema, j) => { for (const [name, w] of ema.weights) state.set(`ema${j}/${name}`, w); });
    return state;
  }

  /** Stops replaying steps for the rest of the run (said once in the run's log). */
  private turnOffReplay(replay: ReplayState, reason: string): void {
    replay.off = reason;
    replay.recordings.clear();
    this.pendingNotes.push(`training steps run eagerly from now on: ${reason}`);
  }

  /**
   * Whether steps are replayed: 'replaying' with the structures recorded and checked so far, or 'eager' and why
   * (not the onednn backend, turned off, a loss or network it does not cover, or a failed check).
   */
  stepReplayStatus(): { mode: 'replaying' | 'eager'; reason?: string; structures: string[] } {
    const replay = this.replay;
    if (!replay) return { mode: 'eager', reason: this.replayUnavailable ?? 'unavailable', structures: [] };
    if (replay.off !== null) return { mode: 'eager', reason: replay.off, structures: [] };
    return { mode: 'replaying', structures: [...replay.recordings.values()].filter((r) => r.verified).map((r) => r.structure) };
  }

  /**
   * Whether the steps from now on run as a long run's do: replayed (some structure recorded and checked) or eager for
   * good. Timings of a few steps (benchmarks, run estimates) warm up until it holds, at most REPLAY_WARMUP_STEPS steps.
   */
  get warmedUp(): boolean {
    const status = this.stepReplayStatus();
    return status.mode === 'eager' || status.structures.length > 0;
  }

  /** Notes about the run's steps not yet said (replays turned off, and why); emptied by the call. */
  takeNotes(): string[] {
    return this.pendingNotes.splice(0);
  }

  /**
   * A step with a non-finite loss or gradient norm: throws a NonFiniteStepError (policy 'stop', or too many in
   * a row), else counts the batch as seen and skipped, leaving weights, optimiser and EMA as they were.
   */
  private skipNonFinite(loss: number, gradNorm: number, batchSize: number): void {
    if (this.cfg.onNonFinite === 'stop') throw new NonFiniteStepError(this.iteration, loss, gradNorm, 'no weight was changed');
    this.consecutiveSkips += 1;
    if (this.consecutiveSkips >= MAX_CONSECUTIVE_SKIPS) {
      throw new NonFiniteStepError(this.iteration, loss, gradNorm, `the last ${this.consecutiveSkips} batches were all non-finite, so skipping batches does not help`, true);
    }
    this.skippedSteps += 1;
    this.imagesSeen += batchSize;
    this.iteration += 1;
  }

  /** Current learning rate. */
  learningRate(): number {
    return this.optimizer.learningRate(this.imagesSeen);
  }

  /**
   * Runs until cfg.iters, shouldStop, or the plateau rule (cfg.plateauGain: after an evaluation, the run is finished
   * early when its last doubling of images gained too little), logging, sampling, evaluating and checkpointing as
   * configured. `plateau` is what a checkpoint of a run the rule finished records, else null.
   */
  async run(events: TrainerEvents = {}): Promise<{ iteration: number; stopped: boolean; checkpoint: string | null; plateau: PlateauRecord | null }> {
    const { cfg } = this;
    const metricsFile = this.opts.runDir ? runPaths(this.opts.runDir).metrics : null;
    const loop: LoopState = {
      sessionStart: Date.now(), windowStart: Date.now(), windowImages: 0, lastCheckpoint: null,
      nextEval: nextEvalKimg(this.imagesSeen / 1000, cfg.evalEvery, cfg.evalGrowth),
      losses: new LossTrail(), divergence: new DivergenceWatch(cfg.divergenceFactor),
    };
    let stopped = false;
    while (this.iteration < cfg.iters) {
      // Train on one batch: a step that is not finite is never applied (stop, or skip and count), a diverging loss stops.
      const skippedBefore = this.skippedSteps;
      const loss = this.trainBatch(loop);
      const stats = this.progress(loop, loss);
      events.onStep?.(stats);
      for (const note of this.takeNotes()) events.onInfo?.(note);
      if (this.skippedSteps > skippedBefore) events.onInfo?.(`iteration ${this.iteration}: loss ${loss}, batch skipped (${this.skippedSteps} so far)`);

      // Let signal handlers (Ctrl-C) and timers run: a step is a synchronous 0.1-10 s, this takes microseconds.
      await yieldToSignals();
      const atCap = this.iteration === cfg.iters;
      const stopRequested = events.shouldStop?.() ?? false;
      stopped = !atCap && stopRequested;

      // Evaluate on the schedule; before the cap, an evaluation may finish the run (the plateau rule): this
      // iteration is then its last, not a stop to resume.
      const evaluation = await this.evaluateIfDue(loop, stats, atCap, stopRequested, events);
      const plateau = !atCap && cfg.plateauGain > 0 ? this.checkPlateau(metricsFile, evaluation, stats.kimg, events) : null;
      if (plateau) stopped = false;
      const last = atCap || plateau !== null;

      // Log a metrics.csv row: training columns every logEvery iterations and at the end, evaluation columns when evaluated.
      if (metricsFile) this.logMetrics(metricsFile, loop, stats, evaluation, last || stopped);

      // Write sample grids, the post-hoc EMA snapshot and the checkpoint, each on its own schedule and at the end.
      const checkpoint = await this.writeOutputs(last, stopped, plateau?.record, events);
      if (checkpoint) loop.lastCheckpoint = checkpoint;

      if (plateau) {
        events.onInfo?.(plateau.message);
        return { iteration: this.iteration, stopped: false, checkpoint: loop.lastCheckpoint, plateau: plateau.record };
      }
      if (stopped) break;
    }
    return { iteration: this.iteration, stopped, checkpoint: loop.lastCheckpoint, plateau: null };
  }

  /** One step on the next batch; a non-finite step or a diverging loss becomes the error that stops the run. */
  private trainBatch(loop: LoopState): number {
    const batch = this.loader.next();
    let loss: number;
    try {
      loss = this.step(batch.images, batch.labels);
    } catch (err) {
      if (err instanceof NonFiniteStepError) throw new Error(this.nonFiniteReport(err, loop.losses));
      throw err;
    } finally {
      batch.images.dispose();
    }
    loop.losses.add(this.iteration, loss);
    const diverged = loop.divergence.add(this.iteration, loss);
    if (diverged) throw new Error(this.divergenceReport(diverged));
    return loss;
  }

  /** The loop's progress after a step: counters, learning rate, stage, speed over the logging window, wall time. */
  private progress(loop: LoopState, loss: number): StepStats {
    const { cfg } = this;
    loop.windowImages += cfg.batch;
    const elapsed = (Date.now() - loop.windowStart) / 1000;
    const stats: StepStats = {
      iteration: this.iteration, totalIters: cfg.iters, kimg: this.imagesSeen / 1000, loss, lr: this.learningRate(),
      stage: this.loss.stage(this.iteration - 1),
      imgPerSec: elapsed > 0 ? loop.windowImages / elapsed : 0,
      wallSeconds: this.wallOffset + (Date.now() - loop.sessionStart) / 1000,
    };
    this.wallSeconds = stats.wallSeconds;
    return stats;
  }

  /**
   * The evaluation of this iteration when one is due (its images reached the next budget, or the run's last iteration
   * when it evaluates at all), else {}. A stop request skips it: the checkpoint can be evaluated later.
   */
  private async evaluateIfDue(loop: LoopState, stats: StepStats, atCap: boolean, stopRequested: boolean, events: TrainerEvents): Promise<Record<string, number>> {
    const { cfg } = this;
    const due = this.opts.evaluator && cfg.evalN > 0 && (reachedEvalBudget(stats.kimg, loop.nextEval) || (atCap && cfg.evalEvery > 0));
    if (!due) return {};
    if (stopRequested) {
      events.onInfo?.(`stop requested: the evaluation at ${stats.kimg} kimg is skipped (ect eval of the checkpoint gives it)`);
      return {};
    }
    const evaluation = await this.evaluate(events);
    loop.nextEval = nextEvalKimg(stats.kimg, cfg.evalEvery, cfg.evalGrowth);
    return evaluation;
  }

  /** Appends this iteration's row, if it has one: its training columns when due (`final`: always), its evaluation's. */
  private logMetrics(metricsFile: string, loop: LoopState, stats: StepStats, evaluation: Record<string, number>, final: boolean): void {
    const { cfg } = this;
    const row: Record<string, number> = {};
    if (this.iteration % cfg.logEvery === 0 || final) {
      Object.assign(row, { iter: stats.iteration, kimg: stats.kimg, loss: stats.loss, lr: stats.lr, stage: stats.stage,
        img_per_s: stats.imgPerSec, wall_s: stats.wallSeconds }, cfg.onNonFinite === 'skip' ? { skipped: this.skippedSteps } : {});
      loop.windowStart = Date.now();
      loop.windowImages = 0;
    }
    if (Object.keys(evaluation).length) Object.assign(row, evaluation, { iter: stats.iteration, kimg: stats.kimg });
    if (Object.keys(row).length) appendMetricsRow(metricsFile, row);
  }

  /**
   * Writes what is due after a step into the run folder: sample grids, the post-hoc EMA snapshot, the checkpoint
   * (`last`: the run's final ones; `stopped`: a checkpoint to resume from). Returns the checkpoint written, or null.
   */
  private async writeOutputs(last: boolean, stopped: boolean, plateau: PlateauRecord | undefined, events: TrainerEvents): Promise<string | null> {
    const { cfg } = this;
    if (!this.opts.runDir) return null;
    if ((cfg.sampleEvery > 0 && this.iteration % cfg.sampleEvery === 0) || last) {
      const stopGrids = () => (last ? events.shouldStop?.() ?? false : false);  // a stop skips what is left of the final grids
      for (const file of await this.writeSampleGrids(last ? 'final' : `iter-${String(this.iteration).padStart(7, '0')}`, stopGrids)) events.onInfo?.(`wrote ${file}`);
    }
    // a snapshot before the checkpoint: a run killed between the two redoes the steps and writes the same snapshot
    if (cfg.ema.posthoc && (this.iteration % cfg.ema.posthoc.snapshotEvery === 0 || last)) {
      const snapshot = this.savePosthocSnapshot();
      events.onInfo?.(`post-hoc EMA snapshot ${snapshot}`);
    }
    if (this.iteration % cfg.ckptEvery === 0 || last || stopped) {
      const checkpoint = this.saveCheckpoint(plateau);
      events.onInfo?.(`checkpoint ${checkpoint}`);
      return checkpoint;
    }
    return null;
  }

  /**
   * The plateau rule (lib/train/plateau.ts) after an evaluation, on its primary fd column: the record and message
   * when it finishes the run, else null (said in an info line when it was checked). The earlier evaluations come
   * from metrics.csv, so a resumed run sees its whole history; a trainer without a run directory has none.
   */
  private checkPlateau(metricsFile: string | null, evaluation: Record<string, number>, kimg: number, events: TrainerEvents)
    : { record: PlateauRecord; message: string } | null {
    const metric = primaryFdColumn(Object.keys(evaluation));
    if (metric === null || metricsFile === null) return null;
    const check = plateauCheck(evaluationsOf(readMetrics(metricsFile).rows, metric), { kimg, fd: evaluation[metric] }, this.cfg.plateauGain);
    if (check === null) return null;
    if (!check.stop) {
      events.onInfo?.(describePlateau(check, metric));
      return null;
    }
    return { record: plateauRecord(check, metric), message: describePlateau(check, metric) };
  }

  /** The message of a run stopped by the divergence rule: what grew, and the checkpoint to go back to. */
  private divergenceReport(diverged: string): string {
    const dir = this.opts.runDir ? runPaths(this.opts.runDir).checkpoints : null;
    const newest = dir ? latestCheckpoint(dir) : null;
    return `iteration ${this.iteration}: the loss diverged: ${diverged}, and the run stops. Likely cause: the learning rate ` +
      `(optimizer.lr = ${this.cfg.optimizer.lr}) is too high. ` +
      (newest ? `The newest checkpoint is ${newest}; its loss may already be growing: start a new run with a lower --lr. ` : 'Start again with a lower --lr. ') +
      'To train on regardless, raise --divergence-factor or set it to 0.';
  }

  /** The message of a run stopped by a non-finite step: where, the likely cause, and the checkpoint to go back to. */
  private nonFiniteReport(err: NonFiniteStepError, losses: LossTrail): string {
    const { first, last } = losses;
    const lr = `optimizer.lr = ${this.cfg.optimizer.lr}`;
    const cause = err.weights
      ? `a finite gradient times the learning rate (${lr}) overflowed float32: the learning rate is far too high`
      : first === null || last === null
      ? 'the first step of this session overflowed: look at the data and the starting weights'
      : last.loss > DIVERGED_LOSS_RATIO * first.loss
        ? `the loss diverged (${first.loss.toPrecision(4)} at iteration ${first.iteration}, ${last.loss.toPrecision(4)} at ${last.iteration}): the learning rate (${lr}) is likely too high`
        : err.repeated
          ? `every batch fails since iteration ${last.iteration + 1} although the loss was steady until then (${last.loss.toPrecision(4)}): look at the data and the weights`
          : `one batch overflowed although the loss was steady (${last.loss.toPrecision(4)} at iteration ${last.iteration}): an unusual batch, or a learning rate (${lr}) at the edge of stability`;
    const dir = this.opts.runDir ? runPaths(this.opts.runDir).checkpoints : null;
    const newest = dir ? latestCheckpoint(dir) : null;
    const orSkip = this.cfg.onNonFinite === 'skip' || err.weights ? '' : ', or let the run skip such batches with --on-non-finite skip';
    const back = newest
      ? `The newest checkpoint, ${newest} (iteration ${Number(path.basename(newest).replace(/\D/g, ''))}), holds the last finite weights: ` +
        `continue from it with --resume${orSkip}; if the loss diverged, start a new run with a lower --lr.`
      : `No checkpoint was written yet: start again, with a lower --lr if the loss diverged${orSkip}.`;
    return `${err.message}, and the run stops. Likely cause: ${cause}. ${back}`;
  }

  /**
   * Evaluates the EMA model with each of the run's samplers on the fixed evaluation noise of cfg.evalSeed (validation
   * latents in new runs): the same numbers `ect eval --seed <evalSeed>` gives for this iteration's checkpoint.
   */
  async evaluate(events: TrainerEvents = {}): Promise<Record<string, number>> {
    const evaluator = this.opts.evaluator;
    if (!evaluator) return {};
    const out: Record<string, number> = {};
    for (const steps of runSamplers(this.cfg)) {
      const label = samplerLabel(steps);
      await yieldToSignals();
      if (events.shouldStop?.()) {
        events.onInfo?.(`stop requested: the ${label} evaluation is skipped`);
        break;
      }
      Object.assign(out, await evaluator.evaluate(this.samplerModel(), steps, {
        n: this.cfg.evalN, seed: this.cfg.evalSeed, onProgress: (done, total) => events.onEvalProgress?.(label, done, total),
      }));
    }
    return out;
  }

  /** The EMA model as the samplers see it. */
  samplerModel(): SamplerModel {
    return samplerModelFor(this.net, this.ema.weights, this.cfg);
  }

  /**
   * Writes 8x8 sample grids of the EMA model from the default sample seed's noise, so grids are comparable
   * across iterations and `ect sample --n 64` of the checkpoint draws the same images (an image's noise depends on
   * its index only, so the run's batch, which bounds the memory, draws the same grid). Between batches it lets
   * signal handlers run; once `shouldStop` says so, the grids left are skipped.
   */
  async writeSampleGrids(tag: string, shouldStop: () => boolean = () => false): Promise<string[]> {
    const runDir = this.opts.runDir;
    if (!runDir) return [];
    const dir = runPaths(runDir).samples;
    fs.mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    for (const steps of runSamplers(this.cfg)) {
      const parts: tf.Tensor4D[] = [];
      try {
        for (const part of sampleBatches(this.samplerModel(), steps, GRID_IMAGES, { batch: Math.min(GRID_IMAGES, this.cfg.batch), seed: DEFAULT_SAMPLE_SEED })) {
          parts.push(part.images);
          await yieldToSignals();
          if (shouldStop()) return files;
        }
        const images = tf.tidy(() => tf.concat(parts, 0) as tf.Tensor4D);
        const file = path.join(dir, `${tag}-${samplerLabel(steps)}.png`);
        writeFileNamed(file, imagesToGridPng(images, GRID_COLUMNS));
        images.dispose();
        files.push(file);
      } finally {
        tf.dispose(parts);
      }
    }
    return files;
  }

  /**
   * Saves online weights, EMA, optimiser state, counters and loader state; keeps the newest few. `plateau`: the
   * plateau rule finished the run here (lib/train/launch.ts runStatus reads it).
   */
  saveCheckpoint(plateau?: PlateauRecord): string {
    if (!this.opts.runDir) throw new Error('saveCheckpoint: this trainer has no run directory');
    const dir = runPaths(this.opts.runDir).checkpoints;
    const file = checkpointPath(dir, this.iteration);
    const broken = firstNonFinite({ params: this.net.params, ema: this.ema.weights });
    if (broken !== null) throw new Error(`checkpoint ${file} not written: ${broken} holds NaN or infinite values; the checkpoints kept hold the last finite weights`);
    const optState = this.optimizer.getState();
    try {
      saveCheckpoint(file, {
        meta: {
          format: 'ect-workbench-run', iteration: this.iteration, imagesSeen: this.imagesSeen,
          wallSeconds: this.wallSeconds, optimizerStep: optState.step, loader: this.loader.getState(), skippedSteps: this.skippedSteps,
          config: recordedRunConfig(this.cfg, this.opts.runDir), backend: this.opts.backend ?? null, ...(plateau ? { plateau } : {}),
        },
        groups: { params: new Map(this.net.params), ema: this.ema.weights, optimizer: optState.slots, ...this.posthoc?.groups() },
      });
    } finally {
      optState.slots.forEach((t) => t.dispose());
    }
    pruneCheckpoints(dir, CHECKPOINTS_KEPT);
    return file;
  }

  /**
   * Writes the tracked post-hoc EMAs as they are now to posthoc/snapshot-<iteration>.ckpt (groups posthoc-<i>, with
   * their widths and the images seen in its meta), for `ect posthoc-ema`. Snapshots are never pruned.
   */
  savePosthocSnapshot(): string {
    if (!this.opts.runDir || !this.posthoc) throw new Error('savePosthocSnapshot: this trainer has no run directory or no ema.posthoc');
    const file = path.join(runPaths(this.opts.runDir).posthoc, path.basename(checkpointPath('', this.iteration)).replace(/^ckpt-/, 'snapshot-'));
    saveCheckpoint(file, {
      meta: {
        format: 'ect-workbench-posthoc-snapshot', iteration: this.iteration, imagesSeen: this.imagesSeen, sigmaRels: this.posthoc.sigmaRels,
        config: recordedRunConfig(this.cfg, this.opts.runDir), backend: this.opts.backend ?? null,
      },
      groups: this.posthoc.groups(),
    });
    return file;
  }

  /** Restores everything saveCheckpoint wrote, from the checkpoint file or the launcher's opened one. */
  private restore(source: string | OpenedCheckpoint): void {
    const opened = typeof source === 'string' ? openCheckpoint(source) : source;
    const file = opened.file;
    const ckpt = loadCheckedCheckpoint(opened, {
      load: opened.groupNames,  // posthoc-<i> too, when the run tracks them
      required: ['params', 'ema', 'optimizer'],
      missing: (present) => (present.includes('ema') && !present.includes('params') && !present.includes('optimizer')
        ? 'holds the EMA weights alone (a shipped teacher, or a checkpoint trimmed by ect trim-checkpoint), so training cannot resume from it; ' +
          'start a new run from these weights with --init instead'
        : 'not a training checkpoint (needs params, ema and optimizer groups)'),
      shapes: this.net.paramShapes(), shaped: ['params', 'ema'], finite: ['params', 'ema', 'optimizer'],
    });
    try {
      const { params, ema, optimizer } = ckpt.groups;
      for (const [name, p] of this.net.params) p.assign(params.get(name) as tf.Tensor);
      this.ema.setWeights(ema);
      this.posthoc?.restore(file, ckpt.groups);
      const meta = ckpt.meta as { iteration: number; imagesSeen: number; wallSeconds: number; optimizerStep: number; loader: LoaderState; skippedSteps?: number };
      this.optimizer.setState({ step: meta.optimizerStep, slots: optimizer });
      this.loader.setState(meta.loader);
      this.iteration = meta.iteration;
      this.imagesSeen = meta.imagesSeen;
      this.wallOffset = meta.wallSeconds ?? 0;
      this.wallSeconds = this.wallOffset;
      this.skippedSteps = meta.skippedSteps ?? 0;  // absent in checkpoints written before skipping existed
    } finally {
      disposeCheckpoint(ckpt);
    }
  }

  /** Prepares step replays (lib/train/step-replay.ts) where they apply, else notes why not. */
  private setUpReplay(wanted: boolean): void {
    const addon = tf.getBackend() === 'onednn' ? onednnAddon() : undefined;
    this.replayUnavailable = !wanted ? 'turned off (--no-step-replay, or ECT_STEP_REPLAY=off)'
      : !addon ? 'replays need the onednn backend'
      : !this.loss.hostInputs ? 'the loss does not compute its host inputs ahead'
      : !this.optimizer.nextKernelCoefficients?.(this.imagesSeen) ? "the optimiser does not update with the backend's kernel"
      : null;
    if (this.replayUnavailable === null && addon) this.replay = { addon, scratch: new ReplayScratch(addon), recordings: new Map(), off: null, announced: false };
  }

  /** Frees the network, optimiser and EMA. */
  dispose(): void {
    this.replay?.scratch.dispose();
    this.replay = null;
    this.optimizer.dispose();
    this.ema.dispose();
    this.posthoc?.dispose();
    this.net.dispose();
  }
}

/** The trainer's step replays: the addon, the scratch pool of the recordings' intermediates, a recording per structure. */
interface ReplayState {
  addon: OnednnAddon;
  scratch: ReplayScratch;
  recordings: Map<string, StepRecording>;
  off: string | null;   // why replays were turned off for the run, else null
  announced: boolean;   // the run's log said that steps are replayed
}

/** What an eager step being recorded or checked reports: its loss array, host inputs and dropout layers, and whether its update ran. */
interface EagerStepTrace {
  applied: boolean;
  loss?: Float32Array;
  host?: StepHostInputs;
  dropoutLayers?: string[];
}

/** Most steps before a trainer replays: one eager (its EMA still shares the weights' arrays), one recorded, one checked. */
export const REPLAY_WARMUP_STEPS = 3;

/** Recordings a trainer keeps, the most recently used (each holds its host arrays: ~6 MB for a CIFAR-10 batch of 512). */
const RECORDINGS_KEPT = 4;

/** ECT_STEP_REPLAY=off (or 0, false, no) turns replays off where a trainer is made without saying. */
function stepReplayFromEnvironment(): boolean {
  return !/^(off|0|false|no)$/i.test(process.env.ECT_STEP_REPLAY ?? '');
}

/** What the training loop carries from one iteration to the next. */
interface LoopState {
  sessionStart: number;            // when this session started (ms): the run's wall time adds to the earlier sessions'
  windowStart: number;             // start of the logging window, over which images per second are measured
  windowImages: number;
  nextEval: number;                // kimg of the next scheduled evaluation
  lastCheckpoint: string | null;   // the newest checkpoint this session wrote
  losses: LossTrail;
  divergence: DivergenceWatch;
}

/** Images of a sample grid, and its columns (8x8). */
const GRID_IMAGES = 64;
const GRID_COLUMNS = 8;

/** Lets signal handlers and timers run: a step or a batch of samples is synchronous, this takes microseconds. */
function yieldToSignals(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** A loss this many times the session's first one counts as diverged in the report of a non-finite step. */
const DIVERGED_LOSS_RATIO = 10;

/** The first and the last finite loss of a training session, for the report of a non-finite step. */
class LossTrail {
  first: { iteration: number; loss: number } | null = null;
  last: { iteration: number; loss: number } | null = null;

  add(iteration: number, loss: number): void {
    if (!Number.isFinite(loss)) return;
    this.last = { iteration, loss };
    this.first ??= this.last;
  }
}

/** The EMA weights of a checkpoint, checked against the network and for finiteness (the other groups are not built). */
function loadEmaWeights(source: string | OpenedCheckpoint, net: UNet): Map<string, tf.Tensor> {
  return loadCheckedCheckpoint(source, { load: ['ema'], shapes: net.paramShapes(), shaped: ['ema'], finite: ['ema'] }).groups.ema;
}

/** The backend's own array of a tensor (onednn and cpu keep tensors in JS arrays). */
function backendArray(t: tf.Tensor): Float32Array {
  return (tf.backend() as MathBackendCPU).data.get(t.dataId).values as Float32Array;
}
