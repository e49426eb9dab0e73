/** ECT's mapping from t to r (docs/method.md §6.2; ECT §3) and its stage schedule. */
import { MAPPINGS, type EctConfig } from '../config/types';

/** Stage s = floor(iteration / d). */
export function stageAt(iteration: number, stageIters: number, maxStage?: number): number {
  const stage = Math.floor(iteration / stageIters);
  return maxStage === undefined ? stage : Math.min(stage, maxStage);
}

/** n(t) of a mapping function: sigmoid 1 + k sigmoid(-b t); constant 1; log2cap min(1 + k log2(1 + 1/t^2), cap); powcap min(1 + t^-k, cap). */
export function mappingN(t: number, cfg: Pick<EctConfig, 'mapping' | 'k' | 'b' | 'nCap'>): number {
  switch (cfg.mapping) {
    case 'sigmoid': return 1 + cfg.k / (1 + Math.exp(cfg.b * t));
    case 'constant': return 1;
    case 'log2cap': return Math.min(1 + cfg.k * Math.log2(1 + 1 / (t * t)), cfg.nCap);
    case 'powcap': return Math.min(1 + Math.pow(t, -cfg.k), cfg.nCap);
    default: throw new Error(`unknown mapping '${String(cfg.mapping)}'; known: ${MAPPINGS.join(', ')}`);
  }
}

/**
 * r = max(0, t (1 - n(t) / q^(s+1))), with the public code's exponent s + 1; at most t (1 - 2^-52), so t - r > 0 and the
 * weight 1/(t - r) stays finite at late stages, where n / q^(s+1) vanishes next to 1 in float64 (s >= ~52 for q = 2).
 */
export function mapTimeToR(t: number, stage: number, cfg: Pick<EctConfig, 'mapping' | 'k' | 'b' | 'nCap' | 'q'>): number {
  return Math.max(0, Math.min(t * (1 - mappingN(t, cfg) / Math.pow(cfg.q, stage + 1)), t * (1 - Number.EPSILON)));
}
