/**
 * The correspondence between our UNet's parameters (lib/nn/unet.ts) and EDM's SongUNet state_dict (DDPM++ and NCSN++):
 * which EDM name each of ours comes from and how its layout differs. Import and export both walk this one table, so
 * importing an export gives back the same weights bit for bit (every layout change is a permutation).
 */
import type { NetworkArch, NetworkConfig } from '../config/types';
import { ARCH_SETTINGS, planUNet } from '../nn/architecture';

/**
 * How a tensor's layout differs between EDM and us:
 * - copy: the same values in the same order (biases, GroupNorm gains and shifts);
 * - linear: EDM's Linear weight [out, in] is our [in, out];
 * - conv: EDM's OIHW [out, in, k, k] is our HWIO [k, k, in, out];
 * - linear-swap-in: a linear weight whose input features are the noise embedding, [sin, cos] in EDM (SongUNet swaps
 *   the halves after map_noise) and [cos, sin] here: rows swapped by halves (map_layer0);
 * - linear-swap-out / copy-swap: a layer whose outputs add to that embedding (map_label), its columns or bias swapped.
 */
export type EdmLayout = 'copy' | 'linear' | 'conv' | 'linear-swap-in' | 'linear-swap-out' | 'copy-swap';

/** One of our parameters: its name and shape here, its state_dict name and shape in EDM's SongUNet, and the layout change. */
export interface EdmTensorMapping {
  ours: string;
  edm: string;            // relative to the SongUNet ('map_layer0.weight'); EDMPrecond's state_dict prefixes 'model.'
  shape: number[];        // ours
  edmShape: number[];
  layout: EdmLayout;
}

/** The prefix of the SongUNet's entries in a preconditioner's state_dict (EDMPrecond.model). */
export const EDM_MODEL_PREFIX = 'model.';

/** Module-name changes between us and EDM (the block names themselves are EDM's: 'enc.16x16_block0'). */
const ATTENTION_PARTS: Record<string, string> = { 'attn.norm': 'norm2', 'attn.qkv': 'qkv', 'attn.proj': 'proj' };

/** EDM's shape of a tensor whose shape here is `shape`. */
export function edmShapeOf(layout: EdmLayout, shape: readonly number[]): number[] {
  if (layout === 'conv') return [shape[3], shape[2], shape[0], shape[1]];
  if (layout === 'linear' || layout === 'linear-swap-in' || layout === 'linear-swap-out') return [shape[1], shape[0]];
  return [...shape];
}

/** The halves swapped: index i of one half-ordering is index (i + n/2) mod n of the other (an involution). */
function swapHalves(i: number, n: number): number {
  return (i + n / 2) % n;
}

/**
 * EDM values (row-major, EDM's shape) in our layout, or (toEdm) ours in EDM's. Each layout change is a permutation of
 * the elements, so a round trip is exact.
 */
export function convertLayout(layout: EdmLayout, values: Float32Array, ourShape: readonly number[], direction: 'toOurs' | 'toEdm'): Float32Array {
  const out = new Float32Array(values.length);
  // ourIndex -> edmIndex; toOurs reads from EDM's positions, toEdm writes to them
  const move = (ourIndex: number, edmIndex: number) => {
    if (direction === 'toOurs') out[ourIndex] = values[edmIndex];
    else out[edmIndex] = values[ourIndex];
  };
  switch (layout) {
    case 'copy':
      out.set(values);
      return out;
    case 'copy-swap': {
      const n = ourShape[0];
      for (let i = 0; i < n; i++) move(i, swapHalves(i, n));
      return out;
    }
    case 'linear': case 'linear-swap-in': case 'linear-swap-out': {
      const [rows, cols] = ourShape;  // ours [in, out]; EDM [out, in]
      for (let i = 0; i < rows; i++) {
        const edmIn = layout === 'linear-swap-in' ? swapHalves(i, rows) : i;
        for (let o = 0; o < cols; o++) {
          const edmOut = layout === 'linear-swap-out' ? swapHalves(o, cols) : o;
          move(i * cols + o, edmOut * rows + edmIn);
        }
      }
      return out;
    }
    case 'conv': {
      const [kh, kw, cin, cout] = ourShape;  // ours HWIO; EDM OIHW
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          for (let i = 0; i < cin; i++) {
            for (let o = 0; o < cout; o++) move(((y * kw + x) * cin + i) * cout + o, ((o * cin + i) * kh + y) * kw + x);
          }
        }
      }
      return out;
    }
  }
}

/** The EDM module name of one of our parameter prefixes ('out' is the decoder's '{res}x{res}_aux_*' head). */
function edmModuleName(ours: string, cfg: NetworkConfig): string {
  const res = `${cfg.resolution}x${cfg.resolution}`;
  if (ours === 'out.norm') return `dec.${res}_aux_norm`;
  if (ours === 'out.conv') return `dec.${res}_aux_conv`;
  if (ours.startsWith('map.')) return ours.replace('map.', 'map_');
  for (const [part, edm] of Object.entries(ATTENTION_PARTS)) if (ours.endsWith(`.${part}`)) return `${ours.slice(0, -part.length)}${edm}`;
  return ours;
}

