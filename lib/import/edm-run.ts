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
import { checkpointPath, saveCheckpoint } from '../train/checkpoint';
import { CHECKPOINT_DIR, writeRunConfig } from '../train/run';
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

/** What writeImportedRun wrote. */
export interface ImportedRun { runDir: string; config: RunConfig; checkpoint: string }

/**
 * Writes the run folder: config.json and checkpoints/ckpt-000000000.ckpt (params and ema both the imported weights).
 * A folder that already holds a run is refused.
 */
export function writeImportedRun(runDir: string, imported: ImportedEdm, backend?: BackendInfo): ImportedRun {
  if (fs.existsSync(path.join(runDir, 'config.json')) || fs.existsSync(path.join(runDir, CHECKPOINT_DIR))) {
    throw new Error(`--out ${runDir}: already holds a run (config.json or ${CHECKPOINT_DIR}/); choose another folder`);
  }
  const config = importedRunConfig(imported);
  fs.mkdirSync(runDir, { recursive: true });
  const checkpoint = checkpointPath(path.join(runDir, CHECKPOINT_DIR), 0);
  const weights = new Map([...imported.weights].map(([name, { values, shape }]) => [name, tf.tensor(values, shape, 'float32')]));
  try {
    saveCheckpoint(checkpoint, {
      meta: {
        format: 'ect-workbench-run', iteration: 0, imagesSeen: 0, wallSeconds: 0, optimizerStep: 0, config,
        imported: { file: path.resolve(imported.source.file), format: imported.source.format, precondClass: imported.source.precondClass, dropped: imported.source.dropped, notes: imported.source.notes },
      },
      groups: { params: weights, ema: weights },
    });
  } finally {
    weights.forEach((t) => t.dispose());
  }
  writeRunConfig(runDir, config, backend);
  return { runDir, config, checkpoint };
}
