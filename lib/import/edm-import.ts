/**
 * `ect import-edm`: an EDM network (a training snapshot or released pickle, or a safetensors file under EDM's
 * state_dict names) as a network of ours, its architecture read from the stored modules and its preconditioning
 * (EDMPrecond, VPPrecond or VEPrecond) recorded in the config, so the imported teacher samples as it is.
 */
import { DEFAULT_EDM } from '../config/defaults';
import type { EdmConfig, NetworkArch, NetworkConfig } from '../config/types';
import { ARCH_SETTINGS } from '../nn/architecture';
import { validateNetworkConfig } from '../config/schema';
import { UNet } from '../nn/unet';
import { countNonFinite } from '../train/checkpoint';
import { groupCount } from '../nn/layers';
import {
  PersistentObject, edmNetwork, moduleAttributes, moduleClassName, moduleStateDict, moduleTree, readEdmPickle, submodule,
  type PickledModule,
} from './edm-pickle';
import {
  EDM_DROPPED, EDM_MODEL_PREFIX, EdmMappingError, convertLayout, edmResampleFilter, inferEdmArchitecture, matchEdmStateDict,
  type EdmMatch,
} from './edm-map';
import { isSafetensorsFile, readSafetensors, safeTensorValues } from './safetensors';
import { tensorValues, type TensorValues, type TorchTensor } from './torch-storage';

/** EDM's preconditioners this importer reads, and the preconditioning each becomes (edm.precond). */
export const EDM_PRECONDS = { EDMPrecond: 'edm', VPPrecond: 'vp', VEPrecond: 've' } as const;
export type EdmPrecondClass = keyof typeof EDM_PRECONDS;

/** The network classes inside them this importer reads. */
export const EDM_MODELS = ['SongUNet'] as const;

/** The module classes a SongUNet (DDPM++ or NCSN++) is built of. */
const SONGUNET_PARTS = ['PositionalEmbedding', 'FourierEmbedding', 'Linear', 'Conv2d', 'GroupNorm', 'UNetBlock', 'ModuleDict'];

/** What is supported, for refusals. */
export const SUPPORTED_EDM_NETWORKS = `${Object.keys(EDM_PRECONDS).join(', ')} around a SongUNet with DDPM++ or NCSN++ settings (unconditional or class-conditional)`;

/** What GroupNorm eps and residual scale the SongUNet uses (EDM's block_kwargs), which our UNet computes. */
const SONGUNET_EPS = 1e-6;
const SONGUNET_SKIP_SCALE = Math.SQRT1_2;

/** An imported network: its config sections, our weights, and what was read and left out. */
export interface ImportedEdm {
  net: NetworkConfig;
  edm: Partial<EdmConfig>;       // precond, vp, sigmaData, sigmaMin, sigmaMax: the sampler's range clamped to the network's
  weights: Map<string, { values: Float32Array; shape: number[] }>;
  kept: Map<string, { values: Float32Array; shape: number[] }>;  // EDM tensors our network leaves out (EDM_DROPPED), by EDM name, for exports
  source: {
    file: string;
    format: 'pickle' | 'safetensors';
    precondClass: string;        // EDMPrecond, VPPrecond, VEPrecond
    modelClass: string;          // SongUNet
    dropped: Record<string, string>;  // EDM entries left out, and why
    notes: string[];
  };
}

/** A number attribute of a module, or an error naming it. */
function numberAttribute(module: PickledModule, key: string, source: string): number {
  const value = moduleAttributes(module).get(key);
  const number = typeof value === 'bigint' ? Number(value) : value;
  if (typeof number !== 'number') throw new EdmMappingError(source, `${moduleClassName(module)}.${key} is ${String(value)}, not a number`);
  return number;
}

/**
 * Float weights as float32 (float16 and bfloat16 exactly; float64 rounded to nearest), all finite: a NaN or
 * infinite weight would make the network sample only NaN. `name` is relative to the SongUNet.
 */
