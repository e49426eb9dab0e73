/**
 * A trained model from a run: the checkpoint a run folder, its checkpoints/ folder or a file names, and the network
 * it was trained with, loaded for sampling or evaluation.
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import type { RunConfig } from '../config/types';
import { UNet } from '../nn/unet';
import { samplerModelFor, type SamplerModel } from '../sample';
import { shippedTeachers } from '../teachers/shipped';
import { latestCheckpoint, loadCheckedCheckpoint, openCheckpoint, type Checkpoint } from '../train/checkpoint';
import { resolveRecordedConfig } from '../config/resolve';
import { runFolderOfCheckpoint, runPaths, CHECKPOINT_DIR } from './folder';

/** A trained model ready to sample: the online network (its variables) and the EMA weights samplers use. */
export interface LoadedModel {
  config: RunConfig;
  net: UNet;
  ema: Map<string, tf.Tensor>;
  emaOnly: boolean;        // the checkpoint holds the EMA weights alone (a shipped teacher): net's variables are a copy of them
  iteration: number;
  checkpoint: string;
  runDir: string;
}

/** A checkpoint file from a file path, a run directory or its checkpoints/ folder (the newest one). */
export function resolveCheckpointFile(target: string): string {
  if (!fs.existsSync(target)) {
    const names = shippedTeachers();
    throw new Error(`checkpoint ${target}: no such file or directory` + (names.length ? ` (shipped teachers, by name: ${names.join(', ')})` : ''));
  }
  if (fs.statSync(target).isFile()) return target;
  const found = latestCheckpoint(runPaths(target).checkpoints) ?? latestCheckpoint(target);
  if (!found) throw new Error(`checkpoint ${target}: a directory with no ckpt-*.ckpt files (looked in it and in its ${CHECKPOINT_DIR}/)`);
  return found;
}

/**
 * Builds the network a checkpoint was trained with and loads its weights (EMA kept as plain tensors). A checkpoint
 * of EMA weights alone (a shipped teacher, lib/teachers/ship.ts) loads them as the online weights too.
 */
export function modelFromCheckpoint(file: string): LoadedModel {
  const opened = openCheckpoint(file);
  const recorded = opened.meta.config as RunConfig | undefined;
  if (!recorded?.net) throw new Error(`${file}: checkpoint meta has no config.net; it was not written by ect-workbench's trainer`);
  const held = opened.groupNames;
  if (!held.includes('ema')) {
    throw new Error(`${file}: checkpoint lacks the ema group, the weights samplers use (it holds ${held.length ? `the groups ${held.join(', ')}` : 'no tensors'})`);
  }
  const config = resolveRecordedConfig(recorded, `${file} (its recorded config)`);  // fields added since it was written take their defaults
  const net = new UNet(config.net, config.seed);
  let ckpt: Checkpoint;
  try {
    // the weights samplers use must be finite: NaN ones would draw a black grid
    ckpt = loadCheckedCheckpoint(opened, { load: ['params', 'ema'], required: ['ema'], shapes: net.paramShapes(), shaped: ['params', 'ema'], finite: ['ema'] });
  } catch (err) {
    net.dispose();
    throw err;
  }
  const { ema, params } = ckpt.groups;
  for (const [name, p] of net.params) p.assign((params ?? ema).get(name) as tf.Tensor);  // EMA-only (a shipped teacher): the online weights are the EMA's
  params?.forEach((t) => t.dispose());
  return { config, net, ema, emaOnly: !params, iteration: Number(opened.meta.iteration ?? 0), checkpoint: file, runDir: runFolderOfCheckpoint(file) };
}

/** Loads a model from a run directory, its checkpoints/ folder or a checkpoint file. */
export async function loadRunModel(target: string): Promise<LoadedModel> {
  return modelFromCheckpoint(resolveCheckpointFile(target));
}

/** The sampler view of a loaded model: EMA weights, its EDM constants and sampling settings. */
export function samplerModelOf(model: LoadedModel): SamplerModel {
  return samplerModelFor(model.net, model.ema, model.config);
}

/** Frees a loaded model. */
export function disposeModel(model: LoadedModel): void {
  model.net.dispose();
  model.ema.forEach((t) => t.dispose());
}