/** The layout change of one of our parameters, from its name and rank. */
function layoutOf(name: string, rank: number): EdmLayout {
  if (name === 'map.layer0.weight') return 'linear-swap-in';
  if (name === 'map.label.weight') return 'linear-swap-out';
  if (name === 'map.label.bias') return 'copy-swap';
  if (rank === 4) return 'conv';
  if (rank === 2) return 'linear';
  return 'copy';
}

/**
 * Every parameter of our UNet for `cfg` with its EDM name, both shapes and the layout change, in our order.
 * `shapes` are our parameter shapes (UNet.paramShapes(), or computed without building a network).
 */
export function edmTensorMap(cfg: NetworkConfig, shapes: Map<string, { shape: number[] }>): EdmTensorMapping[] {
  return [...shapes].map(([ours, { shape }]) => {
    const cut = ours.lastIndexOf('.');
    const layout = layoutOf(ours, shape.length);
    return { ours, edm: `${edmModuleName(ours.slice(0, cut), cfg)}${ours.slice(cut)}`, shape: [...shape], edmShape: edmShapeOf(layout, shape), layout };
  });
}

/**
 * The resample_filter buffer EDM stores in every up/down convolution of a setting: the outer product of its taps over
 * their sum squared, [1, 1, n, n] ([1, 1] gives 0.25 in 2x2 taps: 2x2 average pooling and nearest-neighbour upsampling).
 */
export function edmResampleFilter(arch: NetworkArch | undefined): { shape: number[]; values: Float32Array } {
  const taps = ARCH_SETTINGS[arch ?? 'ddpmpp'].resampleTaps;
  const total = taps.reduce((a, t) => a + t, 0);
  return { shape: [1, 1, taps.length, taps.length], values: Float32Array.from(taps.flatMap((a) => taps.map((b) => (a * b) / (total * total)))) };
}

/**
 * EDM's resample_filter buffers of the network (in its state_dict, not parameters here): conv0 and skip of each
 * down and up block, and NCSN++'s residual-encoder convolutions. Our UNet resamples with the same filter.
 */
export function edmResampleBuffers(cfg: NetworkConfig): string[] {
  const plan = planUNet(cfg);
  return [...plan.encoder, ...plan.decoder].filter((b) => b.resample !== 'none').flatMap((b) => [
    `${b.name}.conv0.resample_filter`, `${b.name}.skip.resample_filter`, ...(b.auxResidual ? [`${b.auxResidual.name}.resample_filter`] : []),
  ]);
}

/** Why a state_dict does not describe the SongUNet read from it, listing what is wrong. */
export class EdmMappingError extends Error {
  constructor(source: string, detail: string) {
    super(`\`${source}\`: ${detail}`);
    this.name = 'EdmMappingError';
  }
}

/** The architecture fields of a SongUNet read from its state_dict's names and shapes (relative to the SongUNet). */
export interface EdmArchitecture {
  arch: NetworkArch;       // 'ncsnpp' when the noise embedding has stored frequencies (map_noise.freqs)
  net: Omit<NetworkConfig, 'dropout' | 'labelDropout'>;
  noiseChannels: number;   // map_layer0's input width: model_channels x channel_mult_noise
  augmentDim: number;      // map_augment's input width (0: none)
}

/**
 * Reads the architecture from the SongUNet's state_dict shapes: model channels and image channels from the first
 * convolution, the levels and blocks per level from the encoder's names, the channel multipliers from each level's
 * last block, attention from where the encoder has qkv, the embedding width from map_layer0 and the classes from
 * map_label. Every shape is then checked against the network these give (matchEdmStateDict).
 */
