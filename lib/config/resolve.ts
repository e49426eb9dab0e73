/**
 * Resolves a run config once: defaults, then a preset file (after the presets it extends), then command-line
 * overrides; then validates it against the one schema (lib/config/schema.ts), naming where a bad key came from.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RUN_KINDS, type EmaConfig, type RunConfig, type RunKind } from './types';
import { defaultRunConfig } from './defaults';
import { networkPreset } from './network-presets';
import { ConfigError, emaSchedule, stageItersOf, validateRunConfig } from './schema';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** Values to apply on top of a config, keyed as the config is (`{ ect: { mapping: 'constant' } }`); null deletes a key. */
export type ConfigPatch = { [key: string]: Json };
type JsonObject = ConfigPatch;

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

/** Values that apply on top of the config so far, and where they came from (a preset file, a --set). */
interface Layer {
  source: string;
  values: JsonObject;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A preset file as layers: the presets it `extends` first, then its own values. */
function presetLayers(file: string, seen: string[] = []): Layer[] {
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
  const layer = { source: resolved, values: own };
  if (parent === undefined) return [layer];
  if (typeof parent !== 'string') throw new Error(`config ${resolved}: 'extends' must be a preset name`);
  return [...presetLayers(parentPresetFile(resolved, parent), [...seen, resolved]), layer];
}

/**
 * The file a preset's `extends` names: a file beside the preset, else (a bare name, as a user's file outside
 * configs/ gives) the preset of that name in configs/.
 */
function parentPresetFile(child: string, parent: string): string {
  const beside = path.resolve(path.dirname(child), parent.endsWith('.json') ? parent : `${parent}.json`);
  if (fs.existsSync(beside)) return beside;
  const bareName = !parent.includes('/') && !parent.includes(path.sep);
  const inPresets = path.join(PRESET_DIR, path.basename(beside));
  if (bareName && fs.existsSync(inPresets)) return inPresets;
  const known = fs.existsSync(PRESET_DIR) ? fs.readdirSync(PRESET_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length)).join(', ') : '(none)';
  throw new Error(`config ${child}: 'extends' ${JSON.stringify(parent)}: no ${beside}${bareName ? `, and no preset of that name in configs/ (known: ${known})` : ''}`);
}

/** Where overrides made by parseOverride came from, for error messages. */
const overrideSources = new WeakMap<object, string>();

/** Names where an override came from (e.g. '--eval-every 5') so that errors about its keys say so; returns it. */
export function labelOverride<T extends object>(values: T, source: string): T {
  overrideSources.set(values, source);
  return values;
}

/** Parses `a.b.c=value` (value as JSON when it parses, else a string; null deletes the key) into a nested patch. */
export function parseOverride(assignment: string): ConfigPatch {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new Error(`override '${assignment}' must look like key.path=value`);
  const keys = assignment.slice(0, eq).trim().split('.');
  const text = assignment.slice(eq + 1).trim();
  let value: Json;
  try { value = JSON.parse(text) as Json; } catch { value = text; }
  return labelOverride(keys.reduceRight<Json>((inner, key) => ({ [key]: inner }), value) as JsonObject, `--set ${assignment}`);
}

/** The layer that last set each key path (its index in the layers; absent: the defaults). */
type Provenance = Map<string, number>;

/** Forgets what set the keys below `key` (they were replaced or deleted with it). */
function forgetBelow(provenance: Provenance, key: string): void {
  for (const known of [...provenance.keys()]) if (known.startsWith(`${key}.`)) provenance.delete(known);
}

/** Merges `patch` into `base` object-wise (arrays and scalars replace, null deletes), recording what set each key. */
function mergeLayer(base: JsonObject, patch: JsonObject, layer: number, provenance: Provenance, prefix = ''): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const keyPath = prefix + key;
    if (isObject(value) && isObject(out[key])) {
      out[key] = mergeLayer(out[key] as JsonObject, value, layer, provenance, `${keyPath}.`);
      continue;
    }
    forgetBelow(provenance, keyPath);
    provenance.set(keyPath, layer);
    if (value === null) delete out[key];
    else out[key] = isObject(value) ? mergeLayer({}, value, layer, provenance, `${keyPath}.`) : value;  // new section: its nulls go too
  }
  return out;
}

