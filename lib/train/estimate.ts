/**
 * How long training will take here: times a few steps of a run's network and loss on the current backend
 * (synthetic images of the run's shape, random weights), so an estimate is measured on the machine that
 * will run it rather than taken from another machine's figures.
 */
import type { RunConfig } from '../config/types';
import { makeSyntheticDataset } from '../data';
import { Trainer } from './trainer';

const TIMED_STEPS = 2;   // after one warm-up step (primitive creation, first allocations)

/** Seconds per training iteration of `cfg` on the current backend. */
export async function secondsPerIteration(cfg: RunConfig, steps = TIMED_STEPS): Promise<number> {
  const { resolution, imageChannels } = cfg.net;
  const dataset = makeSyntheticDataset('train', { count: cfg.batch, height: resolution, width: resolution, channels: imageChannels });
  const timing: RunConfig = { ...cfg, init: undefined, iters: steps + 1, evalEvery: 0 };
  const trainer = await Trainer.create(timing, { runDir: null, dataset });
  try {
    const warmUp = trainer.loader.next();
    trainer.step(warmUp.images, warmUp.labels);
    warmUp.images.dispose();
    const started = performance.now();
    for (let i = 0; i < steps; i++) {
      const batch = trainer.loader.next();
      trainer.step(batch.images, batch.labels);
      batch.images.dispose();
    }
    return (performance.now() - started) / 1000 / steps;
  } finally {
    trainer.dispose();
  }
}
