/**
 * What `npm run bench` times besides the training step: generation with the 1-step and 2-step consistency
 * samplers and EDM's Heun sampler (18 steps, 35 network evaluations), and the evaluation pass (features of the
 * Fashion-MNIST classifier, their Float64 statistics and the Fréchet distance to a reference). Each workload is
 * one repeatable unit of work on `images` images; bench/peer/ect_step_torch.py times the same units in PyTorch
 * (its `mode` field), so the two sides are compared image for image.
 */
import * as tf from '@tensorflow/tfjs-core';
import '../lib/tf-gradients';
import type { Precision } from '../lib/config/types';
import { withPrecision } from '../lib/backend/onednn/precision';
import { DEFAULT_CLASSIFIER_ARCH, FmnistClassifier } from '../lib/metrics/fmnist-classifier';
import { featureStats, frechetDistance } from '../lib/metrics/frechet';
import { forwardFlopsPerImage, PASSES_PER_IMAGE } from '../lib/nn/flops';
import { UNet } from '../lib/nn/unet';
import { makeSampler, sampleNoise, type SampleSteps } from '../lib/sample';
import { benchRunConfig, createBenchTrainer, disposeTrainer, runStep, warmUpReplay, type BenchShape } from './ect-step';

/** The workloads, in report order: a training step, the three samplers, the evaluation pass. */
export const WORKLOADS = ['train', '1step', '2step', 'heun', 'features'] as const;
export type Workload = (typeof WORKLOADS)[number];

/** How a report names a workload. */
export const WORKLOAD_LABELS: Record<Workload, string> = {
  train: 'training step', '1step': '1-step generation', '2step': '2-step generation', heun: 'Heun-35 generation', features: 'features + fd',
};

/** Network evaluations of each sampler per image (EDM's 18 Heun steps: 2 x 18 - 1). */
export const SAMPLER_EVALUATIONS: Record<'1step' | '2step' | 'heun', number> = { '1step': 1, '2step': 2, heun: 35 };

/** Why a workload cannot run on a configuration (the classifier sees 28x28 grey images only), or null. */
export function workloadProblem(workload: Workload, shape: BenchShape): string | null {
  const a = DEFAULT_CLASSIFIER_ARCH;
  if (workload === 'features' && (shape.res !== a.imageSize || shape.in_ch !== a.channels)) {
    return `the fmnist classifier takes ${a.imageSize}x${a.imageSize}x${a.channels} images (this configuration: ${shape.res}x${shape.res}x${shape.in_ch})`;
  }
  return null;
}

/** Forward FLOPs of the Fashion-MNIST classifier's feature layers per image (two 3x3 convolutions, one dense layer). */
export function classifierFlopsPerImage(a = DEFAULT_CLASSIFIER_ARCH): number {
  const conv1 = 2 * a.imageSize * a.imageSize * a.conv1 * 9 * a.channels;
  const conv2 = 2 * (a.imageSize / 2) ** 2 * a.conv2 * 9 * a.conv1;
  const dense = 2 * (a.imageSize / 4) ** 2 * a.conv2 * a.hidden;
  return conv1 + conv2 + dense;
}

/** FLOPs per image of a workload on a configuration (what GFLOP/s and the fraction of peak count). */
export function workloadFlopsPerImage(workload: Workload, shape: BenchShape): number {
  const forward = forwardFlopsPerImage(benchRunConfig(shape).net);
  if (workload === 'train') return PASSES_PER_IMAGE.ect * forward;
  if (workload === 'features') return classifierFlopsPerImage();
  return SAMPLER_EVALUATIONS[workload] * forward;
}

/** One prepared workload: `run` does one unit of work on `images` images; `dispose` frees what it holds. */
export interface PreparedWorkload { images: number; run(): void; dispose(): void }

/**
 * Builds a workload on the current backend, in `precision` (bf16 applies to the training step and the samplers'
 * network; the caller has checked that it may run). Sampling uses a freshly initialised network: its speed does
 * not depend on the weights.
 */
export async function prepareWorkload(workload: Workload, shape: BenchShape, precision: Precision): Promise<PreparedWorkload> {
  const problem = workloadProblem(workload, shape);
  if (problem) throw new Error(`${workload}: ${problem}`);
  if (workload === 'train') {
    const trainer = await createBenchTrainer(shape, precision);
    warmUpReplay(trainer);  // the steady state of a run: steps replayed once recorded and checked (lib/train/step-replay.ts)
    return { images: shape.batch, run: () => { runStep(trainer); }, dispose: () => disposeTrainer(trainer) };
  }
  if (workload === 'features') {
    const classifier = new FmnistClassifier(DEFAULT_CLASSIFIER_ARCH, 0);
    const dim = DEFAULT_CLASSIFIER_ARCH.hidden;
    const images = tf.randomUniform([shape.batch, shape.res, shape.res, shape.in_ch], -1, 1, 'float32', 5) as tf.Tensor4D;
    // the reference statistics are computed once (a cached file in real evaluations), so they are not timed
    const reference = featureStats(Float32Array.from({ length: 4 * dim * dim }, (_, i) => Math.sin(i * 12.9898) * 0.5 + (i % dim) / dim), 4 * dim, dim);
    return {
      images: shape.batch,
      run: () => withPrecision(precision, () => {
        const features = classifier.features(images);
        const values = features.dataSync();
        features.dispose();
        frechetDistance(featureStats(values, shape.batch, dim), reference);
      }),
      dispose: () => { images.dispose(); classifier.dispose(); },
    };
  }
  const cfg = benchRunConfig(shape);
  const net = new UNet({ ...cfg.net, dropout: 0 }, cfg.seed);
  const steps: SampleSteps = workload === 'heun' ? 'heun' : workload === '1step' ? 1 : 2;
  const sampler = makeSampler({ net, weights: net.params, edm: cfg.edm, samplePrecond: cfg.ect.samplePrecond, midT: cfg.ect.midT }, steps);
  const noise = sampleNoise(0, 0, shape.batch, [shape.res, shape.res, shape.in_ch]);
  return {
    images: shape.batch,
    run: () => withPrecision(precision, () => tf.tidy(() => { sampler(noise).dataSync(); })),
    dispose: () => net.dispose(),
  };
}
