/**
 * How long training will take here: times a few steps of a run's network and loss on the current backend
 * (synthetic images of the run's shape, random weights), so an estimate is measured on the machine that
 * will run it rather than taken from another machine's figures.
 */
import type { RunConfig } from '../config/types';
import { makeSyntheticDataset } from '../data';
import { REPLAY_WARMUP_STEPS, Trainer } from './trainer';

const TIMED_STEPS = 2;   // after warm-up steps (primitive creation, first allocations, and until steps replay)

/** Seconds per training iteration of `cfg` on the current backend. */
export async function secondsPerIteration(cfg: RunConfig, steps = TIMED_STEPS): Promise<number> {
  const { resolution, imageChannels } = cfg.net;
  const dataset = makeSyntheticDataset('train', { count: cfg.batch, height: resolution, width: resolution, channels: imageChannels });
  const timing: RunConfig = { ...cfg, init: undefined, iters: steps + REPLAY_WARMUP_STEPS, evalEvery: 0 };
  const trainer = await Trainer.create(timing, { runDir: null, dataset });
  try {
    // at least one step; then until steps run as the run's will (replayed once recorded and checked)
    for (let i = 0; i === 0 || (i < REPLAY_WARMUP_STEPS && !trainer.warmedUp); i++) {
      const warmUp = trainer.loader.next();
      trainer.step(warmUp.images, warmUp.labels);
      warmUp.images.dispose();
    }
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
