/**
 * A sweep spec expanded into its runs: each with a stable name made from its axis values, its folder, the
 * launcher spec (lib/train/launch.ts RunSpec) and the exact `ect` command it is, and the runs it tunes from.
 * Every run's config is resolved here, so a value the config rejects stops the sweep before anything runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunKind } from '../config/types';
import { plannedRunConfig, resolveRun, type RunFlags, type RunSpec } from '../train/launch';
import { runStatus, type RunStatus } from '../runs/status';
import { SHIPPED_TEACHERS_DIR, shippedTeachers } from '../teachers/shipped';
import {
  loadSweepSpec, SAFE_NAME, STAGE_FLAG_KEYS, SweepSpecError, validateSweepSpec,
  type AxisScalar, type AxisSpec, type StageFlags, type StageSpec, type SweepResources, type SweepSpec,
} from './spec';

/** A run's flags as the launcher takes them, with its preset, folder and --set always named. */
export interface SweepRunFlags extends RunFlags {
  config: string;
  out: string;
  set: string[];
}

/** One run of a sweep. */
export interface SweepRun {
  index: number;                            // position in the plan: the Slurm array index
  stage: string;
  name: string;                             // stable: made from the axis values, unique in its stage's folder
  kind: RunKind;
  flags: SweepRunFlags;                     // absolute paths (out, init, a preset file)
  values: Record<string, AxisScalar>;       // axis id -> the value (or the variant's name) of this run
  after: string[];                          // folders of this sweep's runs it starts from (they finish first)
  iters: number;                            // iterations its config trains
  resources: SweepResources;
}

/** A stage of the plan: its runs' indices and resources. */
export interface SweepStage { name: string; kind: RunKind; folder: string; runs: number[]; resources: SweepResources }

/** A sweep expanded: where it lands, its stages and runs in order. */
export interface SweepPlan {
  name: string;
  spec: SweepSpec;
  out: string;                              // the sweep's folder (absolute): every run lands under it
  folder: string;                           // the sweep's own files (manifests, sbatch scripts, logs): <out>/sweep-<name>
  stages: SweepStage[];
  runs: SweepRun[];
}

/** Options of planning a sweep. */
export interface PlanOptions {
  out?: string;                             // instead of the spec's out (from the current directory)
  check?: boolean;                          // resolve every run's config and check resumes and inits (default true)
}

/** A point on one axis: what it contributes to a run. */
interface AxisPoint { id: string; value: AxisScalar; name: string; set: string[]; flags: StageFlags; init?: string }

/** The launcher spec of a planned run. */
export function runSpecOf(run: SweepRun): RunSpec {
  return { kind: run.kind, flags: run.flags };
}

/** A value as run-name text: numbers and strings as written (16, 0.03, constant). */
function valueText(value: AxisScalar): string {
  return String(value);
}

/** The points of an axis. */
function axisPoints(axis: AxisSpec): AxisPoint[] {
  const id = axis.name ?? axis.key as string;
  const label = axis.label ?? (axis.key ? axis.key.slice(axis.key.lastIndexOf('.') + 1) : '');
  return axis.values.map((item) => {
    const entry = typeof item === 'object' ? item : { value: item };
    const value = entry.value ?? (entry.name as string);
    const set = [...(axis.key && entry.value !== undefined ? [`${axis.key}=${JSON.stringify(entry.value)}`] : []), ...(entry.set ?? [])];
    return { id, value, name: entry.name ?? `${label}${valueText(value)}`, set, flags: entry.flags ?? {}, init: entry.init };
  });
}

