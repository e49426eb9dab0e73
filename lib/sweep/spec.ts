/**
 * A sweep spec: a grid of independent runs as data (a JSON file, e.g. configs/sweeps/scaling.json), in stages
 * that run in order (teachers before the runs tuned from them). Read and checked here; expanded into runs by
 * plan.ts. Unknown keys are rejected naming the closest valid one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { editDistance } from '../config/schema';
import { repositoryPath } from '../repository';
import { RUN_KINDS, type RunKind } from '../config/types';
import type { RunFlags } from '../train/launch';

/** Folder of the sweep specs shipped with the project. */
export const SWEEP_DIR = repositoryPath('configs', 'sweeps');

/** A value an axis gives a config key (what --set key=value takes). */
export type AxisScalar = number | string | boolean;

/**
 * The run flags a stage (or an axis value) may set: those of `ect pretrain` / `ect tune` that are settings of
 * the run. The sweep itself sets --config, --out, --init and --set; each key's command-line flag is its kebab
 * form (logEvery -> --log-every), as commander names them.
 */
export const STAGE_FLAG_KEYS = [
  'seed', 'iters', 'batch', 'lr', 'logEvery', 'ckptEvery', 'sampleEvery', 'evalEvery', 'evalGrowth', 'evalN', 'evalSplit', 'plateauGain',
  'data', 'dataDir', 'dataLimit', 'backend', 'fromScratch',
] as const satisfies ReadonlyArray<keyof RunFlags>;
export type StageFlags = Pick<RunFlags, typeof STAGE_FLAG_KEYS[number]>;

/** Resources of one run (one Slurm array task); `ect sweep run --executor slurm` turns them into #SBATCH lines. */
export interface SweepResources {
  cpusPerTask?: number;     // --cpus-per-task
  mem?: string;             // --mem per node, e.g. "4G" or "500M"
  time?: string;            // --time limit, e.g. "02:00:00" or "1-00:00:00"
  gres?: string;            // --gres, e.g. "gpu:1"
}

/** One value of an axis: a scalar for the axis key, or a named variant with its own --set, flags or init. */
export interface AxisValueSpec {
  value?: AxisScalar;       // the axis key's value (needs the axis `key`)
  name?: string;            // this value's part of the run name (default: the axis label and the value, e.g. ch16)
  set?: string[];           // further --set assignments of this value
  flags?: StageFlags;       // flags of this value, over the stage's
  init?: string;            // the run to tune from, instead of the stage's (see StageSpec.init)
}

/** An axis: the values one setting takes across the runs of a stage. */
export interface AxisSpec {
  key?: string;             // config path the values set, e.g. net.modelChannels (--set key=value)
  name?: string;            // the axis' id in run-name and init templates (default: the key)
  label?: string;           // prefix of a value's run name (default: the key's last part), e.g. ch -> ch16
  values: Array<AxisScalar | AxisValueSpec>;
}

/** A stage: runs of one kind and preset over its axes; stages run in order, a later one may tune from an earlier one's runs. */
export interface StageSpec {
  name: string;             // referenced by init templates as {name}
  kind: RunKind;
  config: string;           // preset: a name in configs/ or a JSON file (relative to the spec's folder)
  folder?: string;          // where its runs go, under the sweep's folder (default: the stage name; '.': the sweep's folder itself)
  runName?: string;         // run-name template with {axis id} placeholders (default: the values' names joined by '-')
  flags?: StageFlags;       // flags of every run
  set?: string[];           // --set assignments of every run, before the axes'
  init?: string;            // tune: '{stage}' (that stage's run with the same axis values), 'teacher:<name>' (a shipped teacher) or a folder under the sweep's folder, with {axis id} placeholders
  axes?: AxisSpec[];
  combine?: 'product' | 'zip';  // every combination of the axes' values (default), or the i-th value of each axis together
  seeds?: number[];         // a further product axis over --seed (id 'seed', names s0, s1, ...)
  resources?: SweepResources;   // over the sweep's
}

/** A sweep: its name, where its runs land, the resources of one run and its stages. */
export interface SweepSpec {
  name: string;             // job names and the sweep's own folder (sweep-<name>/) use it
  description?: string;
  out?: string;             // the sweep's folder, from the current directory (default runs/<name>); --out overrides
  resources?: SweepResources;
  stages: StageSpec[];
  file?: string;            // where the spec was read from (set by loadSweepSpec)
}

/** A problem in a sweep spec, naming the file and the key. */
export class SweepSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SweepSpecError';
  }
}

type JsonObject = Record<string, unknown>;
const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Keys each object of a spec may have (the compiler checks them against the types). */
const SPEC_KEYS: { [K in keyof SweepSpec]-?: true } = { name: true, description: true, out: true, resources: true, stages: true, file: true };
const STAGE_KEYS: { [K in keyof StageSpec]-?: true } = {
  name: true, kind: true, config: true, folder: true, runName: true, flags: true, set: true, init: true, axes: true, combine: true, seeds: true, resources: true,
};
const AXIS_KEYS: { [K in keyof AxisSpec]-?: true } = { key: true, name: true, label: true, values: true };
const VALUE_KEYS: { [K in keyof AxisValueSpec]-?: true } = { value: true, name: true, set: true, flags: true, init: true };
const RESOURCE_KEYS: { [K in keyof SweepResources]-?: true } = { cpusPerTask: true, mem: true, time: true, gres: true };

