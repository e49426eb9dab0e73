/**
 * The interface every training loss implements (EDM's, lib/edm/loss.ts; ECT's, lib/ect/loss.ts), so the trainer
 * calls them the same way, and the dropout masks a step's passes share.
 */
import * as tf from '@tensorflow/tfjs-core';
import { DropoutMasks, type ClassLabels, type UNet } from './nn/unet';
import { drawSeed } from './random';

/** What a loss needs to know of a training step besides the network and the images. */
export interface LossContext {
  seed: number;            // run seed
  iteration: number;       // the step: with the seed, it fixes every random draw of the step
  labels?: ClassLabels;    // class ids of the batch, passed to every forward pass (undefined: unconditional network)
}

/**
 * The arrays a training step's kernels read that change from step to step, computed on the host before any of its
 * tensor work: with them (and the step's seeds) steps of one structure make the same kernel calls on the same shapes,
 * which is what lets a recorded step be replayed (lib/train/step-replay.ts).
 */
export interface StepHostInputs {
  /** Steps with the same structure make the same kernel calls (it names the branches the step takes). */
  structure: string;
  /** Every per-step host array the step's tensors are made from, by name (the batch itself excepted: the trainer adds it). */
  arrays: Map<string, Float32Array | Uint8Array>;
}

/** Seeded standard normal noise of `shape` as a host array: the values of tf.randomNormal(shape, 0, 1, 'float32', seed). */
export function normalNoiseValues(shape: number[], seed: number): Float32Array {
  const noise = tf.randomNormal(shape, 0, 1, 'float32', seed);
  try {
    return noise.dataSync() as Float32Array;
  } finally {
    noise.dispose();
  }
}

/** One step of a loss, prepared outside the gradient; `loss()` runs inside it. */
export interface LossStep {
  /** The step's host arrays (its tensors are made from exactly these), when the loss computes them ahead. */
  readonly host?: StepHostInputs;
  /** The step's dropout masks (their layers and seeds), when it uses dropout. */
  readonly dropout?: DropoutMasks;
  /** The batch-mean loss as a scalar; call inside tf.variableGrads. */
  loss(): tf.Scalar;
  /** Frees what the step holds (noise, dropout masks, the target). */
  dispose(): void;
}

/**
 * A training loss, as EDM's training loop sees one: `prepare(net, images, ctx)` draws the step's noise and
 * masks and does any work without gradient (ECT's target pass); the trainer then differentiates `loss()`.
 */
export interface TrainingLoss {
  prepare(net: UNet, x0: tf.Tensor4D, ctx: LossContext): LossStep;
  /**
   * The host arrays of the step `prepare` makes for a batch of this shape at ctx: the same arrays, computed without
   * any tensor work (absent: the loss's steps cannot be replayed).
   */
  hostInputs?(net: UNet, shape: [number, number, number, number], ctx: LossContext): StepHostInputs;
  /** The schedule's stage at an iteration, logged in metrics.csv (0 when the loss has no stages). */
  stage(iteration: number): number;
}

/**
 * The dropout masks of one training step, the same in every loss and shared by its passes: units seeded from
 * (run seed, iteration, 'dropout'), labels from (run seed, iteration, 'label-dropout').
 */
export function stepDropoutMasks(net: UNet, ctx: LossContext): DropoutMasks {
  return new DropoutMasks(stepDropoutSeed(ctx), net.cfg.dropout,
    { seed: drawSeed(ctx.seed, ctx.iteration, 'label-dropout'), rate: net.cfg.labelDropout });
}

/** The seed of a step's unit dropout masks (each layer's mask is seeded from it and the layer's name). */
export function stepDropoutSeed(ctx: Pick<LossContext, 'seed' | 'iteration'>): number {
  return drawSeed(ctx.seed, ctx.iteration, 'dropout');
}
