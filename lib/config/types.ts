/**
 * Typed configuration of every run: network, EDM constants, ECT schedule, optimiser, data and trainer.
 * Each list of names here is the only source of its union type, of validation (lib/config/schema.ts) and of the
 * command line's choices.
 */

/**
 * EDM's two settings of its SongUNet: DDPM++ (positional noise embedding, standard encoder, [1, 1] resampling; ours by
 * default) and NCSN++ (Fourier noise embedding of twice the channels, residual encoder, [1, 3, 3, 1] resampling).
 */
export const NETWORK_ARCHS = ['ddpmpp', 'ncsnpp'] as const;
export type NetworkArch = (typeof NETWORK_ARCHS)[number];

/** The DDPM++ ("SongUNet") family of docs/method.md §3 (and EDM's NCSN++ setting of the same network). */
export interface NetworkConfig {
  resolution: number;        // image side in pixels (32 for CIFAR-10, 28 for Fashion-MNIST)
  imageChannels: number;     // 3 for CIFAR-10, 1 for Fashion-MNIST
  modelChannels: number;     // base channel count (128 in the paper)
  channelMult: number[];     // per-resolution multipliers ([2, 2, 2] in the paper)
  numBlocks: number;         // residual blocks per resolution (4 in the paper)
  attnResolutions: number[]; // resolutions with self-attention ([16] in the paper)
  dropout: number;           // dropout probability inside residual blocks
  embedMult: number;         // noise-embedding width = embedMult * modelChannels (4 in the paper)
  labelDim: number;          // classes of the label embedding (EDM's label_dim): 0 = unconditional, 10 for Fashion-MNIST or CIFAR-10
  labelDropout: number;      // probability of dropping an image's label in training (EDM's label_dropout), 0 = never
  arch?: NetworkArch;        // EDM's setting: absent or 'ddpmpp' (the paper's), 'ncsnpp' (imported VE teachers)
}

/** Preconditioning variants: training mode gives D(x, 0) = x; eval mode gives D(x, sigmaMin) = x. */
export const PRECOND_MODES = ['train', 'eval'] as const;
export type PrecondMode = (typeof PRECOND_MODES)[number];

/**
 * Preconditionings of EDM's code (training/networks.py): 'edm' (EDMPrecond, docs/method.md §2, what ECT trains
 * with), and the two that EDM's released VP and VE networks were trained with, which an imported teacher samples with.
 */
export const PRECOND_KINDS = ['edm', 'vp', 've'] as const;
export type PrecondKind = (typeof PRECOND_KINDS)[number];

/** The constants of EDM's VPPrecond (its defaults in parentheses). */
export interface VpConstants {
  betaD: number;          // extent of the noise level schedule (19.9)
  betaMin: number;        // initial slope of the noise level schedule (0.1)
  M: number;              // original number of DDPM timesteps: c_noise = (M - 1) sigma^-1(sigma) (1000)
}

/** EDM constants (docs/method.md §1, §2, §4 and §5). */
export interface EdmConfig {
  sigmaData: number;      // data standard deviation, 0.5
  sigmaMin: number;       // Heun sampler's smallest noise level, 0.002
  sigmaMax: number;       // largest noise level, 80
  rho: number;            // Heun time-step exponent, 7
  heunSteps: number;      // number of Heun time steps, 18 (35 network evaluations)
  pMean: number;          // log-normal mean of sigma for EDM pretraining, -1.2
  pStd: number;           // log-normal std of sigma for EDM pretraining, 1.2
  evalSigmaMin: number;   // CM boundary for eval-mode preconditioning, 0.003
  precond?: PrecondKind;  // preconditioning of D(x, sigma); absent: 'edm' (the only one ECT tunes with)
  vp?: VpConstants;       // VPPrecond's constants, exactly when precond is 'vp'
}

/** ECT's mapping functions n(t) (lib/ect/mapping.ts). */
export const MAPPINGS = ['sigmoid', 'constant', 'log2cap', 'powcap'] as const;
export type MappingName = (typeof MAPPINGS)[number];

/** ECT's time weightings w(t, r) (lib/ect/weighting.ts). */
export const WEIGHTINGS = ['inv_dt', 'snr_k', 'uniform'] as const;
export type WeightingName = (typeof WEIGHTINGS)[number];

/** ECT tuning (docs/method.md §6). */
export interface EctConfig {
  pMean: number;          // log t ~ Normal(pMean, pStd): -1.1
  pStd: number;           // 2.0
  mapping: MappingName;   // mapping function n(t)
  q: number;              // stage base: r = t (1 - n(t) / q^(s+1)), 2 on CIFAR-10
  stageIters: number;     // iterations per stage d, 25000 on CIFAR-10 (derived from stageFraction when that is set)
  stageFraction?: number; // iterations per stage as a fraction of the run's iters: runs of any length pass through the same stages (absent: stageIters as given)
  maxStage?: number;      // last stage: from it on the schedule stays (absent: none, as the paper's code); 7 keeps q^(s+1) at 256 for q = 2, the 1-hour run's q
  k: number;              // mapping strength, 8
  b: number;              // sigmoid slope, 1
  nCap: number;           // cap on n(t) for the log2cap and powcap mappings, 4
  huberC: number;        // pseudo-Huber c; 0 gives the plain L2 norm
  weighting: WeightingName; // w(t, r): inv_dt = 1/(t - r) (default), snr_k = 1/t^2 + 1/sigmaData^2
  samplePrecond: PrecondMode; // preconditioning used when sampling the tuned model
  midT: number[];         // intermediate times of the multistep sampler (0.821 on CIFAR-10)
}

