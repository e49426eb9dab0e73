/**
 * The interface every training loss implements (EDM's, lib/edm/loss.ts; ECT's, lib/ect/loss.ts), so the trainer
 * calls them the same way, and the dropout masks a step's passes share.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { DropoutMasks, type ClassLabels, type UNet } from './nn/unet';
import { drawSeed } from './random';

/** What a loss needs to know of a training step besides the network and the images. */
export interface LossContext {
  seed: number;            // run seed
  iteration: number;       // the step: with the seed, it fixes every random draw of the step
  labels?: ClassLabels;    // class ids of the batch, passed to every forward pass (undefined: unconditional network)
}

/** One step of a loss, prepared outside the gradient; `loss()` runs inside it. */
export interface LossStep {
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
  /** The schedule's stage at an iteration, logged in metrics.csv (0 when the loss has no stages). */
  stage(iteration: number): number;
}

/**
 * The dropout masks of one training step, the same in every loss and shared by its passes: units seeded from
 * (run seed, iteration, 'dropout'), labels from (run seed, iteration, 'label-dropout').
 */
export function stepDropoutMasks(net: UNet, ctx: LossContext): DropoutMasks {
  return new DropoutMasks(drawSeed(ctx.seed, ctx.iteration, 'dropout'), net.cfg.dropout,
    { seed: drawSeed(ctx.seed, ctx.iteration, 'label-dropout'), rate: net.cfg.labelDropout });
}
