/** Documented defaults: the paper's CIFAR-10 settings (docs/method.md sections 1-7). Presets override them. */
import type { EctConfig, EdmConfig, RunConfig, RunKind } from './types';
import { networkPreset } from './network-presets';

export const DEFAULT_EDM: EdmConfig = {
  sigmaData: 0.5,      // data standard deviation
  sigmaMin: 0.002,     // Heun sampler's last nonzero noise level
  sigmaMax: 80,        // largest noise level
  rho: 7,              // Heun time-step exponent
  heunSteps: 18,       // 18 steps = 35 network evaluations
  pMean: -1.2,         // EDM pretraining: ln sigma ~ N(-1.2, 1.2^2)
  pStd: 1.2,
  evalSigmaMin: 0.003, // consistency boundary of eval-mode preconditioning
};

export const DEFAULT_ECT: EctConfig = {
  pMean: -1.1,         // ln t ~ N(-1.1, 2.0^2)
  pStd: 2.0,
  mapping: 'sigmoid',  // n(t) = 1 + k sigmoid(-b t)
  q: 2,                // r = t (1 - n(t) / q^(s+1))
  stageIters: 25000,   // d: iterations per stage at batch 128 (8 stages in 200k iterations)
  k: 8,
  b: 1,
  nCap: 4,             // cap of the log2cap / powcap mappings
  huberC: 0,           // 0: plain L2 norm (CIFAR-10); 0.06 on ImageNet-64
  weighting: 'inv_dt', // w(t, r) = 1 / (t - r)
  samplePrecond: 'eval', // sample with the public code's eval-mode boundary (D(x, 0.003) = x)
  midT: [0.821],       // 2-step sampling time on CIFAR-10
};

/**
 * The noise seed of in-run evaluations: validation latents, never those of a test score (`ect eval`'s default seed
 * 0), so that a checkpoint, EMA or t_mid chosen on them is scored on other samples (docs/selection.md).
 */
export const VALIDATION_SAMPLE_SEED = 1;

/** The full default config of a run kind: EDM pretraining or ECT tuning of the CIFAR-10 network. */
export function defaultRunConfig(kind: RunKind): RunConfig {
  const pretrain = kind === 'pretrain';
  return {
    kind,
    name: pretrain ? 'edm-pretrain' : 'ect-tune',
    data: { name: 'cifar10', flip: false },
    net: { ...networkPreset('cifar10-ddpmpp'), dropout: pretrain ? 0.13 : 0.2 },
    edm: { ...DEFAULT_EDM },
    ect: { ...DEFAULT_ECT, midT: [...DEFAULT_ECT.midT] },
    optimizer: pretrain
      ? { name: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, rampupKimg: 10000 }  // EDM: 10 Mimg ramp-up
      : { name: 'radam', lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, rampupKimg: 0 },    // ECT: constant lr
    ema: pretrain ? { halfLifeKimg: 500, rampupRatio: 0.05 } : { beta: 0.9999 },
    batch: pretrain ? 512 : 128,
    iters: pretrain ? 390625 : 200000,   // EDM: 200 Mimg at batch 512; ECT: 200k iterations
    seed: 0,
    logEvery: 100,
    ckptEvery: 5000,
    sampleEvery: 0,
    evalEvery: 0,
    evalGrowth: 1,         // evenly spaced evaluations; e.g. 1.4142 evaluates at evalEvery * sqrt(2)^n kimg
    evalN: 10000,
    evalSplit: 'train',    // the paper compares with the training images; with evalSeed, the validation reference
    evalSeed: VALIDATION_SAMPLE_SEED,
    plateauGain: 0,        // 0: train to iters; e.g. 0.1 stops once doubling the images improves the fd by less than 10%
    onNonFinite: 'stop',   // a NaN or infinite loss stops the run rather than training on
    divergenceFactor: 100, // a mean loss 100x the run's lowest stops it (healthy runs stay within 2x); 0: never
    precision: 'fp32',     // 'bf16': mixed precision where the CPU has bf16 instructions (onednn backend)
  };
}
