/**
 * The model a web page runs: model.json (network config, sampling settings, where the weights came from, the weight
 * table) and the weight file, turned into the library's own UNet and SamplerModel. Pure: the page and Node share it.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { EdmConfig, NetworkConfig, PrecondMode } from '../config/types';
import { UNet } from '../nn/unet';
import type { SamplerModel } from '../sample';
import { unpackWeights, type PackedWeights } from './weights';

export const WEB_MODEL_FORMAT = 'ect-web-model';
export const WEB_MODEL_VERSION = 1;

/** The float16 weights' error: generated pixels of float16 against float32 weights, same seed, on the exporting machine. */
export interface HalfPrecisionError {
  maxAbs: number;           // max |x16 - x32| over all pixels, images in [-1, 1]
  meanAbs: number;
  images: number;           // how many images were compared
  steps: 1 | 2;
  seed: number;
}

/** model.json of a web page. */
export interface WebModelManifest {
  format: typeof WEB_MODEL_FORMAT;
  version: number;
  net: NetworkConfig;
  edm: EdmConfig;
  samplePrecond: PrecondMode;    // preconditioning of consistency sampling (the run's ect.samplePrecond)
  midT: number[];                // the run's intermediate time(s) of 2-step sampling
  classNames: string[];          // names of the classes of a conditional model (net.labelDim of them), else empty
  source: { run: string; checkpoint: string; iteration: number; kind: string; dataset: string };
  weightsFile: string;           // the weight file beside model.json
  weights: PackedWeights;
  halfPrecisionError?: HalfPrecisionError;  // with float16 weights
}

/** The library's network and sampler view for a page's model: a UNet whose parameters hold the packed weights. */
export interface WebModel { manifest: WebModelManifest; net: UNet; sampler: SamplerModel }

/** Checks a parsed model.json. */
export function checkWebManifest(value: unknown, source: string): WebModelManifest {
  const manifest = value as WebModelManifest;
  if (manifest?.format !== WEB_MODEL_FORMAT) throw new Error(`${source} is not an ECT web model (format '${String(manifest?.format)}')`);
  if (manifest.version !== WEB_MODEL_VERSION) throw new Error(`${source} has version ${manifest.version}; this page reads version ${WEB_MODEL_VERSION}`);
  return manifest;
}

/** Builds the UNet of a manifest and loads the weight file into its parameters (the caller disposes the net). */
export function webModel(manifest: WebModelManifest, bytes: Uint8Array): WebModel {
  const weights = unpackWeights(manifest.weights, bytes);
  const net = new UNet(manifest.net, 0);
  try {
    for (const [name, param] of net.params) {
      const found = weights.get(name);
      if (!found) throw new Error(`web model: the weight file has no tensor ${name}`);
      if (!tf.util.arraysEqual(found.shape, param.shape)) throw new Error(`web model: ${name} is [${found.shape}] in the weight file, the network needs [${param.shape}]`);
      const value = tf.tensor(found.values, found.shape);
      param.assign(value);
      value.dispose();
    }
    const extra = [...weights.keys()].filter((name) => !net.params.has(name));
    if (extra.length) throw new Error(`web model: the weight file has tensors the network lacks: ${extra.join(', ')}`);
  } catch (err) {
    net.dispose();
    throw err;
  }
  const sampler: SamplerModel = { net, weights: net.params, edm: manifest.edm, samplePrecond: manifest.samplePrecond, midT: manifest.midT };
  return { manifest, net, sampler };
}
