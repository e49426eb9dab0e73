/** Resolves a run config: defaults, then a preset JSON file, then command-line overrides; then validates it. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NetworkConfig, RunConfig, RunKind } from './types';
import { defaultRunConfig } from './defaults';
import { networkPreset } from '../nn/presets';
import { validateNetworkConfig } from '../nn/architecture';
import { MAPPINGS } from '../ect/mapping';
import { WEIGHTINGS } from '../ect/weighting';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** Folder of the presets shipped with the project. */
export const PRESET_DIR = path.resolve(__dirname, '..', '..', '..', 'configs');

/** Finds a preset by path, or by name in configs/ (with or without .json). */
export function presetPath(nameOrPath: string): string {
  const candidates = [nameOrPath, path.join(PRESET_DIR, nameOrPath), path.join(PRESET_DIR, `${nameOrPath}.json`)];
  const found = candidates.find((p) => fs.existsSync(p) && fs.statSync(p).isFile());
  if (!found) {
    const known = fs.existsSync(PRESET_DIR) ? fs.readdirSync(PRESET_DIR).filter((f) => f.endsWith('.json')).join(', ') : '(none)';
    throw new Error(`config ${nameOrPath}: no such file, and no preset of that name in configs/ (known: ${known})`);
  }
  return found;
}

