/**
 * Where an ECT training step spends its time: `node dist/bench/profile-step.js [backend] [config] [flags]`.
 *
 * Prints, for one step after warm-up steps: time per kernel and per op kind (convolutions, matrix products,
 * normalisation, elementwise, reductions, data movement, ...), what lies outside kernels (JavaScript dispatch,
 * autodiff bookkeeping: the step's wall time minus its kernel time), and allocations (tensors and bytes the
 * step created, onednn outputs that needed a new chunk of the output pool versus those served from its chunks).
 * With --verbose, oneDNN's own log of one step (ISA, implementation, data types and layouts of every convolution,
 * matrix product and reorder, bench/onednn-verbose.ts); with --peer, the same log of the PyTorch peer's step, whose
 * convolutions also run on oneDNN (run by --python, else the first python3 on PATH that imports torch).
 * `--precision bf16` profiles the mixed-precision step. `--compare` times fp32 and bf16 steps alternating in one
 * process instead, in CPU time per native function (for a loaded machine, where wall times of separate runs do not compare).
 * `--time N` instead times N unprofiled steps after warm-up steps and prints their median and range: the
 * figure to compare between two checkouts, run alternately on one idle machine.
 * `--waits N` times N steps with every native call timed and splits the wall time into the native floor (each call's
 * fastest time over the N steps, summed), waiting (the rest of the native time: threads descheduled or woken late) and
 * JavaScript outside native calls, with the process's threads' scheduler waits (bench/step-waits.ts). `--replay N`
 * records one step's native calls and times N runs of that list back to back, beside N eager steps: the step's
 * time with no JavaScript between its kernels.
 */
import { spawnSync } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend, type BackendChoice } from '../lib/backend/select';
import { assertPrecisionAvailable } from '../lib/backend/onednn/precision';
import type { Precision } from '../lib/config/types';
import { BENCH_SHAPES, benchShape, createBenchTrainer, disposeTrainer, runStep, stepFlopsPerImage, type BenchShape } from './ect-step';
import { formatVerbose, parseVerbose } from './onednn-verbose';
import { accountWaits, formatWaits, scheduleDelta, threadSchedule, type TimedStep } from './step-waits';
import { readCpuFacts } from '../lib/machine/peak';
import { measurePeak } from '../lib/machine/measured-peak';
import { importsTorch, pythonsOnPath } from './train-step';
import { withoutChosenWait } from '../lib/backend/onednn/thread-wait';

/** Milliseconds and calls per kernel name over one profiled step, largest first. */
export interface KernelTime { kernel: string; ms: number; calls: number; share: number }

/** What kind of work a kernel does, for the per-kind table. */
export type OpKind = 'convolution' | 'matmul' | 'normalisation' | 'elementwise' | 'reduction' | 'data movement' | 'resampling' | 'optimiser/EMA' | 'random' | 'other';

const KINDS: Array<[OpKind, RegExp]> = [
  ['convolution', /^(Conv2D|FusedConv2D|Conv2DBackprop(Input|Filter)|DepthwiseConv2dNative|EctConv2DSame)/],
  ['matmul', /^(BatchMatMul|_FusedMatMul)$/],
  ['normalisation', /^(EctGroupNorm|EctGroupNormGrad|FusedBatchNorm)/],
  ['resampling', /^(EctDownsample2x|EctUpsample2x|AvgPool|MaxPool|ResizeNearestNeighbor)/],
  ['optimiser/EMA', /^(EctMomentUpdate|EctEmaUpdate)$/],
  ['reduction', /^(Sum|Mean|Max|Min|Prod|All|Any|ArgMax|ArgMin)$/],
  ['data movement', /^(Transpose|Slice|StridedSlice|Concat|Pack|Unpack|SplitV|Reshape|Pad|PadV2|Tile|GatherV2|Cast|Identity|Fill|ZerosLike|OnesLike|Reverse|MirrorPad)$/],
  ['random', /^(RandomUniform|RandomNormal|RandomStandardNormal|Multinomial|EctDropoutMask)$/],
  ['elementwise', /^(EctScaledSum|Add|AddN|Sub|Multiply|RealDiv|Div|SquaredDifference|Maximum|Minimum|Sigmoid|Exp|Neg|Square|Rsqrt|Sqrt|Relu|Relu6|Log|Abs|Tanh|Reciprocal|Pow|Less|LessEqual|Greater|GreaterEqual|Equal|NotEqual|Select|LogicalAnd|LogicalOr|LogicalNot|Softmax|Sin|Cos|Step|Sign|Floor|Ceil|Round|ClipByValue|IsNan|IsInf|Elu|LeakyRelu|Prelu|Softplus|Erf|Atan2|FloorDiv|Mod|Selu|Expm1|Log1p)$/],
];