/** Applies one layer; `net` given as a preset name, or as {preset, ...fields}, first replaces the whole network. */
function applyLayer(config: JsonObject, values: JsonObject, layer: number, provenance: Provenance): JsonObject {
  const { net, ...rest } = values;
  const named = typeof net === 'string' ? { preset: net } : net;
  if (!isObject(named) || named.preset === undefined) return mergeLayer(config, values, layer, provenance);
  const { preset, ...fields } = named;
  if (typeof preset !== 'string') throw new Error(`net.preset must be a network preset name, got ${JSON.stringify(preset)}`);
  const replaced = { ...config, net: networkPreset(preset) as unknown as JsonObject };
  forgetBelow(provenance, 'net');
  provenance.set('net', layer);
  return mergeLayer(replaced, { ...rest, net: fields }, layer, provenance);
}

/**
 * The EMA after the kind's default: its default schedule fills in only when the layers set no key of the other
 * one (a pretraining preset switched to a fixed beta has no half-life left over from the defaults).
 */
function withDefaultEma(ema: Json | undefined, defaults: EmaConfig): Json | undefined {
  if (!isObject(ema)) return ema;
  const chosen = emaSchedule(ema);
  return chosen === undefined || chosen === emaSchedule({ ...defaults }) ? { ...(defaults as JsonObject), ...ema } : ema;
}

/** The error message of `err`, led by where its most recently set key came from and naming the others' sources. */
function locate(err: ConfigError, sources: string[], provenance: Provenance): string {
  const layerOf = (key: string): number => {
    for (let p = key; p; p = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '') {
      const layer = provenance.get(p);
      if (layer !== undefined) return layer;
    }
    return -1;
  };
  const sourceOf = (key: string) => (layerOf(key) < 0 ? 'defaults' : sources[layerOf(key)]);
  const keys = [...err.keys].sort((a, b) => layerOf(b) - layerOf(a));
  const where = keys.length > 0 ? sourceOf(keys[0]) : 'config';
  const elsewhere = new Map<string, string[]>();
  for (const key of keys.slice(1)) {
    const source = sourceOf(key);
    if (source !== where) elsewhere.set(source, [...(elsewhere.get(source) ?? []), key]);
  }
  const others = [...elsewhere].map(([source, from]) => `${from.join(' and ')} from ${source}`);
  return `${where}: ${err.message}${others.length > 0 ? ` (${others.join('; ')})` : ''}`;
}

/** Keys whose change a preset's description need not mention: they name or place the run, or are the description. */
const UNDESCRIBED_KEYS = ['description', 'name', 'init'];

/**
 * The preset's description followed by what the flags and --set changed in it ("Changed from fmnist-ect-base:
 * optimizer.lr 0.001, iters 2500"), so that the description a run records is true of what ran. `provenance` gives
 * the layer that set each key; layers from `firstOverride` on are the overrides.
 */
function withOverridesDescribed(config: JsonObject, provenance: Provenance, firstOverride: number, presetName: string): JsonObject {
  if (typeof config.description !== 'string') return config;
  const changed = [...provenance].filter(([key, layer]) => layer >= firstOverride && !UNDESCRIBED_KEYS.includes(key.split('.')[0])).map(([key]) => key).sort();
  if (changed.length === 0) return config;
  const values = changed.map((key) => `${key} ${JSON.stringify(valueAt(config, key)) ?? '(deleted)'}`);
  return { ...config, description: `${config.description} Changed from ${presetName}: ${values.join(', ')}.` };
}

/**
 * Schedules given as fractions of the run, made concrete for its length: ect.stageIters from ect.stageFraction and
 * optimizer.decayKimg from optimizer.decayFraction (both kept, so the record says how the number came about). A run
 * resumed with other iters thus has another schedule, which the resume check refuses.
 */
function withRunFractions(config: JsonObject): JsonObject {
  const { ect, optimizer, iters, batch } = config;
  if (typeof iters !== 'number' || typeof batch !== 'number') return config;  // the schema names the bad field
  const out = { ...config };
  if (isObject(ect) && typeof ect.stageFraction === 'number') out.ect = { ...ect, stageIters: stageItersOf(ect.stageFraction, iters) };
  if (isObject(optimizer) && typeof optimizer.decayFraction === 'number') {
    out.optimizer = { ...optimizer, decayKimg: optimizer.decayFraction * iters * batch / 1000 };
  }
  return out;
}

/**
 * Values a run must keep, with what fixes them: they replace the defaults and the preset's values, and a flag or
 * --set that sets one to another value is an error naming its source (e.g. the network of a tuning run's --init
 * checkpoint).
 */
export interface FixedValues {
  values: ConfigPatch;
  source: string;   // what fixes them, e.g. 'the --init checkpoint <file>'
  hint: string;     // what to do instead
}

