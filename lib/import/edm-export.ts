/**
 * `ect export --format safetensors`: a model of ours under EDM's preconditioner state_dict names and layouts
 * ('model.map_layer0.weight' [out, in], convolutions OIHW, the resample filters as buffers), so PyTorch code
 * loads it into EDM's networks (load_state_dict after safetensors.torch.load_file). Importing an export gives
 * back the same weights bit for bit (lib/import/edm-import.ts importEdmSafetensors).
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { RunConfig } from '../config/types';
import type { UNet } from '../nn/unet';
import { EDM_MODEL_PREFIX, convertLayout, edmResampleBuffers, edmResampleFilter, edmTensorMap } from './edm-map';
import { EXPORT_METADATA, EDM_PRECONDS, type EdmPrecondClass } from './edm-import';
import { encodeSafetensors, safeTensorFromValues, type SafeTensor } from './safetensors';

/** The EDM preconditioner class of a config's preconditioning (EDMPrecond, VPPrecond, VEPrecond). */
export function edmPrecondClass(cfg: RunConfig): EdmPrecondClass {
  const kind = cfg.edm.precond ?? 'edm';
  return (Object.keys(EDM_PRECONDS) as EdmPrecondClass[]).find((name) => EDM_PRECONDS[name] === kind)!;
}

/** EDM tensors our network leaves out, by their names relative to the SongUNet (lib/import/edm-run.ts keptEdmTensors). */
export type KeptEdmTensors = Map<string, { values: Float32Array; shape: number[] }>;

/**
 * The EDMPrecond state_dict of a network's weights (e.g. its EMA), as safetensors tensors, and the file's metadata;
 * `kept`: the tensors its import left out, written back so EDM's load_state_dict(strict=True) takes the file.
 */
export function edmStateDict(net: UNet, weights: Map<string, tf.Tensor>, cfg: RunConfig, kept: KeptEdmTensors = new Map()): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  const tensors = new Map<string, SafeTensor>();
  for (const m of edmTensorMap(net.cfg, net.paramShapes())) {
    const weight = weights.get(m.ours);
    if (!weight) throw new Error(`export: no weight named ${m.ours}`);
    const values = convertLayout(m.layout, weight.dataSync() as Float32Array, m.shape, 'toEdm');
    tensors.set(`${EDM_MODEL_PREFIX}${m.edm}`, safeTensorFromValues(values, m.edmShape));
  }
  const filter = edmResampleFilter(net.cfg.arch);
  for (const name of edmResampleBuffers(net.cfg)) tensors.set(`${EDM_MODEL_PREFIX}${name}`, safeTensorFromValues(filter.values.slice(), filter.shape));
  for (const [name, { values, shape }] of kept) tensors.set(`${EDM_MODEL_PREFIX}${name}`, safeTensorFromValues(values, shape));
  const { precond, vp, sigmaData, sigmaMin, sigmaMax } = cfg.edm;
  const metadata = {
    format: 'pt',
    [EXPORT_METADATA.net]: JSON.stringify(net.cfg, Object.keys(net.cfg).sort()),  // keys sorted: the same network, the same file
    [EXPORT_METADATA.edm]: JSON.stringify({ precond: precond ?? 'edm', ...(vp ? { vp } : {}), sigmaData, sigmaMin, sigmaMax }),
    [EXPORT_METADATA.precondClass]: edmPrecondClass(cfg),
  };
  return { tensors, metadata };
}

/** The safetensors file of edmStateDict. */
export function encodeEdmSafetensors(net: UNet, weights: Map<string, tf.Tensor>, cfg: RunConfig, kept: KeptEdmTensors = new Map()): Uint8Array {
  const { tensors, metadata } = edmStateDict(net, weights, cfg, kept);
  return encodeSafetensors(tensors, metadata);
}