/** The op kind of a tfjs kernel name. */
export function opKind(kernel: string): OpKind {
  return KINDS.find(([, pattern]) => pattern.test(kernel))?.[0] ?? 'other';
}

/** Entries of tf.profile that are op scopes around kernels, not kernels. */
function isOpScope(name: string): boolean {
  return name.endsWith('__op') || name === 'unnamed scope';
}

/** One profiled step: wall time, kernels, their sum by op kind, and the step's allocations. */
export interface StepProfile {
  wallMs: number;
  kernels: KernelTime[];
  kinds: Array<{ kind: OpKind; ms: number; calls: number; share: number }>;
  outsideKernelsMs: number;     // wall - sum of kernel times: dispatch, autodiff, JavaScript
  newTensors: number;           // tensors created by the step and still alive after it (0 when nothing leaks)
  kernelOutputs: number;        // tensors the step's kernels produced
  peakBytes: number;            // tfjs's peak bytes during the step
  pool?: { allocated: number; allocatedMB: number; reused: number };  // onednn output arrays during the step
}

/** Profiles one training step (after warm-up steps) and sums kernel times by kernel name and by op kind. */
export async function profileStep(shape: BenchShape, warmupSteps = 2, precision: Precision = 'fp32'): Promise<StepProfile> {
  const trainer = await createBenchTrainer(shape, precision, false);
  for (let i = 0; i < warmupSteps; i++) runStep(trainer);
  const pool = tf.getBackend() === 'onednn' ? (await import('../lib/backend/onednn')).outputPool : undefined;
  const before = pool ? { ...pool.counts } : undefined;
  const start = performance.now();
  const profile = await tf.profile(() => { runStep(trainer); });
  const wallMs = performance.now() - start;
  const byName = new Map<string, { ms: number; calls: number }>();
  let kernelOutputs = 0;
  for (const k of profile.kernels) {
    // ops built with customGrad (fused conv/matMul, our fused kernels) appear as a scope around the kernel
    // they run: count the kernel, not the scope, so no time is counted twice
    if (isOpScope(k.name)) continue;
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const entry = byName.get(k.name) ?? { ms: 0, calls: 0 };
    entry.ms += ms;
    entry.calls += 1;
    kernelOutputs += k.outputShapes.length;
    byName.set(k.name, entry);
  }
  const total = [...byName.values()].reduce((s, e) => s + e.ms, 0);
  const kernels = [...byName].map(([kernel, e]) => ({ kernel, ms: e.ms, calls: e.calls, share: e.ms / total }))
    .sort((a, b) => b.ms - a.ms);
  const kindMap = new Map<OpKind, { ms: number; calls: number }>();
  for (const k of kernels) {
    const e = kindMap.get(opKind(k.kernel)) ?? { ms: 0, calls: 0 };
    e.ms += k.ms;
    e.calls += k.calls;
    kindMap.set(opKind(k.kernel), e);
  }
  const kinds = [...kindMap].map(([kind, e]) => ({ kind, ...e, share: e.ms / total })).sort((a, b) => b.ms - a.ms);
  const poolDelta = pool && before ? {
    allocated: pool.counts.allocated - before.allocated, allocatedMB: (pool.counts.allocatedBytes - before.allocatedBytes) / 2 ** 20,
    reused: pool.counts.reused - before.reused,
  } : undefined;
  disposeTrainer(trainer);
  return {
    wallMs, kernels, kinds, outsideKernelsMs: Math.max(0, wallMs - total), newTensors: profile.newTensors, kernelOutputs,
    peakBytes: profile.peakBytes, pool: poolDelta,
  };
}

