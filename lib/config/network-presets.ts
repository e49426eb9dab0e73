/** Network presets, named in configs as `net: "name"` or `net: {preset, ...}`: the paper's CIFAR-10 DDPM++ and CPU-sized members of the same family. */
import type { NetworkConfig } from './types';

/** The label fields of an unconditional network: the defaults, which configs recorded before they existed take. */
export const UNCONDITIONAL: Pick<NetworkConfig, 'labelDim' | 'labelDropout'> = { labelDim: 0, labelDropout: 0 };

/** What every preset shares: EDM's embedding width, and no class labels (a conditional run sets net.labelDim). */
const base = { embedMult: 4, ...UNCONDITIONAL };

export const NETWORK_PRESETS: Record<string, NetworkConfig> = {
  // EDM's DDPM++ for CIFAR-10, 55.7M parameters (docs/method.md §3)
  'cifar10-ddpmpp': { ...base, resolution: 32, imageChannels: 3, modelChannels: 128, channelMult: [2, 2, 2], numBlocks: 4, attnResolutions: [16], dropout: 0.2 },
  // the benchmark's shape (bench/peer/README.md), for speed comparisons with the PyTorch peer
  'bench-32-ch64': { ...base, resolution: 32, imageChannels: 3, modelChannels: 64, channelMult: [1, 2, 2], numBlocks: 2, attnResolutions: [16], dropout: 0.2 },
  'fmnist-base': { ...base, resolution: 28, imageChannels: 1, modelChannels: 32, channelMult: [1, 2, 2], numBlocks: 1, attnResolutions: [7], dropout: 0.2 },
  'fmnist-small': { ...base, resolution: 28, imageChannels: 1, modelChannels: 16, channelMult: [1, 2, 2], numBlocks: 1, attnResolutions: [7], dropout: 0.2 },
  // the demo's teacher: small enough to pretrain in minutes on two cores
  'fmnist-tiny': { ...base, resolution: 28, imageChannels: 1, modelChannels: 16, channelMult: [1, 2], numBlocks: 1, attnResolutions: [], dropout: 0.1 },
};

/** Looks up a preset by name, listing the known ones when the name is wrong. */
export function networkPreset(name: string): NetworkConfig {
  const preset = NETWORK_PRESETS[name];
  if (!preset) throw new Error(`unknown network preset '${name}'; known: ${Object.keys(NETWORK_PRESETS).join(', ')}`);
  return structuredClone(preset);
}
