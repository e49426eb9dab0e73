/** The benchmark's training step: the project's Trainer doing ECT steps on a UNet shaped like the PyTorch peer's. */
import * as tf from '@tensorflow/tfjs-core';
import '../lib/tf-gradients';
import { defaultRunConfig } from '../lib/config/defaults';
import type { Precision, RunConfig } from '../lib/config/types';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { forwardFlopsPerImage, PASSES_PER_IMAGE } from '../lib/nn/flops';
import { REPLAY_WARMUP_STEPS, Trainer } from '../lib/train/trainer';

/** One configuration in the peer's vocabulary (bench/peer/README.md). */
export interface BenchShape {
  res: number;       // image resolution
  in_ch: number;     // image channels
  ch: number;        // model channels
  mult: number[];    // channel multipliers per resolution
  blocks: number;    // residual blocks per resolution
  attn: number[];    // resolutions with self-attention
  batch: number;
}

/** The README's three configurations, largest first. */
export const BENCH_SHAPES: Record<string, BenchShape> = {
  'res32-ch64': { res: 32, in_ch: 3, ch: 64, mult: [1, 2, 2], blocks: 2, attn: [16], batch: 32 },
  'res28-ch32': { res: 28, in_ch: 1, ch: 32, mult: [1, 2, 2], blocks: 1, attn: [7], batch: 64 },
  'res28-ch16': { res: 28, in_ch: 1, ch: 16, mult: [1, 2, 2], blocks: 1, attn: [7], batch: 64 },
};

/** Shapes for smoke tests of the benchmark itself (`--quick`): seconds per round, never a default configuration. */
export const SMOKE_SHAPES: Record<string, BenchShape> = {
  tiny: { res: 28, in_ch: 1, ch: 8, mult: [1, 2], blocks: 1, attn: [], batch: 8 },
};

/** A configuration by name: the benchmark's three, or a smoke-test shape. */
export function benchShape(name: string): BenchShape | undefined {
  return BENCH_SHAPES[name] ?? SMOKE_SHAPES[name];
}

/**
 * A tuning RunConfig matching the peer's step: dropout 0.2, Adam at lr 1e-4 without ramp-up, and the
 * sigmoid mapping with r = t (1 - n(t)/4) (q = 4, one stage), so the target pass runs for large t.
 */
export function benchRunConfig(shape: BenchShape): RunConfig {
  const cfg = defaultRunConfig('tune');
  cfg.name = 'bench';
  cfg.net = {
    ...cfg.net, resolution: shape.res, imageChannels: shape.in_ch, modelChannels: shape.ch, channelMult: shape.mult,
    numBlocks: shape.blocks, attnResolutions: shape.attn, dropout: 0.2,
  };
  cfg.ect = { ...cfg.ect, q: 4, stageIters: 1e9 };
  cfg.optimizer = { name: 'adam', lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, rampupKimg: 0 };
  cfg.batch = shape.batch;
  cfg.iters = 1e9;
  cfg.data = { name: 'synthetic', flip: false };
  return cfg;
}

/**
 * A trainer on the current tfjs backend, with synthetic images of the right shape (no files), its steps in `precision`;
 * `stepReplay` false keeps every step eager (profiles of tfjs's kernels); by default steps are replayed as in a run
 * (unless ECT_STEP_REPLAY=off).
 */
export async function createBenchTrainer(shape: BenchShape, precision: Precision = 'fp32', stepReplay?: boolean): Promise<Trainer> {
  const cfg = benchRunConfig(shape);
  cfg.precision = precision;
  const dataset = makeSyntheticDataset('train', { count: Math.max(256, shape.batch), height: shape.res, width: shape.res, channels: shape.in_ch });
  return Trainer.create(cfg, { runDir: null, dataset, evaluator: null, stepReplay });
}

/** Runs steps until the trainer's steps run as a long run's (replayed, or eager for good), at most REPLAY_WARMUP_STEPS. */
export function warmUpReplay(trainer: Trainer): void {
  for (let i = 0; i < REPLAY_WARMUP_STEPS && !trainer.warmedUp; i++) runStep(trainer);
}

/** FLOPs of one ECT training step per image: student forward + backward and the target forward. */
export function stepFlopsPerImage(shape: BenchShape): number {
  return PASSES_PER_IMAGE.ect * forwardFlopsPerImage(benchRunConfig(shape).net);
}

/** Runs one step on the next batch and frees the batch; returns the loss. */
export function runStep(trainer: Trainer): number {
  const batch = trainer.loader.next();
  try {
    return trainer.step(batch.images, batch.labels);
  } finally {
    batch.images.dispose();
  }
}

/** Frees the trainer's tensors (network, optimiser state, EMA) as far as its API allows. */
export function disposeTrainer(trainer: Trainer): void {
  trainer.net.dispose();
  const disposable = [trainer.optimizer, trainer.ema] as unknown as Array<{ dispose?: () => void }>;
  for (const d of disposable) d.dispose?.();
  tf.disposeVariables();
}