/** The printed tables of a profile. */
export function formatProfile(label: string, p: StepProfile, topKernels = 25): string {
  const kernelMs = p.kernels.reduce((s, k) => s + k.ms, 0);
  const lines = [`${label}: step ${p.wallMs.toFixed(0)} ms wall (profiled), kernels ${kernelMs.toFixed(0)} ms, ` +
    `outside kernels (dispatch, autodiff, JavaScript) ${p.outsideKernelsMs.toFixed(0)} ms (${(100 * p.outsideKernelsMs / p.wallMs).toFixed(1)}% of wall)`];
  lines.push(`allocations: ${p.kernelOutputs} kernel outputs, ${p.newTensors} tensors left after the step, tfjs peak ${(p.peakBytes / 2 ** 20).toFixed(1)} MB` +
    (p.pool ? `; onednn outputs: ${p.pool.allocated} needed a new pool chunk (${p.pool.allocatedMB.toFixed(1)} MB), ${p.pool.reused} were served from its chunks` : ''));
  lines.push('', `${'op kind'.padEnd(16)} ${'ms'.padStart(9)} ${'share'.padStart(6)} ${'calls'.padStart(6)}`);
  for (const k of p.kinds) lines.push(`${k.kind.padEnd(16)} ${k.ms.toFixed(1).padStart(9)} ${(100 * k.share).toFixed(1).padStart(5)}% ${String(k.calls).padStart(6)}`);
  lines.push('', `${'kernel'.padEnd(24)} ${'ms'.padStart(9)} ${'share'.padStart(6)} ${'calls'.padStart(6)}  kind`);
  for (const k of p.kernels.slice(0, topKernels)) {
    lines.push(`${k.kernel.padEnd(24)} ${k.ms.toFixed(1).padStart(9)} ${(100 * k.share).toFixed(1).padStart(5)}% ${String(k.calls).padStart(6)}  ${opKind(k.kernel)}`);
  }
  return lines.join('\n');
}

/** CPU milliseconds per step, median over the compared steps: the whole step and each addon function it called. */
export interface PrecisionCpu { stepMs: number; wallMs: number; byFunction: Record<string, number>; outsideAddonMs: number }

/** An addon function as the wrappers see it. */
type AddonFunction = (...args: unknown[]) => unknown;

/**
 * Wraps every function of the onednn addon so that each call runs `begin(name, original, args)` before and
 * `end(name, begin's value)` after it (also when it throws); returns the function that puts the originals back (a
 * second call does nothing). Needs the onednn backend (`flag` names the option that asked, for the error).
 */
async function wrapAddon<T>(flag: string, begin: (name: string, original: AddonFunction, args: unknown[]) => T,
  end: (name: string, started: T) => void): Promise<() => void> {
  const { onednnAddon } = await import('../lib/backend/onednn');
  const addon = onednnAddon() as unknown as Record<string, unknown> | undefined;
  if (!addon || tf.getBackend() !== 'onednn') throw new Error(`${flag} needs the onednn backend`);
  const originals = new Map<string, AddonFunction>();
  for (const [name, fn] of Object.entries(addon)) {
    if (typeof fn !== 'function') continue;
    const original = fn as AddonFunction;
    originals.set(name, original);
    addon[name] = (...args: unknown[]) => {
      const started = begin(name, original, args);
      try {
        return original(...args);
      } finally {
        end(name, started);
      }
    };
  }
  return () => {
    for (const [name, fn] of originals) addon[name] = fn;
    originals.clear();
  };
}

/**
 * fp32 and bf16 steps of the same network alternating in one process (after warm-up steps of each), timed in
 * process CPU time, which another process's load does not inflate, split by the addon function that spent it
 * (its functions are wrapped for the duration). Needs the onednn backend and bf16 instructions.
 */