/** A name safe as a folder and a job name: letters, digits, '.', '_', '-', not starting with '.' or '-'. */
export const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** Checks a spec object's keys: an unknown one is an error naming the closest valid key. */
function checkKeys(value: JsonObject, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue;
    const ranked = allowed.map((k) => ({ k, d: editDistance(key, k) })).sort((a, b) => a.d - b.d);
    const hint = ranked[0] && ranked[0].d <= Math.max(1, Math.floor(key.length / 3)) ? `did you mean '${ranked[0].k}'?` : `valid keys: ${allowed.join(', ')}`;
    throw new SweepSpecError(`${where}: unknown key '${key}'; ${hint}`);
  }
}

function must(ok: boolean, where: string, what: string, value: unknown): void {
  if (!ok) throw new SweepSpecError(`${where} must be ${what}, got ${JSON.stringify(value)}`);
}

const isScalar = (v: unknown): v is AxisScalar => typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

function checkResources(value: unknown, where: string): void {
  must(isObject(value), where, 'an object', value);
  const resources = value as JsonObject;
  checkKeys(resources, Object.keys(RESOURCE_KEYS), where);
  if (resources.cpusPerTask !== undefined) must(Number.isInteger(resources.cpusPerTask) && (resources.cpusPerTask as number) > 0, `${where}.cpusPerTask`, 'a positive integer', resources.cpusPerTask);
  if (resources.mem !== undefined) must(typeof resources.mem === 'string' && /^\d+[KMGT]?$/.test(resources.mem), `${where}.mem`, "a size like '4G' or '500M'", resources.mem);
  if (resources.time !== undefined) {
    must(typeof resources.time === 'string' && /^(\d+-)?\d+(:\d\d){0,2}$/.test(resources.time), `${where}.time`, "a Slurm time like '02:00:00', '90' (minutes) or '1-00:00:00'", resources.time);
  }
  if (resources.gres !== undefined) must(typeof resources.gres === 'string' && resources.gres.length > 0, `${where}.gres`, "a generic resource like 'gpu:1'", resources.gres);
}

function checkFlags(value: unknown, where: string): void {
  must(isObject(value), where, 'an object', value);
  const flags = value as JsonObject;
  checkKeys(flags, STAGE_FLAG_KEYS, where);
  for (const [key, flag] of Object.entries(flags)) {
    if (key === 'fromScratch') must(typeof flag === 'boolean', `${where}.${key}`, 'true or false', flag);
    else if (['data', 'dataDir', 'backend'].includes(key)) must(typeof flag === 'string', `${where}.${key}`, 'a string', flag);
    else must(typeof flag === 'number' && Number.isFinite(flag), `${where}.${key}`, 'a number', flag);
  }
}

function checkAxis(value: unknown, where: string): void {
  must(isObject(value), where, 'an object', value);
  const axis = value as JsonObject;
  checkKeys(axis, Object.keys(AXIS_KEYS), where);
  for (const key of ['key', 'name', 'label'] as const) if (axis[key] !== undefined) must(typeof axis[key] === 'string' && (axis[key] as string).length > 0, `${where}.${key}`, 'a non-empty string', axis[key]);
  if (axis.key === undefined && axis.name === undefined) throw new SweepSpecError(`${where}: an axis needs a 'key' (the config path its values set) or a 'name' (for named variants)`);
  must(Array.isArray(axis.values) && axis.values.length > 0, `${where}.values`, 'a non-empty list', axis.values);
  (axis.values as unknown[]).forEach((item, i) => {
    const at = `${where}.values[${i}]`;
    if (isScalar(item)) {
      if (axis.key === undefined) throw new SweepSpecError(`${at}: a plain value needs the axis 'key' it sets; give variants as objects {"name": ..., "set": [...]}`);
      return;
    }
    must(isObject(item), at, 'a number, string, boolean or an object {value, name, set, flags, init}', item);
    const entry = item as JsonObject;
    checkKeys(entry, Object.keys(VALUE_KEYS), at);
    if (entry.value !== undefined) {
      must(isScalar(entry.value), `${at}.value`, 'a number, string or boolean', entry.value);
      if (axis.key === undefined) throw new SweepSpecError(`${at}.value: the axis has no 'key' for the value to set`);
    } else if (axis.key !== undefined) {
      throw new SweepSpecError(`${at}: a value of axis '${String(axis.key)}' needs 'value'`);
    }
    if (entry.name !== undefined) must(typeof entry.name === 'string' && SAFE_NAME.test(entry.name), `${at}.name`, "a name of letters, digits, '.', '_' and '-'", entry.name);
    if (entry.value === undefined && entry.name === undefined) throw new SweepSpecError(`${at}: a variant needs a 'name'`);
    if (entry.set !== undefined) must(isStringList(entry.set), `${at}.set`, 'a list of key=value strings', entry.set);
    if (entry.flags !== undefined) checkFlags(entry.flags, `${at}.flags`);
    if (entry.init !== undefined) must(typeof entry.init === 'string' && entry.init.length > 0, `${at}.init`, 'a run folder or {stage}', entry.init);
  });
}