/** Every combination of the stage's axes (product or zip), then each with every seed. */
function stageCombinations(stage: StageSpec, where: string): AxisPoint[][] {
  const axes = (stage.axes ?? []).map(axisPoints);
  const ids = axes.map((points) => points[0].id);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice) throw new SweepSpecError(`${where}: two axes have the id '${twice}'; give one a 'name'`);
  let combos: AxisPoint[][];
  if (stage.combine === 'zip' && axes.length > 0) {
    const lengths = axes.map((points) => points.length);
    if (new Set(lengths).size > 1) throw new SweepSpecError(`${where}: combine 'zip' needs axes of one length, got ${ids.map((id, i) => `${id}: ${lengths[i]}`).join(', ')}`);
    combos = axes[0].map((_, i) => axes.map((points) => points[i]));
  } else {
    combos = axes.reduce<AxisPoint[][]>((acc, points) => acc.flatMap((combo) => points.map((p) => [...combo, p])), [[]]);
  }
  if (!stage.seeds) return combos;
  if (ids.includes('seed')) throw new SweepSpecError(`${where}: an axis has the id 'seed', which 'seeds' uses`);
  return combos.flatMap((combo) => stage.seeds!.map((seed) => [...combo, { id: 'seed', value: seed, name: `s${seed}`, set: [], flags: { seed } }]));
}

/** Replaces {id} placeholders by `lookup(id)`; throws naming the unknown one and what `known` may be (`kinds`). */
function fillTemplate(template: string, lookup: (id: string) => string | undefined, where: string, known: string[], kinds: string): string {
  return template.replace(/\{([^{}]+)\}/g, (_match, id: string) => {
    const found = lookup(id);
    if (found === undefined) throw new SweepSpecError(`${where}: '{${id}}' is not ${kinds} (known: ${known.join(', ') || 'none'})`);
    return found;
  });
}

/** A stage's preset: a JSON file next to the spec when there is one, else the name as given (a preset in configs/). */
function stageConfig(config: string, specFile: string | undefined): string {
  if (!specFile || path.isAbsolute(config)) return config;
  const beside = path.resolve(path.dirname(specFile), config);
  return fs.existsSync(beside) && fs.statSync(beside).isFile() ? beside : config;
}

/**
 * The run a tuning run starts from: '{stage}' is the run of that earlier stage whose axis values agree with this
 * run's on every axis both have; 'teacher:<name>' is a teacher shipped in data/teachers/; any other text is a folder under the sweep's folder (or absolute), where {axis id}
 * is this run's value and {stage} that stage's folder.
 */
function resolveInit(template: string, values: Record<string, AxisScalar>, earlier: Map<string, { stage: SweepStage; runs: SweepRun[] }>,
  out: string, where: string): string {
  const shipped = /^teacher:(.+)$/.exec(template);
  if (shipped) {
    const names = shippedTeachers();
    if (!names.includes(shipped[1])) throw new SweepSpecError(`${where}: init '${template}': no teacher '${shipped[1]}' is shipped in ${SHIPPED_TEACHERS_DIR} (shipped: ${names.join(', ') || 'none'})`);
    return path.join(SHIPPED_TEACHERS_DIR, shipped[1]);
  }
  const whole = /^\{([^{}]+)\}$/.exec(template);
  if (whole && earlier.has(whole[1]) && !(whole[1] in values)) {
    const { runs } = earlier.get(whole[1])!;
    const matching = runs.filter((run) => Object.entries(run.values).every(([id, value]) => !(id in values) || values[id] === value));
    if (matching.length !== 1) {
      const shared = Object.keys(values).filter((id) => runs.some((run) => id in run.values));
      throw new SweepSpecError(`${where}: init '${template}' must match one run of stage '${whole[1]}' on the axes both have (${shared.join(', ') || 'none'}), `
        + `but ${matching.length ? `matches ${matching.map((r) => r.name).join(', ')}` : `matches none of ${runs.map((r) => r.name).join(', ')}`}`);
    }
    return matching[0].flags.out;
  }
  const known = [...Object.keys(values), ...earlier.keys()];
  const filled = fillTemplate(template, (id) => (id in values ? valueText(values[id]) : earlier.get(id)?.stage.folder), where, known,
    'an axis of this stage nor an earlier stage');
  return path.resolve(out, filled);
}