export async function compareStepPrecisions(shape: BenchShape, steps = 3, warmupSteps = 2): Promise<Record<Precision, PrecisionCpu>> {
  const spent = new Map<string, number>();
  const restore = await wrapAddon('--compare', () => process.cpuUsage(), (name, start) => {
    const used = process.cpuUsage(start);
    spent.set(name, (spent.get(name) ?? 0) + (used.user + used.system) / 1e3);
  });
  const precisions: Precision[] = ['fp32', 'bf16'];
  const samples: Record<string, Array<{ stepMs: number; wallMs: number; byFunction: Map<string, number> }>> = { fp32: [], bf16: [] };
  const trainers = [await createBenchTrainer(shape, 'fp32', false), await createBenchTrainer(shape, 'bf16', false)];
  try {
    for (const trainer of trainers) for (let i = 0; i < warmupSteps; i++) runStep(trainer);
    for (let i = 0; i < steps; i++) {
      precisions.forEach((precision, k) => {
        spent.clear();
        const cpu = process.cpuUsage(), start = performance.now();
        runStep(trainers[k]);
        const used = process.cpuUsage(cpu);
        samples[precision].push({ stepMs: (used.user + used.system) / 1e3, wallMs: performance.now() - start, byFunction: new Map(spent) });
      });
    }
  } finally {
    restore();
    trainers.forEach(disposeTrainer);
  }
  const median = (values: number[]) => values.slice().sort((a, b) => a - b)[values.length >> 1];
  const summary = (runs: typeof samples[string]): PrecisionCpu => {
    const names = new Set(runs.flatMap((r) => [...r.byFunction.keys()]));
    const byFunction = Object.fromEntries([...names].map((n) => [n, median(runs.map((r) => r.byFunction.get(n) ?? 0))]));
    const stepMs = median(runs.map((r) => r.stepMs));
    return { stepMs, wallMs: median(runs.map((r) => r.wallMs)), byFunction, outsideAddonMs: stepMs - Object.values(byFunction).reduce((a, b) => a + b, 0) };
  };
  return { fp32: summary(samples.fp32), bf16: summary(samples.bf16) };
}

/** The printed table of compareStepPrecisions: CPU ms per step, fp32 and bf16 side by side, and their ratio. */
export function formatComparison(label: string, c: Record<Precision, PrecisionCpu>): string {
  const row = (name: string, fp32: number, bf16: number) =>
    `${name.padEnd(22)} ${fp32.toFixed(1).padStart(9)} ${bf16.toFixed(1).padStart(9)} ${(bf16 > 0 ? (fp32 / bf16).toFixed(2) : '-').padStart(7)}`;
  const names = [...new Set([...Object.keys(c.fp32.byFunction), ...Object.keys(c.bf16.byFunction)])]
    .sort((a, b) => (c.fp32.byFunction[b] ?? 0) - (c.fp32.byFunction[a] ?? 0))
    .filter((n) => (c.fp32.byFunction[n] ?? 0) + (c.bf16.byFunction[n] ?? 0) >= 0.05);
  return [
    `${label}: CPU ms per step (median; one process, steps alternating)`,
    `${''.padEnd(22)} ${'fp32'.padStart(9)} ${'bf16'.padStart(9)} ${'ratio'.padStart(7)}`,
    row('step (CPU)', c.fp32.stepMs, c.bf16.stepMs),
    row('step (wall)', c.fp32.wallMs, c.bf16.wallMs),
    ...names.map((n) => row(`  ${n}`, c.fp32.byFunction[n] ?? 0, c.bf16.byFunction[n] ?? 0)),
    row('  outside the addon', c.fp32.outsideAddonMs, c.bf16.outsideAddonMs),
  ].join('\n');
}

/** Wall milliseconds of `steps` unprofiled training steps after `warmupSteps`: median, min and max. */
export async function timeSteps(shape: BenchShape, steps: number, precision: Precision = 'fp32', warmupSteps = 3, stepReplay?: boolean) {
  const trainer = await createBenchTrainer(shape, precision, stepReplay);
  for (let i = 0; i < warmupSteps; i++) runStep(trainer);
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const start = performance.now();
    runStep(trainer);
    times.push(performance.now() - start);
  }
  disposeTrainer(trainer);
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)], minMs: times[0], maxMs: times[times.length - 1], steps };
}

/**
 * N steps (after warm-up steps) with every call into the onednn addon timed (its functions are wrapped for the
 * duration), accounted by accountWaits; with the threads' scheduler times over the same steps where Linux gives them.
 */
export async function measureWaits(shape: BenchShape, steps: number, precision: Precision = 'fp32', warmupSteps = 3, stepReplay?: boolean) {
  let calls: TimedStep['calls'] = [];
  const restore = await wrapAddon('--waits', () => performance.now(), (name, start) => calls.push({ fn: name, ms: performance.now() - start }));
  const trainer = await createBenchTrainer(shape, precision, stepReplay);
  const timed: TimedStep[] = [];
  let threads: ReturnType<typeof scheduleDelta> | undefined;
  try {
    for (let i = 0; i < warmupSteps; i++) runStep(trainer);
    const before = threadSchedule();
    for (let i = 0; i < steps; i++) {
      calls = [];
      const start = performance.now();
      runStep(trainer);
      timed.push({ wallMs: performance.now() - start, calls });
    }
    const after = threadSchedule();
    if (before && after) threads = scheduleDelta(before, after);
  } finally {
    restore();
    disposeTrainer(trainer);
  }
  return { account: accountWaits(timed), threads };
}

