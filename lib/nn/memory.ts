/**
 * The memory of sampling, estimated from the layer plan: what one image of a batch costs during a network call,
 * and the batch a memory budget allows (used when no batch is given).
 */
import * as os from 'node:os';
import type { NetworkConfig } from '../config/types';
import { planUNet } from './architecture';

/**
 * float32 values alive during a call per value of a block's input and output (norms, activations, convolutions and
 * sums, kept until the call ends), and per attention score (scores, softmax, weighted sum). Calibrated on EDM's
 * CIFAR-10 DDPM++ (55.7M parameters), which costs about 140 MB per image of batch when sampling.
 */
const VALUES_PER_BLOCK_VALUE = 4;
const VALUES_PER_ATTENTION_SCORE = 3;
const BYTES_PER_VALUE = 4;

/** The largest batch a derived batch size takes: past it a batch no longer samples faster, and a grid is 64 images. */
export const MAX_DERIVED_BATCH = 64;

/** The memory budget of sampling when none is given: a quarter of this machine's memory. */
export function defaultSamplingBudgetBytes(): number {
  return os.totalmem() / 4;
}

/** Estimated bytes one image of a batch costs during a network call of this network. */
export function samplingBytesPerImage(cfg: NetworkConfig): number {
  const plan = planUNet(cfg);
  let values = plan.inputConv.resolution ** 2 * plan.inputConv.outChannels;
  for (const block of [...plan.encoder, ...plan.decoder]) {
    const area = block.resolution ** 2;
    values += VALUES_PER_BLOCK_VALUE * area * (block.inChannels + block.outChannels);
    if (block.attention) values += VALUES_PER_ATTENTION_SCORE * area * area;
  }
  return values * BYTES_PER_VALUE;
}

/** The batch that keeps a network call within `budgetBytes` (at least 1, at most `max`). */
export function batchForMemory(cfg: NetworkConfig, budgetBytes: number, max = MAX_DERIVED_BATCH): number {
  return Math.max(1, Math.min(max, Math.floor(budgetBytes / samplingBytesPerImage(cfg))));
}
