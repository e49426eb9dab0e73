/** Floating-point operations: the UNet's forward cost, counted from its layer plan, and a training run's cost. */
import type { NetworkConfig, RunConfig } from '../config/types';
import { planUNet } from './architecture';

/** FLOPs (2 per multiply-add) of one convolution producing res x res x cout from cin channels. */
export function convFlops(resolution: number, cin: number, cout: number, kernel: number): number {
  return 2 * resolution * resolution * cin * cout * kernel * kernel;
}

/** FLOPs of one fully connected layer applied to one vector. */
export function linearFlops(cin: number, cout: number): number {
  return 2 * cin * cout;
}

/** FLOPs of single-head attention's two matrix products (q k^T and weights v) over res^2 positions. */
export function attentionMatmulFlops(resolution: number, channels: number): number {
  const positions = resolution * resolution;
  return 2 * (2 * positions * positions * channels);
}

/**
 * Forward FLOPs per image: every convolution, linear layer and attention matrix product.
 * Normalisations, activations and element-wise sums are left out (they are a few percent).
 */
export function forwardFlopsPerImage(cfg: NetworkConfig): number {
  const plan = planUNet(cfg);
  let total = linearFlops(cfg.labelDim, plan.noiseChannels);  // the label embedding (none when unconditional)
  total += linearFlops(plan.noiseChannels, plan.embedChannels) + linearFlops(plan.embedChannels, plan.embedChannels);
  total += convFlops(plan.inputConv.resolution, plan.inputConv.inChannels, plan.inputConv.outChannels, 3);
  for (const block of [...plan.encoder, ...plan.decoder]) {
    const res = block.resolution;
    total += convFlops(res, block.inChannels, block.outChannels, 3);   // conv0 (after any resampling)
    total += linearFlops(plan.embedChannels, block.outChannels);       // embedding affine
    total += convFlops(res, block.outChannels, block.outChannels, 3);  // conv1
    if (block.skipConv) total += convFlops(res, block.inChannels, block.outChannels, 1);
    if (block.auxResidual) total += convFlops(2 * res + 2, block.auxResidual.inChannels, block.outChannels, 3);  // NCSN++: before its stride-2 filter
    if (block.attention) {
      total += convFlops(res, block.outChannels, 3 * block.outChannels, 1);  // qkv
      total += attentionMatmulFlops(res, block.outChannels);
      total += convFlops(res, block.outChannels, block.outChannels, 1);      // proj
    }
  }
  total += convFlops(plan.output.resolution, plan.output.inChannels, plan.output.outChannels, 3);
  return total;
}

/** Passes per training step in forward-pass units: backward costs about twice a forward. */
export const PASSES_PER_IMAGE = {
  edm: 3,   // one forward + backward
  ect: 4,   // student forward + backward (3) and the target forward without gradient (1)
} as const;

/** Forward-pass equivalents per training image of a run: ECT 4 (student forward and backward, target forward), EDM 3. */
export function passesPerImage(config: Pick<RunConfig, 'kind'>): number {
  return config.kind === 'tune' ? PASSES_PER_IMAGE.ect : PASSES_PER_IMAGE.edm;
}

/** Training FLOPs of a run after `imagesSeen` images: per-image forward cost x passes per image x images. */
export function trainingFlops(config: Pick<RunConfig, 'kind' | 'net'>, imagesSeen: number): number {
  return forwardFlopsPerImage(config.net) * passesPerImage(config) * imagesSeen;
}