/** Eager steps and native replays of one step's calls, in wall milliseconds. */
export interface ReplayTimes { calls: number; eagerMs: number[]; replayMs: number[] }

/**
 * What a step would take with no JavaScript at all: records the calls one step makes into the onednn addon (function
 * and arguments, after warm-up steps), then runs that list back to back `replays` times, timing each run, beside as
 * many eager steps. The replays compute nothing meaningful (each array holds whatever the output pool left in it,
 * weights included), but they run the same kernels on the same shapes in the same order, filter reorders included,
 * so their time is that of the step's native work with the dispatch between calls gone: the bound for a step
 * recorded once and replayed natively.
 */
export async function measureReplay(shape: BenchShape, replays: number, precision: Precision = 'fp32', warmupSteps = 2): Promise<ReplayTimes> {
  let recording: Array<{ fn: AddonFunction; args: unknown[] }> | null = null;
  const restore = await wrapAddon('--replay', (_, original, args) => { recording?.push({ fn: original, args }); }, () => undefined);
  const trainer = await createBenchTrainer(shape, precision, false);
  const eagerMs: number[] = [], replayMs: number[] = [];
  let calls = 0;
  try {
    for (let i = 0; i < warmupSteps; i++) runStep(trainer);
    for (let i = 0; i < replays; i++) {
      const start = performance.now();
      runStep(trainer);
      eagerMs.push(performance.now() - start);
    }
    recording = [];
    runStep(trainer);
    const list: Array<{ fn: AddonFunction; args: unknown[] }> = recording;
    recording = null;
    restore();
    calls = list.length;
    for (let i = 0; i < replays; i++) {
      const start = performance.now();
      for (const call of list) call.fn(...call.args);
      replayMs.push(performance.now() - start);
    }
  } finally {
    restore();
    disposeTrainer(trainer);
  }
  return { calls, eagerMs, replayMs };
}

/** The printed comparison: eager steps and native replays, each with its median, GFLOP/s and fraction of peak. */
export function formatReplay(label: string, r: ReplayTimes, flopsPerStep: number, peakGflops: number | null): string {
  const line = (what: string, times: number[]) => {
    const sorted = times.slice().sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1];
    const gflops = flopsPerStep / median / 1e6;
    return `${what.padEnd(16)} median ${median.toFixed(1)} ms (${sorted[0].toFixed(1)}-${sorted[sorted.length - 1].toFixed(1)}), ` +
      `${gflops.toFixed(0)} GFLOP/s${peakGflops ? `, ${(100 * gflops / peakGflops).toFixed(1)}% of the measured ${peakGflops.toFixed(0)} GFLOP/s peak` : ''}`;
  };
  return [
    `${label}: one step's ${r.calls} native calls replayed back to back, against eager steps (${r.replayMs.length} of each)`,
    line('eager step', r.eagerMs),
    line('native replay', r.replayMs),
  ].join('\n');
}

/** Flags of the command line. */
interface ProfileFlags {
  backend: string; config: string; precision: Precision; verbose: boolean; peer: boolean; compare: boolean; eager: boolean; python?: string; time?: number;
  waits?: number; replay?: number;
}

/** Flags that take a value, and flags that stand alone. */
const VALUE_FLAGS = ['--precision', '--python', '--time', '--waits', '--replay'];
const SWITCH_FLAGS = ['--verbose', '--peer', '--compare', '--eager', '--help'];