function floatValues(values: TensorValues, name: string, source: string): Float32Array {
  if (!(values instanceof Float32Array) && !(values instanceof Float64Array)) {
    throw new EdmMappingError(source, `${name} holds ${values.constructor.name} values, not floats`);
  }
  const floats = values instanceof Float32Array ? values : Float32Array.from(values);
  const { count, first } = countNonFinite(floats);
  if (count > 0) {
    throw new EdmMappingError(source, `tensor ${EDM_MODEL_PREFIX}${name} holds ${count} NaN or infinite value${count > 1 ? 's' : ''} of ${floats.length} (the first: ${first}); ` +
      'a network with such weights samples only NaN (a diverged training run, or an edited file): import an earlier snapshot');
  }
  return floats;
}

/** True when a resample_filter buffer holds the setting's filter, exactly. */
function isResampleFilter(values: Float32Array, shape: readonly number[], arch: NetworkArch): boolean {
  const want = edmResampleFilter(arch);
  return shape.join() === want.shape.join() && values.every((v, i) => v === want.values[i]);
}

/** The SongUNet setting a network's noise embedding names: Fourier for NCSN++, positional for DDPM++. */
function archOf(model: PickledModule, source: string): NetworkArch {
  return moduleClassName(submodule(model, 'map_noise', source)) === 'FourierEmbedding' ? 'ncsnpp' : 'ddpmpp';
}

/**
 * Checks the SongUNet's modules for the settings our UNet computes, DDPM++ or NCSN++ as its noise embedding names:
 * DDPM++'s positional embedding with endpoint and 10000 positions, standard encoder and [1, 1] filters; NCSN++'s
 * Fourier embedding, residual encoder and [1, 3, 3, 1] filters; in both a standard decoder, resampling fused into a
 * convolution only in the residual encoder, GroupNorm eps 1e-6 with min(32, C/4) groups, residual scale sqrt(1/2),
 * additive (not adaptive) embedding and one attention head. What differs is listed in one error.
 */
function checkSongUNetModules(model: PickledModule, tensors: Map<string, TorchTensor>, source: string): NetworkArch {
  const arch = archOf(model, source);
  const setting = arch === 'ncsnpp' ? 'NCSN++' : 'DDPM++';
  const problems: string[] = [];
  for (const [name, className] of moduleTree(model, source)) {
    if (!name) continue;
    const module = submodule(model, name, source);
    const attributes = moduleAttributes(module);
    if (!SONGUNET_PARTS.includes(className)) problems.push(`${name} is a ${className}`);
    if (/_aux_(skip|down)$/.test(name)) problems.push(`${name}: EDM's skip encoder (encoder_type 'skip')`);
    if (/_aux_up$/.test(name)) problems.push(`${name}: EDM's skip decoder (decoder_type 'skip')`);
    if (/_aux_residual$/.test(name) && arch !== 'ncsnpp') problems.push(`${name}: a residual encoder with a positional noise embedding`);
    if (className === 'PositionalEmbedding' && (attributes.get('endpoint') !== true || Number(attributes.get('max_positions')) !== 10000)) {
      problems.push(`${name}: PositionalEmbedding with endpoint=${String(attributes.get('endpoint'))}, max_positions=${String(attributes.get('max_positions'))} (DDPM++: True, 10000)`);
    }
    if (className === 'UNetBlock') {
      if (attributes.get('adaptive_scale') !== false) problems.push(`${name}: adaptive_scale=${String(attributes.get('adaptive_scale'))} (SongUNet: False)`);
      const skipScale = Number(attributes.get('skip_scale'));
      if (Math.abs(skipScale - SONGUNET_SKIP_SCALE) > 1e-12) problems.push(`${name}: skip_scale=${skipScale} (SongUNet: sqrt(1/2))`);
      const heads = Number(attributes.get('num_heads') ?? 0);
      if (heads > 1) problems.push(`${name}: ${heads} attention heads (SongUNet: 1)`);
    }
    if (className === 'GroupNorm') {
      const channels = tensors.get(`${name}.weight`)?.shape[0] ?? 0;
      if (Number(attributes.get('eps')) !== SONGUNET_EPS) problems.push(`${name}: GroupNorm eps ${String(attributes.get('eps'))} (SongUNet: 1e-6)`);
      if (Number(attributes.get('num_groups')) !== groupCount(channels)) problems.push(`${name}: ${String(attributes.get('num_groups'))} groups for ${channels} channels (SongUNet: ${groupCount(channels)})`);
    }
    if (className === 'Conv2d' && (attributes.get('up') === true || attributes.get('down') === true)) {
      const filter = tensors.get(`${name}.resample_filter`);
      if (filter && !isResampleFilter(floatValues(tensorValues(filter), name, source), filter.shape, arch)) {
        problems.push(`${name}: a resampling filter of shape [${filter.shape.join(', ')}] that is not ${setting}'s [${ARCH_SETTINGS[arch].resampleTaps.join(', ')}]`);
      }
      const fused = attributes.get('fused_resample') === true;
      if (fused !== /_aux_residual$/.test(name)) problems.push(`${name}: fused_resample=${fused ? 'True' : 'False'} (SongUNet: only in the residual encoder)`);
    }
  }
  if (problems.length) throw new EdmMappingError(source, `has settings our ${setting} UNet does not compute: ${problems.join('; ')}; supported: ${SUPPORTED_EDM_NETWORKS}`);
  return arch;
}

