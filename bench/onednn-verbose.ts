/**
 * Reads oneDNN's verbose log (ONEDNN_VERBOSE=1, or DNNL_VERBOSE=1 for older builds): which implementation ran
 * each primitive, on which instruction set, in which data types and memory layouts, and how long it took. Our
 * addon and PyTorch's CPU convolutions both go through oneDNN, so the same summary explains both sides' kernel
 * choices (bench/profile-step.ts prints it for a training step of each).
 *
 * An execution line (oneDNN 2.x):
 *   onednn_verbose,exec,cpu,<primitive>,<implementation>,<prop_kind>,<memory descriptors>,<attributes>,<auxiliary>,<problem>,<ms>
 * with memory descriptors such as `src_f32::blocked:acdb:f0 wei_bf16:p:blocked:AcdB16a16b2a:f0 dst_f32::blocked:acdb:f0`
 * (`p`: padded); layouts are oneDNN's tags, acdb being NHWC, aBcd16b NCHW in blocks of 16 channels.
 */

/** One executed primitive. */
export interface VerboseExec {
  primitive: string;        // convolution, matmul, reorder, eltwise, ...
  implementation: string;   // e.g. brgconv:avx512_core_bf16, jit:uni
  propKind: string;         // forward_training, backward_data, backward_weights, undef
  tensors: Record<string, { type: string; layout: string }>;  // by argument: src, wei, dst, bia, diff_src, ...
  problem: string;          // e.g. mb64_ic32oc32_ih28oh28kh3sh1dh0ph1_iw28ow28kw3sw1dw0pw1
  ms: number;
}

/** The parsed log: the info lines (version, ISA, threads) and every execution. */
export interface VerboseLog { info: string[]; execs: VerboseExec[] }

const PREFIX = /^(onednn|dnnl)_verbose,/;

/** Parses the verbose lines of a process's output; other lines are ignored. */
export function parseVerbose(text: string): VerboseLog {
  const info: string[] = [];
  const execs: VerboseExec[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!PREFIX.test(line)) continue;
    const fields = line.split(',');
    if (fields[1] === 'info') {
      const rest = fields.slice(2).join(',');
      if (!rest.startsWith('prim_template')) info.push(rest);
      continue;
    }
    if (fields[1] !== 'exec' || fields.length < 11) continue;
    const ms = Number(fields[fields.length - 1]);
    const tensors: VerboseExec['tensors'] = {};
    for (const md of fields[6].split(' ').filter(Boolean)) {
      // <arg>_<type>:<extra, e.g. p for padded>:<format kind>:<layout>:<flags>
      const match = /^([a-z_]+?)_([a-z0-9]+):([a-z]*):[a-z]+:([^:]*):/.exec(md);
      if (match) tensors[match[1]] = { type: match[2], layout: match[3] ? `${match[4]}(${match[3]})` : match[4] };
    }
    execs.push({ primitive: fields[3], implementation: fields[4], propKind: fields[5], tensors, problem: fields[9], ms: Number.isFinite(ms) ? ms : 0 });
  }
  return { info, execs };
}

/** One line of the summary: a (primitive, implementation, direction, types and layouts) group. */
export interface VerboseGroup { key: string; primitive: string; implementation: string; propKind: string; io: string; calls: number; ms: number; largest: string }

/** The data types and layouts of an execution, e.g. `src f32 acdb, wei bf16 AcdB16a16b2a, dst f32 acdb`. */
function ioText(e: VerboseExec): string {
  return Object.entries(e.tensors).filter(([, t]) => t.type !== 'undef').map(([arg, t]) => `${arg} ${t.type} ${t.layout}`).join(', ');
}

/** Groups executions by primitive, implementation, direction and tensor types/layouts; largest total time first. */
export function groupVerbose(execs: VerboseExec[]): VerboseGroup[] {
  const groups = new Map<string, VerboseGroup & { largestMs: number }>();
  for (const e of execs) {
    const io = ioText(e);
    const key = `${e.primitive}|${e.implementation}|${e.propKind}|${io}`;
    const g = groups.get(key) ?? { key, primitive: e.primitive, implementation: e.implementation, propKind: e.propKind, io, calls: 0, ms: 0, largest: '', largestMs: -1 };
    g.calls += 1;
    g.ms += e.ms;
    if (e.ms > g.largestMs) { g.largestMs = e.ms; g.largest = e.problem; }
    groups.set(key, g);
  }
  return [...groups.values()].map(({ largestMs: _, ...g }) => g).sort((a, b) => b.ms - a.ms);
}

/** A printable summary: info lines, time by primitive kind (reorders included), then the top groups. */
export function formatVerbose(log: VerboseLog, title: string, top = 20): string {
  const lines = [`${title}: ${log.execs.length} primitive executions`];
  for (const info of log.info) lines.push(`  info: ${info}`);
  const total = log.execs.reduce((s, e) => s + e.ms, 0);
  const byKind = new Map<string, { calls: number; ms: number }>();
  for (const e of log.execs) {
    const k = byKind.get(e.primitive) ?? { calls: 0, ms: 0 };
    k.calls += 1;
    k.ms += e.ms;
    byKind.set(e.primitive, k);
  }
  lines.push(`  ${'primitive'.padEnd(16)} ${'calls'.padStart(6)} ${'ms'.padStart(9)} ${'share'.padStart(6)}`);
  for (const [kind, k] of [...byKind].sort((a, b) => b[1].ms - a[1].ms)) {
    lines.push(`  ${kind.padEnd(16)} ${String(k.calls).padStart(6)} ${k.ms.toFixed(2).padStart(9)} ${(total ? (100 * k.ms) / total : 0).toFixed(1).padStart(5)}%`);
  }
  lines.push(`  by implementation (largest time first; 'largest' is the slowest call's problem):`);
  for (const g of groupVerbose(log.execs).slice(0, top)) {
    lines.push(`  ${g.ms.toFixed(2).padStart(9)} ms ${String(g.calls).padStart(5)}x  ${g.primitive} ${g.implementation} ${g.propKind}  [${g.io}]  largest ${g.largest}`);
  }
  return lines.join('\n');
}
