/**
 * The one schema of a run config: for each section of lib/config/types.ts its keys, what each value must be, and
 * the rules that span keys. Config resolution, the optimiser and the EMA all validate through these functions.
 */
import {
  DATASET_NAMES, EVAL_SPLITS, MAPPINGS, NETWORK_ARCHS, NON_FINITE_POLICIES, OPTIMIZERS, PRECISIONS, PRECOND_KINDS, PRECOND_MODES, RUN_KINDS, WEIGHTINGS,
  type DataConfig, type EctConfig, type EdmConfig, type EmaConfig, type NetworkConfig, type OptimizerConfig, type PosthocEmaConfig, type RunConfig, type VpConstants,
} from './types';

/** A problem in a config; `keys` are the key paths it is about, so a resolver can say where each came from. */
export class ConfigError extends Error {
  constructor(message: string, readonly keys: string[]) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** What one key's value must be. */
interface Field {
  must: string;                              // for messages: "<key> must be <must>"
  check(value: unknown, key: string): void;  // throws a ConfigError naming `key`
  optional?: boolean;
  fields?: FieldMap;                         // a section's own keys (looked through for unknown keys)
}

/** A section's keys: exactly those of its type, which the compiler checks both ways. */
type Fields<T> = { [K in keyof T]-?: Field };
type FieldMap = Record<string, Field>;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isPositiveInteger = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
const isPositiveNumber = (v: unknown) => isNumber(v) && v > 0;

function leaf(must: string, ok: (value: unknown) => boolean): Field {
  return { must, check: (value, key) => { if (!ok(value)) throw new ConfigError(`${key} must be ${must}, got ${JSON.stringify(value)}`, [key]); } };
}

const positiveInteger = leaf('a positive integer', isPositiveInteger);
const nonNegativeInteger = leaf('a non-negative integer', (v) => Number.isInteger(v) && (v as number) >= 0);
const positiveNumber = leaf('a positive number', isPositiveNumber);
const nonNegativeNumber = leaf('a number >= 0', (v) => isNumber(v) && v >= 0);
const finiteNumber = leaf('a number', isNumber);
const probability = leaf('in [0, 1)', (v) => isNumber(v) && v >= 0 && v < 1);
const boolean = leaf('true or false', (v) => typeof v === 'boolean');
const text = leaf('a string', (v) => typeof v === 'string');
const nonEmptyText = leaf('a non-empty string', (v) => typeof v === 'string' && v.length > 0);

/** 'a', 'b' or 'c' */
function quotedList(names: readonly string[]): string {
  const quoted = names.map((n) => `'${n}'`);
  return quoted.length > 1 ? `${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]}` : quoted.join('');
}

function oneOf(names: readonly string[]): Field {
  return leaf(quotedList(names), (v) => typeof v === 'string' && names.includes(v));
}

function listOf(item: (value: unknown) => boolean, must: string, nonEmpty = false): Field {
  return leaf(must, (v) => Array.isArray(v) && (!nonEmpty || v.length > 0) && v.every(item));
}

function optional(field: Field): Field {
  return { ...field, optional: true };
}

/** A nested section, checked by its own validator. */
function section<T>(fields: Fields<T>, validate: (value: unknown) => void): Field {
  return { must: 'an object', check: (value) => validate(value), fields: fields as FieldMap };
}

/** Edit distance with adjacent transpositions (optimal string alignment), case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  const d = Array.from({ length: s.length + 1 }, (_, i) => Array.from({ length: t.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= s.length; i++) {
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[s.length][t.length];
}

const lastPart = (key: string) => key.slice(key.lastIndexOf('.') + 1);

/**
 * The error for an unknown key: the closest of its siblings by edit distance, else a key of that name in
 * another section (`lr` -> `optimizer.lr`), else the valid keys at that level.
 */
function unknownKey(key: string, siblings: string[], everyKey: string[]): ConfigError {
  const name = lastPart(key);
  const ranked = siblings.map((s) => ({ s, d: editDistance(name, lastPart(s)) })).sort((x, y) => x.d - y.d);
  const close = ranked.length > 0 && ranked[0].d <= Math.max(1, Math.floor(name.length / 3)) ? [ranked[0].s] : [];
  const moved = everyKey.filter((k) => k !== key && lastPart(k).toLowerCase() === name.toLowerCase());
  const guesses = close.length > 0 ? close : moved;
  const hint = guesses.length > 0 ? `did you mean ${guesses.map((g) => `'${g}'`).join(' or ')}?` : `valid keys: ${siblings.join(', ')}`;
  return new ConfigError(`unknown key '${key}'; ${hint}`, [key]);
}

/** Every key path below `fields`, sections included. */
function keyPaths(fields: FieldMap, prefix: string): string[] {
  return Object.entries(fields).flatMap(([key, field]) =>
    [prefix + key, ...(field.fields ? keyPaths(field.fields, `${prefix}${key}.`) : [])]);
}

/** Throws on the first key of `value` (or of its sections) that `fields` does not have. */
function rejectUnknownKeys(value: JsonObject, fields: FieldMap, prefix: string, everyKey: string[]): void {
  for (const [key, inner] of Object.entries(value)) {
    if (!Object.hasOwn(fields, key)) throw unknownKey(prefix + key, Object.keys(fields).map((k) => prefix + k), everyKey);
    const sub = fields[key].fields;
    if (sub && isObject(inner)) rejectUnknownKeys(inner, sub, `${prefix}${key}.`, everyKey);
  }
}

/** Checks an object against its fields: unknown keys first (a misspelt key would otherwise look missing), then each value. */
function checkFields<T>(name: string, value: unknown, fields: Fields<T>): asserts value is T {
  const prefix = name ? `${name}.` : '';
  if (!isObject(value)) throw new ConfigError(`${name || 'a config'} must be an object, got ${JSON.stringify(value)}`, [name]);
  const all = fields as FieldMap;
  rejectUnknownKeys(value, all, prefix, keyPaths(all, prefix));
  for (const [key, field] of Object.entries(all)) {
    const v = value[key];
    if (v === undefined) {
      if (!field.optional) throw new ConfigError(`${prefix}${key} is missing; it must be ${field.must}`, [prefix + key]);
    } else {
      field.check(v, prefix + key);
    }
  }
}

// data -------------------------------------------------------------------------------------------------------

const DATA_FIELDS: Fields<DataConfig> = {
  name: oneOf(DATASET_NAMES),
  dir: optional(text),
  flip: boolean,
  limit: optional(nonNegativeInteger),
};

export function validateDataConfig(data: unknown): asserts data is DataConfig {
  checkFields('data', data, DATA_FIELDS);
}

// net --------------------------------------------------------------------------------------------------------

const NETWORK_FIELDS: Fields<NetworkConfig> = {
  resolution: positiveInteger,
  imageChannels: positiveInteger,
  modelChannels: positiveInteger,
  channelMult: listOf(isPositiveInteger, 'a non-empty list of positive integers', true),
  numBlocks: positiveInteger,
  attnResolutions: listOf(isPositiveInteger, 'a list of positive integers'),
  dropout: probability,
  embedMult: positiveInteger,
  labelDim: nonNegativeInteger,
  labelDropout: probability,
  arch: optional(oneOf(NETWORK_ARCHS)),
};

/** Checks a network config: its fields, and that the UNet can be built (halvings, embedding, GroupNorm groups). */
export function validateNetworkConfig(net: unknown): asserts net is NetworkConfig {
  checkFields('net', net, NETWORK_FIELDS);
  if (net.modelChannels % 2) throw new ConfigError(`net.modelChannels must be even (positional embedding), got ${net.modelChannels}`, ['net.modelChannels']);
  const levels = net.channelMult.length;
  if (net.resolution % 2 ** (levels - 1)) {
    throw new ConfigError(`net.resolution ${net.resolution} cannot be halved ${levels - 1} times (channelMult has ${levels} levels)`, ['net.resolution', 'net.channelMult']);
  }
  for (const mult of [1, ...net.channelMult]) {
    const c = net.modelChannels * mult;
    if (c % 4) throw new ConfigError(`net: ${c} channels cannot form GroupNorm groups of 4`, ['net.modelChannels', 'net.channelMult']);
  }
  if (net.labelDropout > 0 && net.labelDim === 0) {
    throw new ConfigError(`net.labelDropout ${net.labelDropout} needs class labels, but net.labelDim is 0 (unconditional)`, ['net.labelDropout', 'net.labelDim']);
  }
}

// edm --------------------------------------------------------------------------------------------------------

const VP_FIELDS: Fields<VpConstants> = {
  betaD: positiveNumber,
  betaMin: positiveNumber,
  M: leaf('an integer above 1', (v) => Number.isInteger(v) && (v as number) > 1),
};

export function validateVpConstants(vp: unknown): asserts vp is VpConstants {
  checkFields('edm.vp', vp, VP_FIELDS);
}

const EDM_FIELDS: Fields<EdmConfig> = {
  sigmaData: positiveNumber,
  sigmaMin: positiveNumber,
  sigmaMax: positiveNumber,
  rho: positiveNumber,
  heunSteps: positiveInteger,
  pMean: finiteNumber,
  pStd: positiveNumber,
  evalSigmaMin: positiveNumber,
  precond: optional(oneOf(PRECOND_KINDS)),
  vp: optional(section(VP_FIELDS, validateVpConstants)),
};

export function validateEdmConfig(edm: unknown): asserts edm is EdmConfig {
  checkFields('edm', edm, EDM_FIELDS);
  // VPPrecond's constants belong to it alone: a VP network without them, or them without one, is a mistake
  if ((edm.precond === 'vp') !== (edm.vp !== undefined)) {
    throw new ConfigError(edm.vp === undefined ? "edm.precond 'vp' needs edm.vp (betaD, betaMin, M)" : `edm.vp is VPPrecond's, but edm.precond is '${edm.precond ?? 'edm'}'`, ['edm.precond', 'edm.vp']);
  }
  for (const key of ['sigmaMin', 'evalSigmaMin'] as const) {
    if (!(edm[key] < edm.sigmaMax)) {
      throw new ConfigError(`edm.${key} must be below edm.sigmaMax (${edm.sigmaMax}), got ${edm[key]}`, [`edm.${key}`, 'edm.sigmaMax']);
    }
  }
}

// ect --------------------------------------------------------------------------------------------------------

const ECT_FIELDS: Fields<EctConfig> = {
  pMean: finiteNumber,
  pStd: positiveNumber,
  mapping: oneOf(MAPPINGS),
  q: leaf('a number above 1', (v) => isNumber(v) && v > 1),
  stageIters: positiveInteger,
  stageFraction: optional(leaf('in (0, 1]', (v) => isNumber(v) && v > 0 && v <= 1)),
  maxStage: optional(nonNegativeInteger),
  k: finiteNumber,
  b: finiteNumber,
  nCap: positiveNumber,
  huberC: nonNegativeNumber,
  weighting: oneOf(WEIGHTINGS),
  samplePrecond: oneOf(PRECOND_MODES),
  midT: listOf(isPositiveNumber, 'a list of positive times'),
};

export function validateEctConfig(ect: unknown): asserts ect is EctConfig {
  checkFields('ect', ect, ECT_FIELDS);
}

// optimizer --------------------------------------------------------------------------------------------------

const OPTIMIZER_FIELDS: Fields<OptimizerConfig> = {
  name: oneOf(OPTIMIZERS),
  lr: positiveNumber,
  beta1: probability,
  beta2: probability,
  eps: positiveNumber,
  rampupKimg: nonNegativeNumber,
  decayKimg: optional(nonNegativeNumber),
  decayFraction: optional(leaf('in (0, 1]', (v) => isNumber(v) && v > 0 && v <= 1)),
  cooldownFraction: optional(leaf('in [0, 1]', (v) => isNumber(v) && v >= 0 && v <= 1)),
};

export function validateOptimizerConfig(optimizer: unknown): asserts optimizer is OptimizerConfig {
  checkFields('optimizer', optimizer, OPTIMIZER_FIELDS);
}

// ema --------------------------------------------------------------------------------------------------------

/**
 * The largest relative width a power-function EMA can have: sigma_rel(gamma) = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))
 * is 0.2887 at gamma = 0 and falls for larger gamma (lib/train/ema.ts powerEmaGamma).
 */
export const MAX_SIGMA_REL = Math.sqrt(1 / 12);

const isSigmaRel = (v: unknown) => isNumber(v) && v > 0 && v < MAX_SIGMA_REL;

const POSTHOC_EMA_FIELDS: Fields<PosthocEmaConfig> = {
  sigmaRels: listOf(isSigmaRel, `a non-empty list of relative widths in (0, ${MAX_SIGMA_REL.toFixed(4)})`, true),
  snapshotEvery: positiveInteger,
};

export function validatePosthocEmaConfig(posthoc: unknown): asserts posthoc is PosthocEmaConfig {
  checkFields('ema.posthoc', posthoc, POSTHOC_EMA_FIELDS);
}

const EMA_FIELDS: Fields<EmaConfig> = {
  beta: optional(leaf('in [0, 1]', (v) => isNumber(v) && v >= 0 && v <= 1)),
  halfLifeKimg: optional(nonNegativeNumber),
  rampupRatio: optional(nonNegativeNumber),
  sigmaRel: optional(leaf(`in (0, ${MAX_SIGMA_REL.toFixed(4)})`, isSigmaRel)),
  posthoc: optional(section(POSTHOC_EMA_FIELDS, validatePosthocEmaConfig)),
};

/** The keys of the three EMA schedules: a fixed beta, EDM's half-life with its ramp-up, a power function. */
type EmaScheduleName = 'fixed' | 'half-life' | 'power';
const EMA_SCHEDULE_KEYS: Record<EmaScheduleName, readonly string[]> = {
  fixed: ['beta'],
  'half-life': ['halfLifeKimg', 'rampupRatio'],
  power: ['sigmaRel'],
};

/** Which schedules an EMA section sets keys of. */
function emaSchedulesSet(ema: Record<string, unknown>): EmaScheduleName[] {
  return (Object.keys(EMA_SCHEDULE_KEYS) as EmaScheduleName[]).filter((name) => EMA_SCHEDULE_KEYS[name].some((k) => ema[k] !== undefined));
}

/** Which schedule an EMA section sets keys of: 'fixed', 'half-life', 'power', 'several', or undefined for none. */
export function emaSchedule(ema: Record<string, unknown>): EmaScheduleName | 'several' | undefined {
  const set = emaSchedulesSet(ema);
  return set.length > 1 ? 'several' : set[0];
}

/** Checks an EMA config: its values, and that it is exactly one schedule (a null in an override deletes a key). */
export function validateEmaConfig(ema: unknown): asserts ema is EmaConfig {
  checkFields('ema', ema, EMA_FIELDS);
  const values = ema as Record<string, unknown>;
  const set = emaSchedulesSet(values);
  if (set.length > 1) {
    const keys = set.flatMap((name) => EMA_SCHEDULE_KEYS[name].filter((k) => values[k] !== undefined).map((k) => `ema.${k}`));
    const keep = set.map((name) => `${set.filter((other) => other !== name).flatMap((other) => EMA_SCHEDULE_KEYS[other].filter((k) => values[k] !== undefined))
      .map((k) => `--set ema.${k}=null`).join(' ')} for the ${name} schedule`);
    throw new ConfigError(`ema must set exactly one of beta, halfLifeKimg and sigmaRel, but has ${keys.join(', ')}; keep one schedule: ${keep.join(', or ')}`, keys);
  }
  if (set.length === 0 || (set[0] === 'half-life' && ema.halfLifeKimg === undefined)) {
    throw new ConfigError(`ema must set exactly one of beta, halfLifeKimg and sigmaRel, got neither (${JSON.stringify(ema)})`,
      Object.keys(ema).length > 0 ? Object.keys(ema).map((k) => `ema.${k}`) : ['ema']);
  }
}

/** The iterations per ECT stage of a run of `iters` iterations whose stages last `fraction` of it (at least 1). */
export function stageItersOf(fraction: number, iters: number): number {
  return Math.max(1, Math.round(fraction * iters));
}

// the whole run ----------------------------------------------------------------------------------------------

const RUN_FIELDS: Fields<RunConfig> = {
  kind: oneOf(RUN_KINDS),
  name: nonEmptyText,
  description: optional(text),
  data: section(DATA_FIELDS, validateDataConfig),
  net: section(NETWORK_FIELDS, validateNetworkConfig),
  edm: section(EDM_FIELDS, validateEdmConfig),
  ect: section(ECT_FIELDS, validateEctConfig),
  optimizer: section(OPTIMIZER_FIELDS, validateOptimizerConfig),
  ema: section(EMA_FIELDS, validateEmaConfig),
  batch: positiveInteger,
  iters: positiveInteger,
  seed: nonNegativeInteger,
  logEvery: positiveInteger,
  ckptEvery: positiveInteger,
  sampleEvery: nonNegativeInteger,
  evalEvery: nonNegativeNumber,
  evalGrowth: leaf('a number >= 1', (v) => isNumber(v) && v >= 1),
  evalN: nonNegativeInteger,
  evalSplit: oneOf(EVAL_SPLITS),
  evalSeed: nonNegativeInteger,
  plateauGain: probability,
  onNonFinite: oneOf(NON_FINITE_POLICIES),
  divergenceFactor: leaf('0 (never) or a number > 1', (v) => isNumber(v) && (v === 0 || v > 1)),
  precision: optional(oneOf(PRECISIONS)),
  init: optional(text),
};

/** Checks a whole run config: unknown keys anywhere first, then every section, then the rules across sections. */
export function validateRunConfig(cfg: unknown): asserts cfg is RunConfig {
  checkFields('', cfg, RUN_FIELDS);
  if (cfg.kind === 'tune' && (cfg.edm.precond ?? 'edm') !== 'edm') {
    throw new ConfigError(`edm.precond '${cfg.edm.precond}': ECT tunes with EDM's preconditioning (a tuning run copies the inner network of a VP or VE teacher and switches to it); drop edm.precond`, ['edm.precond', 'kind']);
  }
  if (cfg.ect.midT.some((t) => t >= cfg.edm.sigmaMax)) {
    throw new ConfigError(`ect.midT must be times below edm.sigmaMax (${cfg.edm.sigmaMax}), got ${JSON.stringify(cfg.ect.midT)}`, ['ect.midT', 'edm.sigmaMax']);
  }
  if (cfg.optimizer.decayFraction !== undefined && cfg.optimizer.decayKimg !== cfg.optimizer.decayFraction * cfg.iters * cfg.batch / 1000) {
    throw new ConfigError(`optimizer.decayKimg ${cfg.optimizer.decayKimg} is not optimizer.decayFraction ${cfg.optimizer.decayFraction} of the run's ` +
      `${cfg.iters * cfg.batch / 1000} kimg; set one of them (resolution derives decayKimg from the fraction)`, ['optimizer.decayKimg', 'optimizer.decayFraction']);
  }
  if (cfg.ect.stageFraction !== undefined && cfg.ect.stageIters !== stageItersOf(cfg.ect.stageFraction, cfg.iters)) {
    throw new ConfigError(`ect.stageIters ${cfg.ect.stageIters} is not ect.stageFraction ${cfg.ect.stageFraction} of the run's ${cfg.iters} iterations; ` +
      'set one of them (resolution derives stageIters from the fraction)', ['ect.stageIters', 'ect.stageFraction']);
  }
  // the plateau rule compares in-run evaluations: without them it would never fire
  if (cfg.plateauGain > 0 && cfg.evalEvery === 0) {
    throw new ConfigError(`plateauGain ${cfg.plateauGain} compares in-run evaluations, but evalEvery is 0 (never evaluate): set evalEvery (--eval-every <kimg>), or plateauGain 0`, ['plateauGain', 'evalEvery']);
  }
  if (cfg.plateauGain > 0 && cfg.evalN === 0) {
    throw new ConfigError(`plateauGain ${cfg.plateauGain} compares in-run evaluations, but evalN is 0 (no images evaluated): set evalN (--eval-n <n>), or plateauGain 0`, ['plateauGain', 'evalN']);
  }
}