/** The command-line flag of a run flag: commander's kebab form (logEvery -> --log-every). */
function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** The arguments of `ect` that train a run from scratch (ensureRun adds --resume when it was interrupted). */
export function runArguments(run: Pick<SweepRun, 'kind' | 'flags'>): string[] {
  const { flags } = run;
  const args = [run.kind, '--config', flags.config, '--out', flags.out];
  if (flags.init !== undefined) args.push('--init', flags.init);
  for (const key of STAGE_FLAG_KEYS) {
    const value = flags[key];
    if (value === undefined || value === false) continue;
    args.push(...(value === true ? [flagName(key)] : [flagName(key), String(value)]));
  }
  for (const assignment of flags.set) args.push('--set', assignment);
  return args;
}

/** Quotes an argument for a POSIX shell when it needs it. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A run's command as text: `ect pretrain --config ... --out ...`, paths under `base` shown relative to it (null: all absolute). */
export function runCommand(run: Pick<SweepRun, 'kind' | 'flags'>, base: string | null = process.cwd()): string {
  const shown = runArguments(run).map((arg) => {
    if (base === null || !path.isAbsolute(arg)) return arg;
    const relative = path.relative(base, arg);
    return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : arg;
  });
  return ['ect', ...shown].map(shellQuote).join(' ');
}

/** Merges resources: later ones win key by key. */
function mergeResources(...layers: Array<SweepResources | undefined>): SweepResources {
  return Object.assign({}, ...layers.filter(Boolean));
}

/**
 * Expands a spec into its runs, in stage order. Names come from the axis values (or the stage's runName), never
 * from positions; every run folder is distinct. Throws a SweepSpecError on a spec that cannot be expanded.
 */
export function expandSweep(spec: SweepSpec, out: string): SweepPlan {
  const source = spec.file ?? `sweep ${spec.name}`;
  const runs: SweepRun[] = [];
  const stages: SweepStage[] = [];
  const earlier = new Map<string, { stage: SweepStage; runs: SweepRun[] }>();
  const byDir = new Map<string, SweepRun>();
  spec.stages.forEach((stageSpec, s) => {
    const where = `${source}: stage '${stageSpec.name}'`;
    const folder = stageSpec.folder ?? stageSpec.name;
    const stage: SweepStage = { name: stageSpec.name, kind: stageSpec.kind, folder, runs: [], resources: mergeResources(spec.resources, stageSpec.resources) };
    const stageRuns: SweepRun[] = [];
    for (const combo of stageCombinations(stageSpec, `${source}: stages[${s}]`)) {
      const values = Object.fromEntries(combo.map((p) => [p.id, p.value]));
      const name = stageSpec.runName
        ? fillTemplate(stageSpec.runName, (id) => (id in values ? valueText(values[id]) : undefined), `${where}: runName`, Object.keys(values), 'an axis of this stage')
        : combo.map((p) => p.name).join('-') || stageSpec.name;
      const at = `${where}, run '${name}'`;
      if (!SAFE_NAME.test(name)) throw new SweepSpecError(`${at}: not a usable folder name; use letters, digits, '.', '_' and '-' (give the axis a 'label' or its values a 'name')`);
      const flags: SweepRunFlags = {
        ...stageSpec.flags, ...Object.assign({}, ...combo.map((p) => p.flags)) as StageFlags,
        config: stageConfig(stageSpec.config, spec.file),
        out: path.resolve(out, folder, name),
        set: [...(stageSpec.set ?? []), ...combo.flatMap((p) => p.set)],
      };
      const initTemplate = [...combo].reverse().find((p) => p.init !== undefined)?.init ?? stageSpec.init;
      const after: string[] = [];
      if (initTemplate !== undefined) {
        if (stageSpec.kind !== 'tune') throw new SweepSpecError(`${at}: init is for tuning runs; stage '${stageSpec.name}' is ${stageSpec.kind}`);
        flags.init = resolveInit(initTemplate, values, earlier, out, `${at}`);
        const teacher = byDir.get(flags.init);
        if (teacher) after.push(teacher.flags.out);
        else if (stageRuns.some((r) => r.flags.out === flags.init) || flags.init === flags.out) throw new SweepSpecError(`${at}: init ${flags.init} is a run of the same stage; stages run in order, runs within one do not wait for each other`);
      }
      const existing = byDir.get(flags.out) ?? stageRuns.find((r) => r.flags.out === flags.out);
      if (existing) throw new SweepSpecError(`${at}: its folder ${flags.out} is also run '${existing.name}' of stage '${existing.stage}'; names must differ (add the varying axis to runName)`);
      const run: SweepRun = { index: runs.length, stage: stageSpec.name, name, kind: stageSpec.kind, flags, values, after, iters: 0, resources: stage.resources };
      runs.push(run);
      stageRuns.push(run);
      stage.runs.push(run.index);
    }
    for (const run of stageRuns) byDir.set(run.flags.out, run);
    earlier.set(stageSpec.name, { stage, runs: stageRuns });
    stages.push(stage);
  });
  for (const run of runs) {
    const later = run.flags.init !== undefined && run.after.length === 0 ? runs.find((r) => r.flags.out === run.flags.init) : undefined;
    if (later) throw new SweepSpecError(`${source}: stage '${run.stage}', run '${run.name}': init is run '${later.name}' of the later stage '${later.stage}'; stages run in order`);
  }
  return { name: spec.name, spec, out, folder: path.join(out, `sweep-${spec.name}`), stages, runs };
}

