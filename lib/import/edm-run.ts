/**
 * An imported EDM network as a run folder of ours: config.json (the network read from the file, its preconditioning
 * in edm.precond) and one checkpoint whose online and EMA weights are the imported ones, which `ect sample --steps heun`
 * samples as EDM would and `ect tune --init` tunes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { resolveRunConfig, labelOverride, type ConfigPatch } from '../config/resolve';
import type { DatasetName, NetworkConfig, RunConfig } from '../config/types';
import type { BackendInfo } from '../backend/select';
import { checkpointPath, disposeCheckpoint, loadCheckpoint, saveCheckpoint } from '../train/checkpoint';
import { holdsRun, runPaths, CHECKPOINT_DIR, CONFIG_FILE, resolveRunInit, writeRunConfig } from '../runs/folder';
import { resolveCheckpointFile } from '../runs/model';
import type { ImportedEdm } from './edm-import';

/** The dataset an imported network's images look like (for the run's evaluations): CIFAR-10 at 32x32x3, else none of ours. */
function datasetOf(net: NetworkConfig): DatasetName {
  if (net.resolution === 32 && net.imageChannels === 3) return 'cifar10';
  if (net.resolution === 28 && net.imageChannels === 1) return 'fashion-mnist';
  return 'synthetic';
}

/** The run config of an imported network: a diffusion teacher (kind 'pretrain') with the network and preconditioning read. */
export function importedRunConfig(imported: ImportedEdm): RunConfig {
  const { source } = imported;
  const dropped = Object.keys(source.dropped);
  const description = `imported from ${path.basename(source.file)} (${source.precondClass} around a ${source.modelClass}, ${imported.net.arch === 'ncsnpp' ? 'NCSN++' : 'DDPM++'} settings)` +
    (dropped.length ? `; dropped: ${dropped.map((name) => `${name} (${source.dropped[name]})`).join(', ')}` : '') +
    (source.notes.length ? `; ${source.notes.join('; ')}` : '');
  const patch = {
    name: 'edm-import', description, net: imported.net, edm: imported.edm,
    data: { name: datasetOf(imported.net), flip: false },
  } as unknown as ConfigPatch;
  return resolveRunConfig('pretrain', undefined, [labelOverride(patch, `the network read from ${source.file}`)]);
}

/** The checkpoint group of an imported run holding the EDM tensors our network leaves out, under EDM's names. */
export const EDM_KEPT_GROUP = 'edm-kept';

/** Runs looked back through for them: an export of a run tuned from a run tuned from the import, and so on. */
const KEPT_SEARCH_DEPTH = 8;

/**
 * The EDM tensors a model's import left out of our network (map_augment.weight), which an export writes back so
 * that EDM loads it strictly: from the checkpoint's own group, else from the run it started from (its recorded
 * init), and so on back to the import. Empty when the model was not imported, or its import is gone.
 */
export function keptEdmTensors(checkpoint: string): Map<string, { values: Float32Array; shape: number[] }> {
  let file = checkpoint;
  for (let depth = 0; depth < KEPT_SEARCH_DEPTH; depth++) {
    const ckpt = loadCheckpoint(file);
    try {
      const kept = ckpt.groups[EDM_KEPT_GROUP];
      if (kept) return new Map([...kept].map(([name, tensor]) => [name, { values: Float32Array.from(tensor.dataSync()), shape: [...tensor.shape] }]));
      const init = (ckpt.meta.config as RunConfig | undefined)?.init;
      if (init === undefined) return new Map();
      const target = resolveRunInit(init, path.dirname(path.dirname(file)));  // <run>/checkpoints/ckpt-*.ckpt
      if (!fs.existsSync(target)) return new Map();
      file = resolveCheckpointFile(target);
    } finally {
      disposeCheckpoint(ckpt);
    }
  }
  return new Map();
}

/** What writeImportedRun wrote. */
export interface ImportedRun { runDir: string; config: RunConfig; checkpoint: string }

/**
 * Writes the run folder: config.json and checkpoints/ckpt-000000000.ckpt (params and ema both the imported weights).
 * A folder that already holds a run is refused.
 */
export function writeImportedRun(runDir: string, imported: ImportedEdm, backend?: BackendInfo): ImportedRun {
  if (holdsRun(runDir)) {
    throw new Error(`--out ${runDir}: already holds a run (${CONFIG_FILE} or ${CHECKPOINT_DIR}/); choose another folder`);
  }
  const config = importedRunConfig(imported);
  fs.mkdirSync(runDir, { recursive: true });
  const checkpoint = checkpointPath(runPaths(runDir).checkpoints, 0);
  const weights = new Map([...imported.weights].map(([name, { values, shape }]) => [name, tf.tensor(values, shape, 'float32')]));
  const kept = new Map([...imported.kept].map(([name, { values, shape }]) => [name, tf.tensor(values, shape, 'float32')]));
  try {
    saveCheckpoint(checkpoint, {
      meta: {
        format: 'ect-workbench-run', iteration: 0, imagesSeen: 0, wallSeconds: 0, optimizerStep: 0, config,
        imported: { file: path.resolve(imported.source.file), format: imported.source.format, precondClass: imported.source.precondClass, dropped: imported.source.dropped, notes: imported.source.notes },
      },
      groups: { params: weights, ema: weights, ...(kept.size ? { [EDM_KEPT_GROUP]: kept } : {}) },
    });
  } finally {
    weights.forEach((t) => t.dispose());
    kept.forEach((t) => t.dispose());
  }
  writeRunConfig(runDir, config, backend);
  return { runDir, config, checkpoint };
}
