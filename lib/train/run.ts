/** Run directories: config.json, checkpoint discovery, and loading a trained model for sampling or evaluation. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { resolveRecordedConfig } from '../config/resolve';
import type { RunConfig } from '../config/types';
import type { BackendInfo } from '../backend/select';
import { UNet } from '../nn/unet';
import { writeFileAtomic } from '../write-file';
import { samplerModelFor, type SamplerModel } from '../sample';
import { assertFiniteTensors, assertParamsMatch, disposeCheckpoint, latestCheckpoint, loadCheckpoint } from './checkpoint';

export const CHECKPOINT_DIR = 'checkpoints';
/** Folder of a run's post-hoc EMA snapshots (ema.posthoc; lib/select/posthoc-ema.ts). */
export const POSTHOC_DIR = 'posthoc';
/** Teachers shipped with the workbench (data/teachers/<name>/: config.json, metrics.csv, an EMA checkpoint). */
export const SHIPPED_TEACHERS_DIR = path.resolve(__dirname, '..', '..', '..', 'data', 'teachers');

/** Names of the shipped teachers (folders of SHIPPED_TEACHERS_DIR, or of `dir`; hidden ones, such as a teacher being shipped, left out). */
export function shippedTeachers(dir = SHIPPED_TEACHERS_DIR): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => !name.startsWith('.') && fs.statSync(path.join(dir, name)).isDirectory()).sort() : [];
}

/**
 * What `--init <target>` names: a checkpoint file or run folder (from the current directory), else a shipped
 * teacher by name. An absolute path, or a target that is neither, comes back as a path (the load then says
 * what is missing, and lists the shipped teachers).
 */
export function resolveInitTarget(target: string, shippedDir = SHIPPED_TEACHERS_DIR): string {
  if (fs.existsSync(target) || path.isAbsolute(target)) return path.resolve(target);
  const shipped = path.join(shippedDir, target);
  if (!target.includes('/') && fs.existsSync(shipped)) return shipped;
  return path.resolve(target);
}
export const CHECKPOINTS_KEPT = 3;

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

/** Minimal facts about the machine, recorded with every run. */
export function basicEnvironment(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown', cores: cpus.length, memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`, node: process.version,
  };
}

/**
 * A run's recorded `init` (config.json, checkpoint meta) as a path to load: a relative one is relative to
 * the run's own folder, so a run tree keeps working when it is moved or committed; an absolute one (runs
 * recorded before this rule) is returned unchanged.
 */
export function resolveRunInit(init: string, runDir: string): string {
  return path.isAbsolute(init) ? path.normalize(init) : path.resolve(runDir, init);
}

/**
 * How a run records the `init` it started from: relative to its run folder, with POSIX separators, so no
 * machine's absolute path ends up in a run. `init` itself is absolute or relative to the current directory.
 * With no run folder (runDir null) it is returned as given. resolveRunInit is the inverse.
 */
export function recordedRunInit(init: string, runDir: string | null): string {
  if (runDir === null) return init;
  const relative = path.relative(path.resolve(runDir), path.resolve(init));
  // another Windows drive has no relative path: keep the absolute one
  return path.isAbsolute(relative) ? relative : relative.split(path.sep).join('/') || '.';
}

/** The config as a run records it in config.json and its checkpoints: `init` relative to the run folder. */
export function recordedRunConfig(cfg: RunConfig, runDir: string | null): RunConfig {
  return cfg.init === undefined ? cfg : { ...cfg, init: recordedRunInit(cfg.init, runDir) };
}

/**
 * Writes <run>/config.json: the resolved config plus the backend and machine that ran it. `cfg.init`
 * (absolute, or relative to the current directory) is stored relative to the run folder.
 */
export function writeRunConfig(runDir: string, cfg: RunConfig, backend?: BackendInfo, environment?: Record<string, unknown>): void {
  const record = { ...recordedRunConfig(cfg, runDir), backend: backend ?? null, environment: environment ?? basicEnvironment(), writtenAt: new Date().toISOString() };
  const file = path.join(runDir, 'config.json');
  writeFileAtomic(file, JSON.stringify(record, null, 2) + '\n');
}

/** A checkpoint file from a file path, a run directory or its checkpoints/ folder (the newest one). */
export function resolveCheckpointFile(target: string): string {
  if (!fs.existsSync(target)) {
    const names = shippedTeachers();
    throw new Error(`checkpoint ${target}: no such file or directory` + (names.length ? ` (shipped teachers, by name: ${names.join(', ')})` : ''));
  }
  if (fs.statSync(target).isFile()) return target;
  const found = latestCheckpoint(path.join(target, CHECKPOINT_DIR)) ?? latestCheckpoint(target);
  if (!found) throw new Error(`checkpoint ${target}: a directory with no ckpt-*.ckpt files (looked in it and in its ${CHECKPOINT_DIR}/)`);
  return found;
}

/**
 * Builds the network a checkpoint was trained with and loads its weights (EMA kept as plain tensors). A checkpoint
 * of EMA weights alone (a shipped teacher, lib/train/ship.ts) loads them as the online weights too.
 */
export function modelFromCheckpoint(file: string): LoadedModel {
  const ckpt = loadCheckpoint(file);
  const recorded = ckpt.meta.config as RunConfig | undefined;
  if (!recorded?.net) {
    disposeCheckpoint(ckpt);
    throw new Error(`${file}: checkpoint meta has no config.net; it was not written by ect-workbench's trainer`);
  }
  const { ema } = ckpt.groups;
  if (!ema) {
    const groups = Object.keys(ckpt.groups);
    disposeCheckpoint(ckpt);
    throw new Error(`${file}: checkpoint lacks the ema group, the weights samplers use (it holds ${groups.length ? `the groups ${groups.join(', ')}` : 'no tensors'})`);
  }
  const params = ckpt.groups.params ?? ema;  // EMA-only (a shipped teacher): the online weights are the EMA's
  let config: RunConfig;
  try {
    config = resolveRecordedConfig(recorded, `${file} (its recorded config)`);  // fields added since it was written take their defaults
  } catch (err) {
    disposeCheckpoint(ckpt);
    throw err;
  }
  const net = new UNet(config.net, config.seed);
  try {
    assertParamsMatch(file, net.paramShapes(), params);
    assertParamsMatch(file, net.paramShapes(), ema);
    assertFiniteTensors(file, { ema });  // the weights samplers use: NaN ones would draw a black grid
  } catch (err) {
    net.dispose();
    disposeCheckpoint(ckpt);
    throw err;
  }
  for (const [name, p] of net.params) p.assign(params.get(name) as tf.Tensor);
  for (const [group, tensors] of Object.entries(ckpt.groups)) if (group !== 'ema') tensors.forEach((t) => t.dispose());
  const dir = path.dirname(file);
  const runDir = path.basename(dir) === CHECKPOINT_DIR ? path.dirname(dir) : dir;
  return { config, net, ema, emaOnly: !ckpt.groups.params, iteration: Number(ckpt.meta.iteration ?? 0), checkpoint: file, runDir };
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