/** Each run's status in its folder (new, interrupted, finished), as ensureRun will see it. */
export function runStatusOf(run: SweepRun): RunStatus {
  return runStatus(run.flags.out, run.flags.iters);
}

/**
 * Resolves every run's config as it will train, so a rejected value or key stops the sweep here, naming the run:
 * a new run from its preset, flags and --set (a run tuned from this sweep's teacher takes that teacher's network
 * when it starts); an interrupted run as it resumes, against its checkpoint; a run tuned from a folder outside
 * the sweep against that folder's checkpoint. Finished runs are reused as they are. Sets each run's iters.
 */
export function checkSweep(plan: SweepPlan): void {
  const problems: string[] = [];
  for (const run of plan.runs) {
    try {
      run.iters = plannedRunConfig(runSpecOf(run)).iters;
      const status = runStatusOf(run);
      if (status.state === 'interrupted') resolveRun({ kind: run.kind, flags: { ...run.flags, resume: true } });
      else if (status.state === 'new' && run.flags.init !== undefined && run.after.length === 0) {
        if (!fs.existsSync(run.flags.init)) throw new Error(`init ${run.flags.init}: not a run of this sweep, and no such folder`);
        resolveRun(runSpecOf(run));
      }
    } catch (err) {
      problems.push(`${run.stage}/${run.name}: ${(err as Error).message}`);
    }
  }
  if (problems.length) {
    throw new SweepSpecError(`sweep ${plan.name}: ${problems.length} of ${plan.runs.length} runs rejected (nothing was started):\n  ${problems.join('\n  ')}`);
  }
}

/** Plans a sweep from its spec (a file, a name in configs/sweeps/ or a spec object): expands and checks it. */
export function planSweep(specOrName: string | SweepSpec, opts: PlanOptions = {}): SweepPlan {
  let spec: SweepSpec;
  if (typeof specOrName === 'string') {
    spec = loadSweepSpec(specOrName);
  } else {
    const { file, ...fields } = specOrName;
    validateSweepSpec(fields, file ?? `sweep ${String(specOrName.name)}`);
    spec = specOrName;
  }
  const out = path.resolve(opts.out ?? spec.out ?? path.join('runs', spec.name));
  const plan = expandSweep(spec, out);
  if (opts.check !== false) checkSweep(plan);
  return plan;
}

/** Where a sweep's runs can run: here, one after another, or as Slurm array jobs. */
export const SWEEP_EXECUTORS = ['local', 'slurm'] as const;
export type SweepExecutor = typeof SWEEP_EXECUTORS[number];