/** The dropout of the SongUNet's blocks (all equal in EDM) and its label dropout. */
function dropoutOf(model: PickledModule, source: string): { dropout: number; labelDropout: number } {
  let dropout = 0;
  for (const [name, className] of moduleTree(model, source)) {
    if (className === 'UNetBlock') { dropout = numberAttribute(submodule(model, name, source), 'dropout', source); break; }
  }
  const labelDropout = moduleAttributes(model).has('label_dropout') ? numberAttribute(model, 'label_dropout', source) : 0;
  return { dropout, labelDropout };
}

/** The preconditioning fields of a pickled preconditioner; the Heun range clamped to the network's, as EDM's sampler does. */
function precondFields(precond: PersistentObject, source: string): Partial<EdmConfig> {
  const attr = (key: string) => numberAttribute(precond, key, source);
  // EDM's edm_sampler: sigma_min = max(0.002, net.sigma_min), sigma_max = min(80, net.sigma_max)
  const range = { sigmaMin: Math.max(DEFAULT_EDM.sigmaMin, attr('sigma_min')), sigmaMax: Math.min(DEFAULT_EDM.sigmaMax, attr('sigma_max')) };
  switch (precond.className as EdmPrecondClass) {
    case 'EDMPrecond': return { precond: 'edm', sigmaData: attr('sigma_data'), ...range };
    case 'VPPrecond': return { precond: 'vp', vp: { betaD: attr('beta_d'), betaMin: attr('beta_min'), M: attr('M') }, ...range };
    case 'VEPrecond': return { precond: 've', ...range };
  }
}

/**
 * Our weights from EDM's (names relative to the SongUNet): each mapped, its layout converted, after
 * matchEdmStateDict checked every name and shape. Resample filters are checked to be the setting's.
 */
function convertWeights(match: EdmMatch, net: NetworkConfig, read: (edmName: string) => Float32Array, source: string): Map<string, { values: Float32Array; shape: number[] }> {
  const arch = net.arch ?? 'ddpmpp';
  for (const name of match.resampleBuffers) {
    if (!isResampleFilter(read(name), edmResampleFilter(arch).shape, arch)) {
      throw new EdmMappingError(source, `${name} is not the [${ARCH_SETTINGS[arch].resampleTaps.join(', ')}] resampling filter of the network's setting`);
    }
  }
  return new Map(match.mapping.map((m) => [m.ours, { values: convertLayout(m.layout, read(m.edm), m.shape, 'toOurs'), shape: m.shape }]));
}

/** The largest network import-edm reads unless told otherwise, in parameters (EDM's largest, for ImageNet-64, has 296M). */
export const DEFAULT_MAX_IMPORT_PARAMS = 400_000_000;

/** Limits of one import, checked on declared sizes before anything is allocated. */
export interface ImportLimits {
  maxParams?: number;  // parameters of the network and tensor elements of the file (default DEFAULT_MAX_IMPORT_PARAMS)
}