export function inferEdmArchitecture(shapes: Map<string, readonly number[]>, source: string): EdmArchitecture {
  const names = [...shapes.keys()];
  const stem = names.map((n) => /^enc\.(\d+)x\1_conv\.weight$/.exec(n)).find((m) => m);
  if (!stem) throw new EdmMappingError(source, "no encoder stem convolution 'enc.<res>x<res>_conv.weight': not a SongUNet state_dict");
  const resolution = Number(stem[1]);
  const [modelChannels, imageChannels] = shapes.get(stem[0])!;
  const levels = [...new Set(names.map((n) => /^enc\.(\d+)x\1_/.exec(n)).filter((m) => m).map((m) => Number(m![1])))].sort((a, b) => b - a);
  levels.forEach((res, level) => {
    if (res !== resolution >> level) throw new EdmMappingError(source, `encoder resolutions ${levels.join(', ')} do not halve from ${resolution}`);
  });
  const blocksAt = (res: number) => new Set(names.map((n) => new RegExp(`^enc\\.${res}x${res}_block(\\d+)\\.`).exec(n)).filter((m) => m).map((m) => Number(m![1])));
  const numBlocks = blocksAt(resolution).size;
  if (numBlocks === 0) throw new EdmMappingError(source, `no encoder blocks 'enc.${resolution}x${resolution}_block<i>'`);
  const channelMult = levels.map((res) => {
    const conv1 = shapes.get(`enc.${res}x${res}_block${numBlocks - 1}.conv1.weight`);
    if (!conv1) throw new EdmMappingError(source, `no 'enc.${res}x${res}_block${numBlocks - 1}.conv1.weight': every level needs ${numBlocks} blocks`);
    if (conv1[0] % modelChannels) throw new EdmMappingError(source, `'enc.${res}x${res}_block${numBlocks - 1}' has ${conv1[0]} channels, not a multiple of ${modelChannels}`);
    return conv1[0] / modelChannels;
  });
  const attnResolutions = levels.filter((res) => shapes.has(`enc.${res}x${res}_block0.qkv.weight`));
  const layer0 = shapes.get('map_layer0.weight');
  if (!layer0) throw new EdmMappingError(source, "no 'map_layer0.weight': not a SongUNet state_dict");
  const [embedChannels, noiseChannels] = layer0;
  if (embedChannels % modelChannels) throw new EdmMappingError(source, `embedding width ${embedChannels} is not a multiple of ${modelChannels} model channels`);
  const label = shapes.get('map_label.weight');
  const augment = shapes.get('map_augment.weight');
  const arch: NetworkArch = shapes.has('map_noise.freqs') ? 'ncsnpp' : 'ddpmpp';
  return {
    arch,
    net: {
      resolution, imageChannels, modelChannels, channelMult, numBlocks, attnResolutions,
      embedMult: embedChannels / modelChannels, labelDim: label ? label[1] : 0, ...(arch === 'ncsnpp' ? { arch } : {}),
    },
    noiseChannels,
    augmentDim: augment ? augment[1] : 0,
  };
}

/** The result of matching a state_dict against our UNet: the table, and the EDM entries left out on purpose. */
export interface EdmMatch {
  mapping: EdmTensorMapping[];
  resampleBuffers: string[];   // checked to be the setting's filters, then not needed
  dropped: string[];           // present in EDM, unused by our network (map_augment.weight: unused when augment labels are zero)
}

/** EDM entries our network drops, and why (recorded with an import). */
export const EDM_DROPPED: Record<string, string> = {
  'map_augment.weight': 'the augmentation-label mapping, unused when the augment labels are zero (as when sampling)',
};

/**
 * Matches a SongUNet state_dict (names relative to the SongUNet, with their shapes) against our UNet for `cfg`:
 * every shape checked, and every EDM entry either mapped, a resample filter, or dropped on purpose. Missing,
 * unmapped and misshapen entries are one error listing them all.
 */
export function matchEdmStateDict(cfg: NetworkConfig, ourShapes: Map<string, { shape: number[] }>, shapes: Map<string, readonly number[]>, source: string): EdmMatch {
  const mapping = edmTensorMap(cfg, ourShapes);
  const resampleBuffers = edmResampleBuffers(cfg);
  const filter = edmResampleFilter(cfg.arch);
  const expected = new Set([...mapping.map((m) => m.edm), ...resampleBuffers]);
  const missing = [...expected].filter((name) => !shapes.has(name));
  const dropped = [...shapes.keys()].filter((name) => Object.hasOwn(EDM_DROPPED, name));
  const unmapped = [...shapes.keys()].filter((name) => !expected.has(name) && !dropped.includes(name));
  const misshapen = [
    ...mapping.filter((m) => shapes.has(m.edm) && shapes.get(m.edm)!.join() !== m.edmShape.join())
      .map((m) => `${m.edm} [${shapes.get(m.edm)!.join(', ')}], expected [${m.edmShape.join(', ')}] (for our ${m.ours})`),
    ...resampleBuffers.filter((name) => shapes.has(name) && shapes.get(name)!.join() !== filter.shape.join())
      .map((name) => `${name} [${shapes.get(name)!.join(', ')}], expected [${filter.shape.join(', ')}]`),
  ];
  const problems = [
    missing.length ? `missing: ${missing.join(', ')}` : '',
    unmapped.length ? `unmapped: ${unmapped.join(', ')}` : '',
    misshapen.length ? `wrong shapes: ${misshapen.join('; ')}` : '',
  ].filter(Boolean);
  if (problems.length) {
    throw new EdmMappingError(source, `does not match the ${cfg.arch === 'ncsnpp' ? 'NCSN++' : 'DDPM++'} UNet read from it (${JSON.stringify(cfg)}):\n  ${problems.join('\n  ')}`);
  }
  return { mapping, resampleBuffers, dropped };
}
