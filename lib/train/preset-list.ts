/** The presets shipped in configs/, summarised: what each is for, its data, network and parameter count. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UNet } from '../nn/unet';
import { NETWORK_PRESETS } from '../config/network-presets';
import { PRESET_DIR, resolveRunConfig } from '../config/resolve';
import { RUN_KINDS, type NetworkConfig, type RunConfig, type RunKind } from '../config/types';

/** One preset as `ect presets` lists it. */
export interface PresetSummary {
  name: string;
  kind: RunKind;
  purpose: string;          // the description's first clause
  data: string;             // dataset name
  network: string;          // the network preset it uses (and its class count, when conditional)
  parameters: number;       // scalar parameters of its UNet
  config: RunConfig;
}

/** The first clause of a description: up to its first ': ', else its first sentence ('et al.' does not end one). */
export function purposeOf(description: string): string {
  const colon = description.indexOf(': ');
  if (colon > 0) return description.slice(0, colon);
  const sentence = /(?<!\bet al|\be\.g|\bi\.e)\.(\s|$)/.exec(description);
  return sentence ? description.slice(0, sentence.index) : description;
}

/** The name of the network preset a network is (dropout and labels aside), else its channels. */
export function networkName(net: NetworkConfig): string {
  const shape = (n: NetworkConfig) => JSON.stringify([n.resolution, n.imageChannels, n.modelChannels, n.channelMult, n.numBlocks, n.attnResolutions, n.embedMult, n.arch ?? 'ddpmpp']);
  const name = Object.entries(NETWORK_PRESETS).find(([, preset]) => shape(preset) === shape(net))?.[0] ?? `${net.modelChannels} x [${net.channelMult.join(', ')}]`;
  return net.labelDim > 0 ? `${name}, ${net.labelDim} classes` : name;
}

/** A preset's resolved config, whichever kind it is. */
function resolvePreset(file: string): RunConfig {
  let firstError: unknown;
  for (const kind of RUN_KINDS) {
    try {
      return resolveRunConfig(kind, file);
    } catch (err) {
      firstError ??= err;
      if (!/config, not '/.test((err as Error).message)) throw err;  // only "a pretrain config, not tune" tries the other kind
    }
  }
  throw firstError;
}

/** Every preset of `dir` (configs/ by default), by name. */
export function presetSummaries(dir: string = PRESET_DIR): PresetSummary[] {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  return files.map((file) => {
    const config = resolvePreset(path.join(dir, file));
    return {
      name: path.basename(file, '.json'), kind: config.kind, purpose: purposeOf(config.description ?? ''), data: config.data.name,
      network: networkName(config.net), parameters: UNet.parameterCount(config.net), config,
    };
  });
}

/** The presets whose data is one of `datasets`: what a run can use when only those datasets are here. */
export function presetsForData(datasets: string[], kind?: RunKind, dir: string = PRESET_DIR): string[] {
  return presetSummaries(dir).filter((p) => datasets.includes(p.data) && (kind === undefined || p.kind === kind)).map((p) => p.name);
}