function checkStage(value: unknown, where: string): void {
  must(isObject(value), where, 'an object', value);
  const stage = value as JsonObject;
  checkKeys(stage, Object.keys(STAGE_KEYS), where);
  must(typeof stage.name === 'string' && SAFE_NAME.test(stage.name), `${where}.name`, "a name of letters, digits, '.', '_' and '-'", stage.name);
  must(typeof stage.kind === 'string' && (RUN_KINDS as readonly string[]).includes(stage.kind), `${where}.kind`, `one of ${RUN_KINDS.join(', ')}`, stage.kind);
  must(typeof stage.config === 'string' && stage.config.length > 0, `${where}.config`, 'a preset name or JSON file', stage.config);
  if (stage.folder !== undefined) {
    must(typeof stage.folder === 'string' && (stage.folder === '.' || stage.folder.split('/').every((part) => SAFE_NAME.test(part))), `${where}.folder`,
      "'.' (the sweep's folder itself) or a relative folder of names of letters, digits, '.', '_' and '-'", stage.folder);
  }
  for (const key of ['runName', 'init'] as const) if (stage[key] !== undefined) must(typeof stage[key] === 'string' && (stage[key] as string).length > 0, `${where}.${key}`, 'a non-empty string', stage[key]);
  if (stage.flags !== undefined) checkFlags(stage.flags, `${where}.flags`);
  if (stage.set !== undefined) must(isStringList(stage.set), `${where}.set`, 'a list of key=value strings', stage.set);
  if (stage.combine !== undefined) must(stage.combine === 'product' || stage.combine === 'zip', `${where}.combine`, "'product' or 'zip'", stage.combine);
  if (stage.seeds !== undefined) {
    must(Array.isArray(stage.seeds) && stage.seeds.length > 0 && stage.seeds.every((s) => Number.isInteger(s) && s >= 0), `${where}.seeds`, 'a non-empty list of non-negative integers', stage.seeds);
    if ((stage.flags as JsonObject | undefined)?.seed !== undefined) throw new SweepSpecError(`${where}: 'seeds' and 'flags.seed' exclude each other`);
  }
  if (stage.axes !== undefined) {
    must(Array.isArray(stage.axes), `${where}.axes`, 'a list of axes', stage.axes);
    (stage.axes as unknown[]).forEach((axis, i) => checkAxis(axis, `${where}.axes[${i}]`));
  }
  if (stage.resources !== undefined) checkResources(stage.resources, `${where}.resources`);
}

/** Checks a parsed spec; `source` names it in errors. */
export function validateSweepSpec(value: unknown, source: string): asserts value is SweepSpec {
  must(isObject(value), source, 'a JSON object', value);
  const spec = value as JsonObject;
  checkKeys(spec, Object.keys(SPEC_KEYS).filter((k) => k !== 'file'), source);
  must(typeof spec.name === 'string' && SAFE_NAME.test(spec.name), `${source}: name`, "a name of letters, digits, '.', '_' and '-'", spec.name);
  if (spec.description !== undefined) must(typeof spec.description === 'string', `${source}: description`, 'a string', spec.description);
  if (spec.out !== undefined) must(typeof spec.out === 'string' && spec.out.length > 0, `${source}: out`, 'a folder', spec.out);
  if (spec.resources !== undefined) checkResources(spec.resources, `${source}: resources`);
  must(Array.isArray(spec.stages) && spec.stages.length > 0, `${source}: stages`, 'a non-empty list of stages', spec.stages);
  (spec.stages as unknown[]).forEach((stage, i) => checkStage(stage, `${source}: stages[${i}]`));
  const names = (spec.stages as StageSpec[]).map((s) => s.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new SweepSpecError(`${source}: two stages are named '${twice}'`);
}

/** Finds a sweep spec by path, or by name in configs/sweeps/ (with or without .json). */
export function sweepSpecPath(nameOrPath: string): string {
  const candidates = [nameOrPath, path.join(SWEEP_DIR, nameOrPath), path.join(SWEEP_DIR, `${nameOrPath}.json`)];
  const found = candidates.find((p) => fs.existsSync(p) && fs.statSync(p).isFile());
  if (!found) {
    const known = fs.existsSync(SWEEP_DIR) ? fs.readdirSync(SWEEP_DIR).filter((f) => f.endsWith('.json')).map((f) => f.replace(/\.json$/, '')).join(', ') : '(none)';
    throw new SweepSpecError(`sweep ${nameOrPath}: no such file, and no sweep of that name in configs/sweeps/ (known: ${known})`);
  }
  return path.resolve(found);
}

/** Reads and checks a sweep spec (a file, or a name in configs/sweeps/). */
export function loadSweepSpec(nameOrPath: string): SweepSpec {
  const file = sweepSpecPath(nameOrPath);
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new SweepSpecError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  validateSweepSpec(parsed, file);
  return { ...parsed, file };
}
