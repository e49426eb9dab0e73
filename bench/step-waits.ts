/**
 * How a training step's wall time splits between native work, waiting and JavaScript (`node dist/bench/profile-step.js
 * --waits N`).
 *
 * Every step of a bench trainer makes the same sequence of native calls (convolutions, GroupNorm, elementwise loops)
 * on arrays of the same shapes. Over N steps, the fastest time of each call in the sequence is taken as that call's
 * work; the rest of its time in a slower step is waiting: an OpenMP team whose other thread was descheduled (a
 * parallel region ends when its slowest thread does), a sleeping thread woken late, caches shared with another
 * process. The sum of the fastest times is the step's native floor: a step can be no faster than it without faster
 * kernels, whatever happens to dispatch or to the machine's load. Beside it, from Linux's per-thread scheduler
 * statistics (/proc/self/task/<tid>/schedstat), how long the process's threads were runnable but not running.
 */
import * as fs from 'fs';

/** The wall time of one native call of a step: the addon function and its milliseconds. */
export interface CallTime { fn: string; ms: number }

/** One timed step: its wall time and its native calls in order. */
export interface TimedStep { wallMs: number; calls: CallTime[] }

/** One addon function's share of the steps: calls per step, its native floor and its median excess per step. */
export interface FunctionWaits { fn: string; calls: number; floorMs: number; excessMs: number }

/** The accounting of N timed steps. */
export interface WaitAccount {
  steps: number;
  callsPerStep: number;
  floorMs: number;                 // sum over the step's calls of each call's fastest time
  perStep: Array<{ wallMs: number; nativeMs: number; excessMs: number; outsideMs: number }>;
  byFunction: FunctionWaits[];     // largest floor first
}

function median(values: number[]): number {
  const sorted = values.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Splits timed steps into native floor, excess (waiting) and time outside native calls. The steps must have made
 * the same calls in the same order (the same trainer, after warm-up); otherwise the per-call minimum means nothing
 * and this throws, naming the first difference.
 */
export function accountWaits(steps: TimedStep[]): WaitAccount {
  if (steps.length < 2) throw new Error(`accountWaits: needs at least 2 timed steps to compare, got ${steps.length}`);
  const reference = steps[0].calls;
  steps.forEach((step, s) => {
    if (step.calls.length !== reference.length) {
      throw new Error(`accountWaits: step ${s} made ${step.calls.length} native calls, step 0 made ${reference.length}: the steps differ`);
    }
    const i = step.calls.findIndex((call, k) => call.fn !== reference[k].fn);
    if (i >= 0) throw new Error(`accountWaits: call ${i} of step ${s} is ${step.calls[i].fn}, of step 0 ${reference[i].fn}: the steps differ`);
  });
  const fastest = reference.map((_, k) => Math.min(...steps.map((step) => step.calls[k].ms)));
  const floorMs = fastest.reduce((a, b) => a + b, 0);
  const perStep = steps.map((step) => {
    const nativeMs = step.calls.reduce((sum, call) => sum + call.ms, 0);
    return { wallMs: step.wallMs, nativeMs, excessMs: nativeMs - floorMs, outsideMs: step.wallMs - nativeMs };
  });
  const names = [...new Set(reference.map((call) => call.fn))];
  const byFunction = names.map((fn) => {
    const indices = reference.flatMap((call, k) => (call.fn === fn ? [k] : []));
    const floor = indices.reduce((sum, k) => sum + fastest[k], 0);
    const excess = median(steps.map((step) => indices.reduce((sum, k) => sum + step.calls[k].ms, 0) - floor));
    return { fn, calls: indices.length, floorMs: floor, excessMs: excess };
  }).sort((a, b) => b.floorMs - a.floorMs);
  return { steps: steps.length, callsPerStep: reference.length, floorMs, perStep, byFunction };
}

/** Per thread of this process: nanoseconds on a CPU and runnable but waiting for one (Linux), or null elsewhere. */
export function threadSchedule(): Map<number, { runNs: number; waitNs: number }> | null {
  try {
    const tasks = fs.readdirSync('/proc/self/task');
    const result = new Map<number, { runNs: number; waitNs: number }>();
    for (const tid of tasks) {
      const [run, wait] = fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
      if (Number.isFinite(run) && Number.isFinite(wait)) result.set(Number(tid), { runNs: run, waitNs: wait });
    }
    return result;
  } catch {
    return null;
  }
}

/** Threads' run and wait milliseconds between two readings of threadSchedule, busiest first. */
export function scheduleDelta(before: Map<number, { runNs: number; waitNs: number }>, after: Map<number, { runNs: number; waitNs: number }>) {
  return [...after].map(([tid, a]) => {
    const b = before.get(tid) ?? { runNs: 0, waitNs: 0 };
    return { tid, runMs: (a.runNs - b.runNs) / 1e6, waitMs: (a.waitNs - b.waitNs) / 1e6 };
  }).filter((t) => t.runMs > 0 || t.waitMs > 0).sort((x, y) => y.runMs - x.runMs);
}

/** The printed account: per step, by function, and (when given) the threads' run and wait times per step. */
export function formatWaits(label: string, a: WaitAccount, flopsPerStep?: number, peakGflops?: number | null,
  threads?: Array<{ tid: number; runMs: number; waitMs: number }>): string {
  const ms = (v: number) => v.toFixed(1).padStart(8);
  const lines = [
    `${label}: ${a.steps} steps of ${a.callsPerStep} native calls each`,
    `native floor (each call's fastest time, summed): ${a.floorMs.toFixed(1)} ms` +
      (flopsPerStep ? `, ${(flopsPerStep / a.floorMs / 1e6).toFixed(0)} GFLOP/s at it` +
        (peakGflops ? ` (${(100 * flopsPerStep / a.floorMs / 1e6 / peakGflops).toFixed(1)}% of the measured ${peakGflops.toFixed(0)} GFLOP/s peak)` : '') : ''),
    '',
    `${'step'.padEnd(6)} ${'wall'.padStart(8)} ${'native'.padStart(8)} ${'floor'.padStart(8)} ${'waiting'.padStart(8)} ${'outside'.padStart(8)}  (ms; waiting = native - floor, outside = JavaScript and dispatch)`,
    ...a.perStep.map((s, i) => `${String(i + 1).padEnd(6)} ${ms(s.wallMs)} ${ms(s.nativeMs)} ${ms(a.floorMs)} ${ms(s.excessMs)} ${ms(s.outsideMs)}`),
    '',
    `${'addon function'.padEnd(22)} ${'calls'.padStart(6)} ${'floor'.padStart(8)} ${'waiting'.padStart(8)}  (ms per step; waiting: median over steps)`,
    ...a.byFunction.filter((f) => f.floorMs + f.excessMs >= 0.05)
      .map((f) => `${f.fn.padEnd(22)} ${String(f.calls).padStart(6)} ${ms(f.floorMs)} ${ms(f.excessMs)}`),
  ];
  if (threads?.length) {
    lines.push('', `threads of this process over the timed steps, per step (Linux schedstat): ms on a CPU / ms runnable but waiting for one`);
    for (const t of threads) lines.push(`  thread ${String(t.tid).padEnd(8)} ${ms(t.runMs / a.steps)} / ${ms(t.waitMs / a.steps)}`);
  }
  return lines.join('\n');
}
