/**
 * The layer plan of the DDPM++ UNet (EDM's SongUNet) derived from a NetworkConfig: which blocks exist,
 * their channels, resolutions and names. The network and the FLOPs counter both walk this plan.
 */
import type { NetworkArch, NetworkConfig } from '../config/types';
import { validateNetworkConfig } from '../config/schema';

export type Resample = 'none' | 'down' | 'up';

/** What EDM's two SongUNet settings change (its embedding_type, channel_mult_noise, encoder_type, resample_filter). */
export interface ArchSettings {
  embedding: 'positional' | 'fourier';  // noise embedding: sinusoids of fixed frequencies, or of stored random ones
  noiseMult: number;                    // noise embedding width = noiseMult * modelChannels
  residualEncoder: boolean;             // NCSN++: the input, resampled, added back after each down block
  resampleTaps: number[];               // 1-D taps of the separable resampling filter
}

export const ARCH_SETTINGS: Record<NetworkArch, ArchSettings> = {
  ddpmpp: { embedding: 'positional', noiseMult: 1, residualEncoder: false, resampleTaps: [1, 1] },     // 2x2 mean, nearest
  ncsnpp: { embedding: 'fourier', noiseMult: 2, residualEncoder: true, resampleTaps: [1, 3, 3, 1] },
};

/** One residual block (optionally followed by self-attention). */
export interface BlockPlan {
  name: string;          // stable parameter prefix, e.g. 'enc.16x16_block1'
  inChannels: number;    // after any skip concatenation
  outChannels: number;
  resolution: number;    // resolution of the block's output
  resample: Resample;
  attention: boolean;
  skipConv: boolean;     // 1x1 conv on the shortcut (channels or resolution change)
  concatSkip: boolean;   // decoder blocks concatenate one stored encoder output first
  auxResidual?: { name: string; inChannels: number };  // NCSN++'s residual encoder: conv of the resampled input added after this block
}

export interface UNetPlan {
  arch: ArchSettings;
  noiseChannels: number;        // width of the noise embedding before the mapping MLP
  embedChannels: number;        // width of the noise embedding after the mapping MLP
  inputConv: { name: string; inChannels: number; outChannels: number; resolution: number };
  encoder: BlockPlan[];
  decoder: BlockPlan[];         // the two middle blocks come first, as in EDM
  output: { name: string; inChannels: number; outChannels: number; resolution: number };
}

/** Derives the block plan: encoder, middle, decoder, as EDM's SongUNet lays them out. */
export function planUNet(cfg: NetworkConfig): UNetPlan {
  validateNetworkConfig(cfg);
  const encoder: BlockPlan[] = [];
  const decoder: BlockPlan[] = [];
  const skips: number[] = [];
  const block = (name: string, inChannels: number, outChannels: number, resolution: number,
    resample: Resample, attention: boolean, concatSkip = false): BlockPlan => ({
    name, inChannels, outChannels, resolution, resample, attention, concatSkip,
    skipConv: inChannels !== outChannels || resample !== 'none',
  });

  // encoder: input conv at full resolution, then per level an optional down block and numBlocks blocks
  const arch = ARCH_SETTINGS[cfg.arch ?? 'ddpmpp'];
  let channels = cfg.modelChannels;
  let auxChannels = cfg.imageChannels;  // the residual encoder's running input
  const inputConv = { name: `enc.${cfg.resolution}x${cfg.resolution}_conv`, inChannels: cfg.imageChannels, outChannels: channels, resolution: cfg.resolution };
  skips.push(channels);
  cfg.channelMult.forEach((mult, level) => {
    const res = cfg.resolution >> level;
    if (level > 0) {
      const down = block(`enc.${res}x${res}_down`, channels, channels, res, 'down', false);
      if (arch.residualEncoder) {
        down.auxResidual = { name: `enc.${res}x${res}_aux_residual`, inChannels: auxChannels };
        auxChannels = channels;
      }
      encoder.push(down);
      skips.push(channels);
    }
    for (let i = 0; i < cfg.numBlocks; i++) {
      const out = cfg.modelChannels * mult;
      encoder.push(block(`enc.${res}x${res}_block${i}`, channels, out, res, 'none', cfg.attnResolutions.includes(res)));
      channels = out;
      skips.push(channels);
    }
  });

  // decoder: middle blocks at the lowest resolution, then per level numBlocks+1 blocks with skips and an up block
  for (let level = cfg.channelMult.length - 1; level >= 0; level--) {
    const res = cfg.resolution >> level;
    const mult = cfg.channelMult[level];
    if (level === cfg.channelMult.length - 1) {
      decoder.push(block(`dec.${res}x${res}_in0`, channels, channels, res, 'none', true));
      decoder.push(block(`dec.${res}x${res}_in1`, channels, channels, res, 'none', false));
    } else {
      decoder.push(block(`dec.${res}x${res}_up`, channels, channels, res, 'up', false));
    }
    for (let i = 0; i <= cfg.numBlocks; i++) {
      const skip = skips.pop();
      if (skip === undefined) throw new Error('internal: UNet skip stack exhausted');
      const out = cfg.modelChannels * mult;
      // EDM puts decoder attention only on the last block of a level
      decoder.push(block(`dec.${res}x${res}_block${i}`, channels + skip, out, res, 'none',
        i === cfg.numBlocks && cfg.attnResolutions.includes(res), true));
      channels = out;
    }
  }
  if (skips.length) throw new Error('internal: UNet skip stack not consumed');
  return {
    arch,
    noiseChannels: arch.noiseMult * cfg.modelChannels,
    embedChannels: cfg.embedMult * cfg.modelChannels,
    inputConv,
    encoder,
    decoder,
    output: { name: 'out', inChannels: channels, outChannels: cfg.imageChannels, resolution: cfg.resolution },
  };
}