/** What --help prints. */
export const PROFILE_USAGE = `Usage: node dist/bench/profile-step.js [backend] [config] [flags]

Where one ECT training step spends its time. backend: onednn (default), wasm, cpu, ...; config: ${Object.keys(BENCH_SHAPES).join(', ')}
(default res28-ch32), the benchmark's shapes. Without a mode flag: one profiled step after two warm-up steps, time per
kernel and per op kind, time outside kernels (JavaScript dispatch and autodiff) and the step's allocations. --time and
--waits look at the steps a run takes (replayed once recorded and checked, lib/train/step-replay.ts; eager with
--eager), every other mode at eager steps (tfjs running each op).

  --precision fp32|bf16   the step's precision (bf16 needs avx512_bf16); default fp32
  --verbose               also oneDNN's own log of one step: ISA, implementation, types and layouts of each primitive
  --peer                  also the PyTorch peer's oneDNN log of its step (--python <path> picks its python3)
  --compare               fp32 and bf16 steps alternating in one process, in CPU time per addon function (onednn)
  --time N                N unprofiled steps: median, min and max wall time (the figure to compare two checkouts)
  --eager                 with --time or --waits: every step eager, as a run with --no-step-replay
  --waits N               N steps with every native call timed (N >= 2): native floor (each call's fastest time,
                          summed, with its fraction of the measured peak), waiting and JavaScript per step, the same by
                          addon function, and the threads' scheduler times (onednn)
  --replay N              one step's native calls run N times back to back without tfjs, beside N eager steps: the
                          step with no JavaScript between its kernels (onednn)
  --help                  this text`;

