/**
 * How much of an ECT loss bf16 rounding adds: the same weights, batch, noise and dropout masks, the loss computed in
 * fp32 and in bf16 mixed precision, at several iterations of the run's schedule (its stages: r moves towards t, so the
 * two passes' outputs move closer). Where the bf16 loss stays well above the fp32 one at the same weights, the
 * rounding noise is the size of the consistency signal itself.
 *
 *   node dist/bench/bf16-loss-floor.js <run folder> [--iterations 100,500,1000,2400] [--batches 4]
 *
 * Loads the run's config.json and its newest checkpoint (EMA weights), on the onednn backend; needs avx512_bf16.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '../lib/tf-gradients';
import { initBackend } from '../lib/backend/select';
import { withPrecision } from '../lib/backend/onednn/precision';
import type { RunConfig } from '../lib/config/types';
import { latestCheckpoint } from '../lib/train/checkpoint';
import { Trainer } from '../lib/train/trainer';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
  const run = argv.find((a, i) => !a.startsWith('--') && !['--iterations', '--batches'].includes(argv[i - 1]));
  if (!run) throw new Error('usage: node dist/bench/bf16-loss-floor.js <run folder> [--iterations 100,500,1000,2400] [--batches 4]');
  const cfg = JSON.parse(fs.readFileSync(path.join(run, 'config.json'), 'utf8')) as RunConfig;
  const checkpoint = latestCheckpoint(path.join(run, 'checkpoints'));
  if (!checkpoint) throw new Error(`${run}: no checkpoint in checkpoints/`);
  await initBackend('onednn');
  delete (cfg as Partial<RunConfig>).init;
  cfg.precision = 'fp32';
  const trainer = await Trainer.create(cfg, { runDir: null, evaluator: null, start: { from: 'init', checkpoint } });
  const iterations = (value('--iterations') ?? '100,500,1000,2400').split(',').map(Number);
  const batches = Number(value('--batches') ?? 4);
  console.log(`${path.basename(run)}: ${checkpoint} (EMA weights), batch ${cfg.batch}, ${batches} batches per iteration`);
  console.log('iteration | stage | loss fp32 | loss bf16 | bf16 / fp32');
  for (const iteration of iterations) {
    let fp32 = 0;
    let bf16 = 0;
    for (let b = 0; b < batches; b++) {
      const batch = trainer.loader.next();
      const lossIn = (precision: 'fp32' | 'bf16') => withPrecision(precision, () => {
        const step = trainer.loss.prepare(trainer.net, batch.images, { seed: cfg.seed, iteration });
        try {
          return tf.tidy(() => step.loss().dataSync()[0]);
        } finally {
          step.dispose();
        }
      });
      fp32 += lossIn('fp32') / batches;
      bf16 += lossIn('bf16') / batches;
      batch.images.dispose();
    }
    console.log(`${iteration} | ${trainer.loss.stage(iteration)} | ${fp32.toPrecision(4)} | ${bf16.toPrecision(4)} | ${(bf16 / fp32).toFixed(2)}`);
  }
}

main().catch((error) => { console.error(error instanceof Error ? error.message : error); process.exit(1); });