/** Refuses a file whose tensors hold more elements than the budget allows, before their values are read. */
function checkFileBudget(shapes: Map<string, readonly number[]>, limits: ImportLimits, source: string): void {
  const max = limits.maxParams ?? DEFAULT_MAX_IMPORT_PARAMS;
  let elements = 0;
  for (const shape of shapes.values()) elements += shape.reduce((a, b) => a * b, 1);
  if (elements > max) throw new EdmMappingError(source, `its tensors hold ${elements.toLocaleString('en-US')} values, more than the import budget of ${max.toLocaleString('en-US')} parameters (--max-params)`);
}

/**
 * Our parameter shapes for a network config, from its layer plan (nothing allocated), after checking that the network
 * is within the budget and no larger than the file's tensors (every parameter must come from them).
 */
function ourShapes(net: NetworkConfig, fileShapes: Map<string, readonly number[]>, limits: ImportLimits, source: string): Map<string, { shape: number[] }> {
  const shapes = UNet.parameterShapes(net);
  const max = limits.maxParams ?? DEFAULT_MAX_IMPORT_PARAMS;
  let ours = 0;
  for (const { shape } of shapes.values()) ours += shape.reduce((a, b) => a * b, 1);
  let stored = 0;
  for (const shape of fileShapes.values()) stored += shape.reduce((a, b) => a * b, 1);
  if (ours > max) throw new EdmMappingError(source, `describes a network of ${ours.toLocaleString('en-US')} parameters, more than the import budget of ${max.toLocaleString('en-US')} (--max-params)`);
  if (ours > stored) throw new EdmMappingError(source, `describes a network of ${ours.toLocaleString('en-US')} parameters, but its tensors hold only ${stored.toLocaleString('en-US')} values`);
  return shapes;
}

/** The architecture, checked: the noise embedding's width must be the setting's (channel_mult_noise 1 for DDPM++, 2 for NCSN++). */
function networkFrom(shapes: Map<string, readonly number[]>, dropouts: { dropout: number; labelDropout: number }, source: string): NetworkConfig {
  const arch = inferEdmArchitecture(shapes, source);
  const noiseMult = ARCH_SETTINGS[arch.arch].noiseMult;
  if (arch.noiseChannels !== noiseMult * arch.net.modelChannels) {
    throw new EdmMappingError(source, `has a noise embedding of ${arch.noiseChannels} channels for ${arch.net.modelChannels} model channels; ${arch.arch === 'ncsnpp' ? 'NCSN++' : 'DDPM++'} has ${noiseMult} x model channels; supported: ${SUPPORTED_EDM_NETWORKS}`);
  }
  const net: NetworkConfig = { ...arch.net, ...dropouts };
  validateNetworkConfig(net);
  return net;
}

/** Reads an EDM pickle (training snapshot or released network): its 'ema' network as ours. */
export function importEdmPickle(file: string, limits: ImportLimits = {}): ImportedEdm {
  const precond = edmNetwork(readEdmPickle(file), file);
  if (!Object.hasOwn(EDM_PRECONDS, precond.className)) {
    throw new EdmMappingError(file, `holds an EDM network of class ${precond.className}, which is not supported; supported: ${SUPPORTED_EDM_NETWORKS}`);
  }
  const model = submodule(precond, 'model', file);
  const modelClass = moduleClassName(model);
  if (!(EDM_MODELS as readonly string[]).includes(modelClass)) {
    throw new EdmMappingError(file, `holds ${precond.className} around a ${modelClass}, which is not supported; supported: ${SUPPORTED_EDM_NETWORKS}`);
  }
  const tensors = moduleStateDict(model, file);
  const arch = checkSongUNetModules(model, tensors, file);
  const shapes = new Map([...tensors].map(([name, tensor]) => [name, tensor.shape]));
  checkFileBudget(shapes, limits, file);
  const net = networkFrom(shapes, dropoutOf(model, file), file);
  if ((net.arch ?? 'ddpmpp') !== arch) throw new EdmMappingError(file, `its map_noise says ${arch}, its tensors ${net.arch ?? 'ddpmpp'}`);
  const labelDim = numberAttribute(precond, 'label_dim', file);
  if (labelDim !== net.labelDim) throw new EdmMappingError(file, `${precond.className}.label_dim is ${labelDim}, but its SongUNet's map_label has ${net.labelDim} classes`);
  const match = matchEdmStateDict(net, ourShapes(net, shapes, limits, file), shapes, file);
  const read = (name: string) => floatValues(tensorValues(tensors.get(name)!), name, file);
  const weights = convertWeights(match, net, read, file);
  const kept = keptTensors(match, shapes, read);
  const notes: string[] = [];
  if (moduleAttributes(precond).get('use_fp16') === true) notes.push('use_fp16 was set: EDM ran the network in float16 on GPUs; it runs in float32 here');
  return {
    net, edm: precondFields(precond, file), weights, kept,
    source: { file, format: 'pickle', precondClass: precond.className, modelClass, dropped: droppedReasons(match), notes },
  };
}

