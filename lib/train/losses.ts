/** Which loss each kind of run trains with: the one place that maps a run's kind to its loss. */
import type { RunConfig, RunKind } from '../config/types';
import { EdmLoss } from '../edm/loss';
import type { TrainingLoss } from '../training-loss';
import { EctLoss } from '../ect/loss';

/** EDM's denoising loss for pretraining, ECT's consistency loss for tuning. */
export const TRAINING_LOSSES: Record<RunKind, (cfg: RunConfig) => TrainingLoss> = {
  pretrain: (cfg) => new EdmLoss(cfg.edm),
  tune: (cfg) => new EctLoss(cfg.ect, cfg.edm),
};

/** The loss a run trains with. */
export function trainingLossFor(cfg: RunConfig): TrainingLoss {
  return TRAINING_LOSSES[cfg.kind](cfg);
}