/** Reads a preset file; `extends` names another preset whose values it overrides. */
export function readPreset(file: string, seen: string[] = []): JsonObject {
  const resolved = presetPath(file);
  if (seen.includes(resolved)) throw new Error(`config ${resolved}: 'extends' loops through ${seen.join(' -> ')}`);
  let parsed: Json;
  try {
    parsed = JSON.parse(fs.readFileSync(resolved, 'utf8')) as Json;
  } catch (err) {
    throw new Error(`config ${resolved}: not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(parsed)) throw new Error(`config ${resolved}: the top level must be a JSON object`);
  const { extends: parent, ...own } = parsed;
  if (parent === undefined) return own;
  if (typeof parent !== 'string') throw new Error(`config ${resolved}: 'extends' must be a preset name`);
  const base = readPreset(path.resolve(path.dirname(resolved), parent.endsWith('.json') ? parent : `${parent}.json`), [...seen, resolved]);
  return deepMerge(base, own);
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Object-wise merge; arrays and scalars of `patch` replace those of `base`. */
export function deepMerge(base: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const current = out[key];
    out[key] = isObject(current) && isObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

/** Parses `a.b.c=value` (value as JSON when it parses, else a string) into a nested patch. */
export function parseOverride(assignment: string): JsonObject {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new Error(`override '${assignment}' must look like key.path=value`);
  const keys = assignment.slice(0, eq).trim().split('.');
  const text = assignment.slice(eq + 1).trim();
  let value: Json;
  try { value = JSON.parse(text) as Json; } catch { value = text; }
  return keys.reduceRight<Json>((inner, key) => ({ [key]: inner }), value) as JsonObject;
}

/** Expands `net` given as a preset name or as {preset, ...fields} into a full network config. */
function expandNetwork(net: Json | undefined, fallback: NetworkConfig): Json {
  if (typeof net === 'string') return networkPreset(net) as unknown as Json;
  if (isObject(net) && typeof net.preset === 'string') {
    const { preset, ...fields } = net;
    return deepMerge(networkPreset(preset as string) as unknown as JsonObject, fields);
  }
  if (isObject(net)) return deepMerge(fallback as unknown as JsonObject, net);
  return fallback as unknown as Json;
}

/**
 * The run config for `kind`: defaults, the preset file (optional), then overrides in order.
 * `source` names where the values came from in error messages.
 */
export function resolveRunConfig(kind: RunKind, presetFile?: string, overrides: JsonObject[] = []): RunConfig {
  const defaults = defaultRunConfig(kind);
  let merged = defaults as unknown as JsonObject;
  let source = 'defaults';
  const apply = (patch: JsonObject) => {
    const net = expandNetwork(patch.net, merged.net as unknown as NetworkConfig);
    merged = deepMerge(merged, { ...patch, ...(patch.net !== undefined ? { net } : {}) });
  };
  if (presetFile) {
    const preset = readPreset(presetFile);
    if (preset.kind !== undefined && preset.kind !== kind) {
      throw new Error(`config ${presetPath(presetFile)}: it is a '${String(preset.kind)}' preset, not '${kind}'`);
    }
    apply(preset);
    source = presetPath(presetFile);
  }
  for (const patch of overrides) apply(patch);
  const config = merged as unknown as RunConfig;
  config.kind = kind;
  validateRunConfig(config, source);
  return config;
}

/** Checks every field a run depends on; errors name the key, the bad value and where it came from. */
export function validateRunConfig(cfg: RunConfig, source = 'config'): void {
  const fail = (key: string, why: string) => { throw new Error(`${source}: ${key} ${why}`); };
  const positiveInt = (key: string, v: unknown) => { if (!Number.isInteger(v) || (v as number) <= 0) fail(key, `must be a positive integer, got ${JSON.stringify(v)}`); };
  const nonNegInt = (key: string, v: unknown) => { if (!Number.isInteger(v) || (v as number) < 0) fail(key, `must be a non-negative integer, got ${JSON.stringify(v)}`); };
  const positive = (key: string, v: unknown) => { if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) fail(key, `must be a positive number, got ${JSON.stringify(v)}`); };
  const finite = (key: string, v: unknown) => { if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, `must be a number, got ${JSON.stringify(v)}`); };

  if (!['pretrain', 'tune'].includes(cfg.kind)) fail('kind', `must be pretrain or tune, got ${JSON.stringify(cfg.kind)}`);
  if (!['cifar10', 'fashion-mnist', 'synthetic'].includes(cfg.data?.name)) fail('data.name', `must be cifar10, fashion-mnist or synthetic, got ${JSON.stringify(cfg.data?.name)}`);
  try { validateNetworkConfig(cfg.net); } catch (err) { fail('', (err as Error).message); }
  positiveInt('batch', cfg.batch); positiveInt('iters', cfg.iters);
  nonNegInt('seed', cfg.seed); positiveInt('logEvery', cfg.logEvery); positiveInt('ckptEvery', cfg.ckptEvery);
  nonNegInt('sampleEvery', cfg.sampleEvery); finite('evalEvery', cfg.evalEvery); nonNegInt('evalN', cfg.evalN);
  for (const key of ['sigmaData', 'sigmaMin', 'sigmaMax', 'rho', 'pStd', 'evalSigmaMin'] as const) positive(`edm.${key}`, cfg.edm[key]);
  positiveInt('edm.heunSteps', cfg.edm.heunSteps); finite('edm.pMean', cfg.edm.pMean);
  if (!MAPPINGS.includes(cfg.ect.mapping)) fail('ect.mapping', `must be one of ${MAPPINGS.join(', ')}, got ${JSON.stringify(cfg.ect.mapping)}`);
  if (!WEIGHTINGS.includes(cfg.ect.weighting)) fail('ect.weighting', `must be one of ${WEIGHTINGS.join(', ')}, got ${JSON.stringify(cfg.ect.weighting)}`);
  if (typeof cfg.ect.q !== 'number' || !(cfg.ect.q > 1)) fail('ect.q', `must be a number above 1, got ${JSON.stringify(cfg.ect.q)}`);
  positiveInt('ect.stageIters', cfg.ect.stageIters); positive('ect.pStd', cfg.ect.pStd); finite('ect.pMean', cfg.ect.pMean);
  finite('ect.k', cfg.ect.k); finite('ect.b', cfg.ect.b); positive('ect.nCap', cfg.ect.nCap);
  if (typeof cfg.ect.huberC !== 'number' || cfg.ect.huberC < 0) fail('ect.huberC', `must be >= 0, got ${JSON.stringify(cfg.ect.huberC)}`);
  if (!['train', 'eval'].includes(cfg.ect.samplePrecond)) fail('ect.samplePrecond', `must be train or eval, got ${JSON.stringify(cfg.ect.samplePrecond)}`);
  if (!Array.isArray(cfg.ect.midT) || cfg.ect.midT.some((t) => !(t > 0) || t >= cfg.edm.sigmaMax)) {
    fail('ect.midT', `must be a list of times in (0, sigmaMax), got ${JSON.stringify(cfg.ect.midT)}`);
  }
  if (!['adam', 'radam'].includes(cfg.optimizer.name)) fail('optimizer.name', `must be adam or radam, got ${JSON.stringify(cfg.optimizer.name)}`);
  positive('optimizer.lr', cfg.optimizer.lr); positive('optimizer.eps', cfg.optimizer.eps);
  for (const key of ['beta1', 'beta2'] as const) {
    const v = cfg.optimizer[key];
    if (typeof v !== 'number' || v < 0 || v >= 1) fail(`optimizer.${key}`, `must be in [0, 1), got ${JSON.stringify(v)}`);
  }
  if (typeof cfg.optimizer.rampupKimg !== 'number' || cfg.optimizer.rampupKimg < 0) fail('optimizer.rampupKimg', `must be >= 0, got ${JSON.stringify(cfg.optimizer.rampupKimg)}`);
  const ema = cfg.ema;
  if (ema.beta !== undefined) {
    if (typeof ema.beta !== 'number' || ema.beta < 0 || ema.beta >= 1) fail('ema.beta', `must be in [0, 1), got ${JSON.stringify(ema.beta)}`);
  } else if (ema.halfLifeKimg === undefined) {
    fail('ema', 'needs either beta or halfLifeKimg');
  } else {
    positive('ema.halfLifeKimg', ema.halfLifeKimg);
  }
}