/** The leaf key paths of a patch (arrays are leaves) with their values. */
function leaves(values: JsonObject, prefix = ''): Array<[string, Json]> {
  return Object.entries(values).flatMap(([key, value]) => (isObject(value) ? leaves(value, `${prefix}${key}.`) : [[`${prefix}${key}`, value] as [string, Json]]));
}

function valueAt(config: JsonObject, keyPath: string): Json | undefined {
  return keyPath.split('.').reduce<Json | undefined>((inner, key) => (isObject(inner) ? inner[key] : undefined), config);
}

/** Throws a ConfigError listing every fixed value the layers changed. */
function assertFixedKept(merged: JsonObject, fixed: FixedValues): void {
  const changed = leaves(fixed.values).filter(([key, value]) => JSON.stringify(valueAt(merged, key)) !== JSON.stringify(value));
  if (changed.length === 0) return;
  const list = changed.map(([key, value]) => `${key} ${JSON.stringify(valueAt(merged, key))} (${fixed.source} has ${JSON.stringify(value)})`).join(', ');
  throw new ConfigError(`${list}: ${fixed.hint}`, changed.map(([key]) => key));
}

/**
 * The run config for `kind`: defaults, the preset file (optional), then overrides in order. Unknown keys,
 * bad values and a preset of the other kind are errors that name the key and the file or --set it came from.
 * `fixed` values replace the defaults and the preset's values, and may not be changed by the overrides.
 */
export function resolveRunConfig(kind: RunKind, presetFile?: string, overrides: ConfigPatch[] = [], fixed?: FixedValues): RunConfig {
  const preset = presetFile ? presetLayers(presetFile) : [];
  const layers: Layer[] = [
    ...preset,
    ...overrides.map((values, i) => ({ source: overrideSources.get(values) ?? `override ${i + 1} ${JSON.stringify(values)}`, values })),
  ];
  const { ema: defaultEma, ...defaults } = defaultRunConfig(kind);
  let merged: JsonObject = mergeLayer({ ...(defaults as unknown as JsonObject), ema: {} }, fixed?.values ?? {}, -1, new Map());
  const provenance: Provenance = new Map();
  layers.forEach((layer, i) => {
    try {
      merged = applyLayer(merged, layer.values, i, provenance);
    } catch (err) {
      throw new Error(`${layer.source}: ${(err as Error).message}`);
    }
    // fixed values stand in for the preset's as for the defaults (a tuning preset names a network for runs
    // without --init); only the user's own flags and --set may not change them
    if (fixed && i === preset.length - 1) merged = mergeLayer(merged, fixed.values, -1, new Map());
  });
  merged.ema = withDefaultEma(merged.ema, defaultEma) as Json;
  if (preset.length) merged = withOverridesDescribed(merged, provenance, preset.length, path.basename(preset[preset.length - 1].source, '.json'));
  try {
    merged = withRunFractions(merged);
    if ((RUN_KINDS as readonly Json[]).includes(merged.kind) && merged.kind !== kind) {
      throw new ConfigError(`it is a '${String(merged.kind)}' config, not '${kind}'`, ['kind']);
    }
    if (fixed) assertFixedKept(merged, fixed);
    validateRunConfig(merged);
  } catch (err) {
    if (err instanceof ConfigError) throw new Error(locate(err, layers.map((l) => l.source), provenance));
    throw err;
  }
  return merged as unknown as RunConfig;
}

/** The in-run evaluation seed of runs recorded before the config had evalSeed: the default sample seed. */
export const RECORDED_EVAL_SEED = 0;

/**
 * A config a run recorded (its config.json without the bookkeeping fields, or a checkpoint's meta) as a config of
 * today's schema: resolved on the defaults like any other layer, so fields added since it was written take their
 * defaults (net.labelDim and net.labelDropout: unconditional). `source` names it in errors.
 */
export function resolveRecordedConfig(recorded: RunConfig, source: string): RunConfig {
  if (!(RUN_KINDS as readonly unknown[]).includes(recorded.kind)) throw new Error(`${source}: kind must be ${RUN_KINDS.join(' or ')}, got ${JSON.stringify(recorded.kind)}`);
  // runs recorded before evalSeed existed evaluated on the default sample seed's noise
  const evalSeed = recorded.evalSeed ?? RECORDED_EVAL_SEED;
  return resolveRunConfig(recorded.kind, undefined, [labelOverride({ ...recorded, evalSeed } as unknown as ConfigPatch, source)]);
}