export function parseProfileFlags(argv: string[]): ProfileFlags {
  const unknown = argv.filter((a, i) => a.startsWith('--') && !VALUE_FLAGS.includes(a) && !SWITCH_FLAGS.includes(a) && !VALUE_FLAGS.includes(argv[i - 1]));
  if (unknown.length > 0) throw new Error(`unknown flag ${unknown.join(', ')} (--help lists the flags)`);
  const missing = VALUE_FLAGS.find((flag) => { const i = argv.indexOf(flag); return i >= 0 && (i + 1 >= argv.length || argv[i + 1].startsWith('--')); });
  if (missing) throw new Error(`${missing} needs a value (--help lists the flags)`);
  const positional = argv.filter((a, i) => !a.startsWith('--') && !VALUE_FLAGS.includes(argv[i - 1]));
  if (positional.length > 2) throw new Error(`expected at most a backend and a config, got ${positional.join(' ')}`);
  const value = (name: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
  const precision = (value('--precision') ?? 'fp32') as Precision;
  if (precision !== 'fp32' && precision !== 'bf16') throw new Error(`--precision must be fp32 or bf16, got '${precision}'`);
  const time = value('--time') === undefined ? undefined : Number(value('--time'));
  if (time !== undefined && !(Number.isInteger(time) && time > 0)) throw new Error(`--time must be a positive number of steps, got '${value('--time')}'`);
  const waits = value('--waits') === undefined ? undefined : Number(value('--waits'));
  if (waits !== undefined && !(Number.isInteger(waits) && waits >= 2)) throw new Error(`--waits must be a number of steps, 2 or more, got '${value('--waits')}'`);
  const replay = value('--replay') === undefined ? undefined : Number(value('--replay'));
  if (replay !== undefined && !(Number.isInteger(replay) && replay > 0)) throw new Error(`--replay must be a positive number of steps, got '${value('--replay')}'`);
  return {
    time, waits, replay,
    backend: positional[0] ?? 'onednn', config: positional[1] ?? 'res28-ch32', precision,
    verbose: argv.includes('--verbose'), peer: argv.includes('--peer'), compare: argv.includes('--compare'), eager: argv.includes('--eager'), python: value('--python'),
  };
}

/** Child side of --verbose: warm up with the log off, then log one step (stdout carries only the log). */
async function verboseChild(flags: ProfileFlags): Promise<void> {
  await initBackend(flags.backend as BackendChoice);
  const { onednnAddon } = await import('../lib/backend/onednn');
  const addon = onednnAddon();
  if (!addon) throw new Error('--verbose needs the onednn backend');
  const trainer = await createBenchTrainer(benchShape(flags.config) as BenchShape, flags.precision, false);
  for (let i = 0; i < 2; i++) runStep(trainer);
  addon.setVerbose(1);
  runStep(trainer);
  addon.setVerbose(0);
}

/** Runs this file with --verbose-child and summarises oneDNN's log of one step. */
function ourVerbose(flags: ProfileFlags): string {
  const child = spawnSync(process.execPath, [__filename, '--verbose-child', flags.backend, flags.config, '--precision', flags.precision],
    { encoding: 'utf8', maxBuffer: 256 << 20, timeout: 30 * 60_000 });
  if (child.status !== 0) return `our oneDNN log: not taken (${(child.stderr ?? '').trim().split('\n').slice(-2).join(' | ') || child.error?.message})`;
  return formatVerbose(parseVerbose(child.stdout), `our oneDNN log of one ${flags.precision} step (${flags.config})`);
}

/** Runs the PyTorch peer with oneDNN's log on for its one timed step and summarises it. */
function peerVerbose(flags: ProfileFlags, shape: BenchShape): string {
  const script = path.resolve(__dirname, '..', '..', 'bench', 'peer', 'ect_step_torch.py');
  const args = JSON.stringify({ ...shape, steps: 1, threads: os.availableParallelism(), mode: 'train', precision: flags.precision, verbose: true });
  const python = flags.python ?? pythonsOnPath().find(importsTorch);
  if (!python) return "the peer's oneDNN log: not taken (no python3 on PATH imports torch; pass --python <path>)";
  const child = spawnSync(python, [script, args], { encoding: 'utf8', maxBuffer: 256 << 20, timeout: 30 * 60_000, env: withoutChosenWait(process.env) });
  if (child.status !== 0) return `the peer's oneDNN log: not taken (${(child.stderr ?? '').trim().split('\n').slice(-2).join(' | ') || child.error?.message})`;
  const log = parseVerbose(child.stdout);
  const note = log.execs.length ? '' : '\n  (no oneDNN executions: this PyTorch runs its convolutions elsewhere, e.g. its own kernels)';
  return formatVerbose(log, `the PyTorch peer's oneDNN log of one ${flags.precision} step (${flags.config})`) + note;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--verbose-child') return verboseChild(parseProfileFlags(argv.slice(1)));
  if (argv.includes('--help')) {
    console.log(PROFILE_USAGE);
    return;
  }
  const flags = parseProfileFlags(argv);
  const shape = benchShape(flags.config);
  if (!shape) throw new Error(`unknown config ${flags.config}; known: ${Object.keys(BENCH_SHAPES).join(', ')}`);
  // the same set-up as training (wasm gets its training kernels, onednn its addon), or a clear error
  console.log(describeBackend(await initBackend(flags.backend as BackendChoice)));
  if (flags.compare) {
    assertPrecisionAvailable('bf16', tf.getBackend());
    console.log(formatComparison(`${flags.backend} ${flags.config}`, await compareStepPrecisions(shape)));
    return;
  }
  assertPrecisionAvailable(flags.precision, tf.getBackend());
  const label = `${flags.backend} ${flags.precision} ${flags.config}`;
  // --replay and --waits give rates against the step's FLOPs and the peak measured right after their steps
  const stepFlops = stepFlopsPerImage(shape) * shape.batch;
  const peakNow = () => measurePeak(flags.precision, readCpuFacts(), os.availableParallelism()).gflops;
  if (flags.replay) {
    const times = await measureReplay(shape, flags.replay, flags.precision);
    console.log(formatReplay(label, times, stepFlops, peakNow()));
    return;
  }
  if (flags.waits) {
    const { account, threads } = await measureWaits(shape, flags.waits, flags.precision, 3, flags.eager ? false : undefined);
    console.log(formatWaits(label, account, stepFlops, peakNow(), threads));
    return;
  }
  if (flags.time) {
    const t = await timeSteps(shape, flags.time, flags.precision, 3, flags.eager ? false : undefined);
    console.log(`${flags.backend} ${flags.precision} ${flags.config}: ${t.medianMs.toFixed(1)} ms per step, median of ${t.steps} unprofiled${flags.eager ? " eager" : ""} steps ` +
      `(min ${t.minMs.toFixed(1)}, max ${t.maxMs.toFixed(1)})`);
    return;
  }
  console.log(formatProfile(`${flags.backend} ${flags.precision} ${flags.config}`, await profileStep(shape, 2, flags.precision)));
  if (flags.verbose) console.log(`\n${ourVerbose(flags)}`);
  if (flags.peer) console.log(`\n${peerVerbose(flags, shape)}`);
}

if (require.main === module) {
  main().catch((error) => { console.error(error instanceof Error ? error.message : error); process.exit(1); });
}