/** Optimisers of lib/train/optim.ts: Adam (EDM) and RAdam (ECT). */
export const OPTIMIZERS = ['adam', 'radam'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

export interface OptimizerConfig {
  name: OptimizerName;
  lr: number;             // base learning rate
  beta1: number;
  beta2: number;
  eps: number;
  rampupKimg: number;     // linear lr ramp-up length in thousands of images (0: none)
  decayKimg?: number;     // inverse square-root decay past this many kimg: lr / sqrt(max(kimg / decayKimg, 1)) (0 or absent: constant; derived from decayFraction when that is set)
  decayFraction?: number; // the decay's reference point as a fraction of the run's images (iters * batch): decayKimg for runs of any length
  cooldownFraction?: number; // linear cool-down to 0 over this last fraction of the run (0 or absent: none)
}

/**
 * Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", section 3):
 * power-function EMAs tracked beside the run's own and stored as snapshots, from which the EMA of any width
 * sigma_rel is reconstructed after training (lib/select/posthoc-ema.ts, `ect posthoc-ema`).
 */
export interface PosthocEmaConfig {
  sigmaRels: number[];    // the tracked EMAs' relative widths (EDM2: 0.05 and 0.10)
  snapshotEvery: number;  // iterations between snapshots of the tracked EMAs (posthoc/ in the run folder)
}

/**
 * EMA: exactly one schedule of a fixed per-step beta, EDM's half-life in kimg with a ramp-up ratio, or a
 * power-function EMA of relative width sigmaRel (its length a fixed fraction of the training so far); optionally
 * post-hoc tracking.
 */
export interface EmaConfig {
  beta?: number;          // fixed decay per step (ECT: 0.9999)
  halfLifeKimg?: number;  // EDM: 500 (0.5 Mimg)
  rampupRatio?: number;   // EDM: 0.05 (half-life <= ratio * images seen); only with halfLifeKimg
  sigmaRel?: number;      // power-function EMA: std of its averaging profile relative to the images seen (EDM2: 0.05-0.15)
  posthoc?: PosthocEmaConfig;
}

/** Datasets lib/data can load. */
export const DATASET_NAMES = ['cifar10', 'fashion-mnist', 'synthetic'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export interface DataConfig {
  name: DatasetName;
  dir?: string;           // where the files are; default depends on the dataset
  flip: boolean;          // random horizontal flips
  limit?: number;         // use only the first N training images (0 or absent: all)
}

/** Dataset splits an in-run evaluation can compare with (lib/data's splits). */
export const EVAL_SPLITS = ['train', 'test'] as const;
export type EvalSplit = (typeof EVAL_SPLITS)[number];

/** What a run does on a non-finite loss or gradient norm: stop (the last good checkpoint stays the newest) or skip the batch. */
export const NON_FINITE_POLICIES = ['stop', 'skip'] as const;
export type NonFinitePolicy = (typeof NON_FINITE_POLICIES)[number];

/**
 * Arithmetic of a run's training steps: 'fp32' throughout, or 'bf16' mixed precision (convolutions and matrix
 * products read bfloat16 inputs and accumulate in float32; weights, gradients, optimiser state and EMA stay
 * float32). bf16 needs the onednn backend on a CPU with bf16 instructions (lib/backend/onednn/precision.ts).
 */
export const PRECISIONS = ['fp32', 'bf16'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** What a run does: EDM pretraining or ECT tuning. */
export const RUN_KINDS = ['pretrain', 'tune'] as const;
export type RunKind = (typeof RUN_KINDS)[number];

/** A whole run: what `ect pretrain` / `ect tune` resolve from presets and flags. */
export interface RunConfig {
  kind: RunKind;
  name: string;           // preset or run name
  description?: string;   // what the preset reproduces and where its numbers come from
  data: DataConfig;
  net: NetworkConfig;
  edm: EdmConfig;
  ect: EctConfig;
  optimizer: OptimizerConfig;
  ema: EmaConfig;
  batch: number;
  iters: number;          // total training iterations
  seed: number;
  logEvery: number;       // iterations between metrics.csv rows
  ckptEvery: number;      // iterations between checkpoints
  sampleEvery: number;    // iterations between sample grids (0: only at the end)
  evalEvery: number;      // kimg between metric evaluations (0: never)
  evalGrowth: number;     // 1: evaluations every evalEvery kimg; g > 1: at evalEvery * g^n kimg (log-spaced; lib/train/eval-schedule.ts)
  evalN: number;          // samples per evaluation
  evalSplit: EvalSplit;   // the dataset split in-run evaluations compare the samples with ('train' by default, as the paper's FID)
  evalSeed: number;       // noise seed of in-run evaluations: VALIDATION_SAMPLE_SEED (1) for new runs, so choices made on them never share latents with a test score (seed 0); 0 in runs recorded before the field
  plateauGain: number;    // stop (finished) once doubling the images improves the primary fd by less than this fraction (0: never; lib/train/plateau.ts)
  onNonFinite: NonFinitePolicy; // a non-finite loss or gradient norm: 'stop' the run (default) or 'skip' the batch
  divergenceFactor: number;     // stop once a 50-step mean loss exceeds this many times the session's lowest (0: never; lib/train/divergence.ts)
  precision?: Precision;  // training steps in 'fp32' (default; also when absent, as in runs recorded before the field) or 'bf16' mixed precision
  init?: string;          // checkpoint to start from (tuning)
}