/** The values of the EDM tensors our network leaves out, kept so an export writes them back (EDM loads strictly). */
function keptTensors(match: EdmMatch, shapes: Map<string, readonly number[]>, read: (edmName: string) => Float32Array): Map<string, { values: Float32Array; shape: number[] }> {
  return new Map(match.dropped.map((name) => [name, { values: read(name), shape: [...shapes.get(name)!] }]));
}

function droppedReasons(match: EdmMatch): Record<string, string> {
  return Object.fromEntries(match.dropped.map((name) => [`${EDM_MODEL_PREFIX}${name}`, EDM_DROPPED[name]]));
}

/** Metadata keys of our safetensors exports (lib/import/edm-export.ts), read back on import. */
export const EXPORT_METADATA = { net: 'ect.net', edm: 'ect.edm', precondClass: 'ect.precond_class' } as const;

/**
 * Reads a safetensors file of EDM state_dict names (an `ect export --format safetensors`, or any EDMPrecond state_dict
 * saved so): names with or without EDMPrecond's 'model.' prefix. The architecture is read from the names and
 * shapes; our export's metadata adds the dropouts and the preconditioning (without it: EDM's, dropout 0).
 */
export function importEdmSafetensors(file: string, limits: ImportLimits = {}): ImportedEdm {
  const { tensors, metadata } = readSafetensors(file);
  const prefixed = [...tensors.keys()].every((name) => name.startsWith(EDM_MODEL_PREFIX));
  const relative = new Map([...tensors].map(([name, tensor]) => [prefixed ? name.slice(EDM_MODEL_PREFIX.length) : name, tensor]));
  const shapes = new Map([...relative].map(([name, tensor]) => [name, tensor.shape as readonly number[]]));
  checkFileBudget(shapes, limits, file);
  const recordedNet = metadata[EXPORT_METADATA.net] ? JSON.parse(metadata[EXPORT_METADATA.net]) as NetworkConfig : undefined;
  const net = networkFrom(shapes, { dropout: recordedNet?.dropout ?? 0, labelDropout: recordedNet?.labelDropout ?? 0 }, file);
  if (recordedNet && JSON.stringify({ ...recordedNet }) !== JSON.stringify({ ...recordedNet, ...net })) {
    throw new EdmMappingError(file, `its metadata's network ${JSON.stringify(recordedNet)} differs from the one its tensors hold ${JSON.stringify(net)}`);
  }
  const match = matchEdmStateDict(net, ourShapes(net, shapes, limits, file), shapes, file);
  const read = (name: string) => floatValues(safeTensorValues(relative.get(name)!), name, file);
  const weights = convertWeights(match, net, read, file);
  const kept = keptTensors(match, shapes, read);
  const edm = metadata[EXPORT_METADATA.edm] ? JSON.parse(metadata[EXPORT_METADATA.edm]) as Partial<EdmConfig> : { precond: 'edm' as const };
  const notes = metadata[EXPORT_METADATA.net] ? [] : ['no ect metadata: EDM preconditioning and dropout 0 assumed'];
  return {
    net, edm, weights, kept,
    source: { file, format: 'safetensors', precondClass: metadata[EXPORT_METADATA.precondClass] ?? 'EDMPrecond', modelClass: 'SongUNet', dropped: droppedReasons(match), notes },
  };
}

/** Reads an EDM network from a pickle or a safetensors file (told apart by their structure: isSafetensorsFile). */
export function importEdmFile(file: string, limits: ImportLimits = {}): ImportedEdm {
  return isSafetensorsFile(file) ? importEdmSafetensors(file, limits) : importEdmPickle(file, limits);
}
