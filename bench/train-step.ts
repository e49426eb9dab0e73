/**
 * `npm run bench`: times the ECT training step of the PyTorch peer's UNet configurations on every available
 * backend and on the PyTorch CPU peer, and writes the table to results/bench/. With --workloads it also times
 * generation (1-step, 2-step, Heun-35) and the evaluation pass (features + fd), bench/workloads.ts; with
 * --precisions fp32,bf16 each of them also in bf16 mixed precision (ours on onednn, the peer under
 * torch.autocast), against the bf16 peak.
 *
 * Every figure comes from the machine it runs on. The peak is measured before anything else runs: the rate
 * of a register-only multiply-add loop on every thread (lib/machine/measured-peak.ts); beside it stands the
 * peak computed from this CPU's facts (lib/machine/peak.ts: cores, vector width, FMA units, reported clock),
 * which a boosting core can exceed. Each is printed as '-' with the reason when it cannot be known. The ratio to PyTorch is measured in interleaved rounds: each round runs the peer and then
 * each backend (the order reversed every other round, so drift in machine load hits both sides), and the
 * table gives the median img/s, the median of the rounds' ratios and their min-max spread; the JSON keeps
 * every round. A round runs every workload of a configuration. Each (round, workload, backend, precision) runs
 * in its own child process, so peak memory is its own; the table sets it against the peer's.
 * After the table, a long onednn run checks that resident memory does not grow.
 *
 * The peer is `bench/peer/ect_step_torch.py` (or --peer, or ECT_PEER_SCRIPT),
 * run by the first python3 on PATH that imports torch (or --python). `--help` lists every flag.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { workbenchCommit } from '../lib/env';
import { forwardFlopsPerImage } from '../lib/nn/flops';
import { bf16Peak, fp32Peak, readCpuFacts, vectorExtensions, type PeakEstimate } from '../lib/machine/peak';
import { cpuArchitecture } from '../lib/machine/facts';
import { measurePeak, peakForFractions } from '../lib/machine/measured-peak';
import { withoutChosenWait } from '../lib/backend/onednn/thread-wait';
import { PRECISIONS, type Precision } from '../lib/config/types';
import { BENCH_SHAPES, SMOKE_SHAPES, benchShape, type BenchShape } from './ect-step';
import { WORKLOADS, WORKLOAD_LABELS, workloadFlopsPerImage, workloadProblem, type Workload } from './workloads';

/** The repository root: this file is compiled to dist/bench/. */
const REPO_ROOT = path.resolve(__dirname, '..', '..');
/** Where the peer lives by default: bench/peer/ in the repository (its README says what it measures). */
const DEFAULT_PEER = path.join(REPO_ROOT, 'bench', 'peer', 'ect_step_torch.py');
const BACKENDS = ['tensorflow', 'onednn', 'wasm', 'cpu'] as const;
// Timed steps per configuration (after one warm-up step), for the peer and the native backends: a round's figure is
// the mean over a window of several seconds, since the shared hosts' speed moves within seconds (3 steps of res28-ch32
// in bf16, 1.3 s, gave rounds from 95 to 151 img/s; 10 steps 136-153).
const DEFAULT_STEPS: Record<string, number> = { 'res32-ch64': 4, 'res28-ch32': 10, 'res28-ch16': 12 };
// The same for wasm, which takes minutes per big step.
const WASM_STEPS: Record<string, number> = { 'res32-ch64': 2, 'res28-ch32': 3, 'res28-ch16': 4 };
// Timed units of the other workloads (one batch each; Heun is 35 network evaluations per unit).
const DEFAULT_UNITS: Record<Exclude<Workload, 'train'>, number> = { '1step': 5, '2step': 3, heun: 1, features: 5 };
const DEFAULT_ROUNDS = 3;
const DEFAULT_MEMORY_STEPS = 200;
const DEFAULT_MEMORY_CONFIG = 'res28-ch32';
const CHILD_TIMEOUT_MINUTES = 30;
const MEMORY_TIMEOUT_MINUTES = 120;
const PEER_WARMUPS = 2;  // the peer's own warm-up steps (WARMUP_STEPS in bench/peer/ect_step_torch.py)
const KIB_PER_MIB = 1024;

export const USAGE = `Usage: npm run bench -- [flags]   (or: node dist/bench/train-step.js [flags])

Times one ECT training step per configuration (and, with --workloads, generation and the evaluation
pass) on each backend and on the PyTorch CPU peer, in interleaved rounds, and writes
results/bench/train-step-<time>.{md,json} and train-step-latest.md.

  --configs a,b         configurations (default: ${Object.keys(BENCH_SHAPES).join(',')})
  --backends a,b        backends (default: ${BACKENDS.join(',')}; cpu only with --with-cpu)
  --with-cpu            also time the pure-JavaScript cpu backend (1 step; ~250x slower than wasm)
  --workloads a,b       what to time (default: train): ${WORKLOADS.join(', ')} (features: the fmnist
                        classifier's features + fd, 28x28x1 configurations only)
  --precisions a,b      ${PRECISIONS.join(', ')} (default: fp32); bf16 runs on onednn where the CPU has bf16
                        instructions (others report the refusal) and on the peer under torch.autocast
  --steps N             timed units per measurement, after a warm-up (default per configuration for
                        train: ${Object.entries(DEFAULT_STEPS).map(([c, n]) => `${c} ${n}`).join(', ')} (wasm ${Object.values(WASM_STEPS).join(', ')}); batches for the others:
                        ${Object.entries(DEFAULT_UNITS).map(([c, n]) => `${c} ${n}`).join(', ')})
  --quick               a smoke run of a few minutes: configuration ${Object.keys(SMOKE_SHAPES).join(',')}, every workload, 1 round,
                        1 unit, no memory check (flags given explicitly still apply); not a measurement
  --rounds N            interleaved rounds per configuration (default ${DEFAULT_ROUNDS}); each round runs the
                        peer and every backend, the order reversed every other round
  --memory-steps N      resident-memory check: N onednn steps after the table (default ${DEFAULT_MEMORY_STEPS}; 0 skips)
  --memory-config name  configuration of the memory check (default ${DEFAULT_MEMORY_CONFIG})
  --peer path           the PyTorch peer script (default: $ECT_PEER_SCRIPT, else
                        bench/peer/ect_step_torch.py)
  --python path         the python that runs the peer (default: the first python3 on PATH that imports torch)
  --out dir             where the report goes (default: results/bench in the repository)
  --help                print this text
`;

/** The parsed command line. */
export interface BenchFlags {
  steps?: number;
  workloads: Workload[];
  precisions: Precision[];
  quick: boolean;
  rounds: number;
  configs: string[];
  backends: string[];
  withCpu: boolean;
  memorySteps: number;
  memoryConfig: string;
  peer?: string;
  python?: string;
  out: string;
  help: boolean;
}

/** Parses the flags; throws with the usage text on an unknown flag, a missing value or a bad number. */
export function parseFlags(argv: string[]): BenchFlags {
  const flags: BenchFlags = {
    workloads: ['train'], precisions: ['fp32'], quick: false, rounds: DEFAULT_ROUNDS, configs: Object.keys(BENCH_SHAPES), backends: [...BACKENDS], withCpu: false,
    memorySteps: DEFAULT_MEMORY_STEPS, memoryConfig: DEFAULT_MEMORY_CONFIG, out: path.join(REPO_ROOT, 'results', 'bench'), help: false,
  };
  const fail = (why: string): never => { throw new Error(`${why}\n\n${USAGE}`); };
  const count = (name: string, text: string, min: number) => {
    const n = Number(text);
    return Number.isInteger(n) && n >= min ? n : fail(`${name} needs an integer >= ${min}, got '${text}'`);
  };
  const list = (text: string) => text.split(',').map((s) => s.trim()).filter(Boolean);
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') { flags.help = true; continue; }
    if (arg === '--with-cpu') { flags.withCpu = true; continue; }
    if (arg === '--quick') { flags.quick = true; continue; }
    const takesValue = ['--steps', '--rounds', '--configs', '--backends', '--memory-steps', '--memory-config', '--peer', '--python', '--out',
      '--workloads', '--precisions'];
    if (!takesValue.includes(arg)) fail(`unknown ${arg.startsWith('-') ? 'flag' : 'argument'} '${arg}'`);
    const value = argv[++i];
    if (value === undefined || value.startsWith('--')) fail(`${arg} needs a value`);
    given.add(arg);
    switch (arg) {
      case '--workloads': flags.workloads = list(value) as Workload[]; break;
      case '--precisions': flags.precisions = list(value) as Precision[]; break;
      case '--steps': flags.steps = count(arg, value, 1); break;
      case '--rounds': flags.rounds = count(arg, value, 1); break;
      case '--configs': flags.configs = list(value); break;
      case '--backends': flags.backends = list(value); break;
      case '--memory-steps': flags.memorySteps = count(arg, value, 0); break;
      case '--memory-config': flags.memoryConfig = value; break;
      case '--peer': flags.peer = path.resolve(value); break;
      case '--python': flags.python = value; break;
      case '--out': flags.out = path.resolve(value); break;
    }
  }
  if (flags.quick) {
    if (!given.has('--configs')) flags.configs = Object.keys(SMOKE_SHAPES);
    if (!given.has('--workloads')) flags.workloads = [...WORKLOADS];
    if (!given.has('--rounds')) flags.rounds = 1;
    if (!given.has('--steps')) flags.steps = 1;
    if (!given.has('--memory-steps')) flags.memorySteps = 0;
    if (!given.has('--backends')) flags.backends = ['onednn'];
  }
  for (const c of [...flags.configs, flags.memoryConfig]) {
    if (!benchShape(c)) fail(`unknown configuration '${c}'; known: ${[...Object.keys(BENCH_SHAPES), ...Object.keys(SMOKE_SHAPES)].join(', ')}`);
  }
  for (const w of flags.workloads) {
    if (!(WORKLOADS as readonly string[]).includes(w)) fail(`unknown workload '${w}'; known: ${WORKLOADS.join(', ')}`);
  }
  for (const p of flags.precisions) {
    if (!(PRECISIONS as readonly string[]).includes(p)) fail(`unknown precision '${p}'; known: ${PRECISIONS.join(', ')}`);
  }
  if (!flags.workloads.length || !flags.precisions.length) fail('--workloads and --precisions need at least one value');
  for (const b of flags.backends) {
    if (!(BACKENDS as readonly string[]).includes(b)) fail(`unknown backend '${b}'; known: ${BACKENDS.join(', ')}`);
  }
  return flags;
}

/** Text that may end up in committed results, with this machine's folders replaced by relative names. */
function scrub(text: string): string {
  const replace = (s: string, from: string, to: string) => (from.length > 1 ? s.split(from).join(to) : s);
  return replace(replace(replace(text, REPO_ROOT, '.'), path.dirname(REPO_ROOT), '..'), os.homedir(), '~');
}

/** A path as the report shows it: relative to the repository root. */
const shown = (p: string) => (path.isAbsolute(p) ? path.relative(REPO_ROOT, p) || '.' : p);

/** One measured (or skipped) row of the table: medians over the rounds, spreads, and each round's figures. */
export interface BenchRow {
  backend: string;
  config: string;
  workload: Workload;
  precision: Precision;
  imgPerSec?: number;              // median over rounds
  imgPerSecRange?: [number, number];
  gflops?: number;                 // achieved at the median, counting 4 forward passes per image (see stepFlopsPerImage)
  peakFraction?: number;           // gflops / this machine's peak (measured where it could be); absent when unknown
  computedPeakFraction?: number;   // gflops / the peak computed from the reported clock (lib/machine/peak.ts)
  peakRssMB?: number;              // the largest over rounds
  rssToTorch?: number;             // peakRssMB over the peer's (same workload and precision)
  ratioToTorch?: number;           // median over rounds of (img/s / the peer's img/s in the same round)
  ratioRange?: [number, number];   // min-max of those ratios
  roundImgPerSec?: Array<number | null>;  // each round's img/s (null: no result that round)
  roundRatios?: Array<number | null>;     // each round's ratio to the peer (null: no ratio that round)
  rounds?: number;                 // rounds with a result
  steps?: number;
  note?: string;
}

/** What a child process reports for one backend and configuration. */
interface ChildResult {
  secPerStep: number; imgPerSec: number; steps: number; maxRssMB: number; rssMB: number[]; backend: string; error?: string;
  threadWait?: string;  // how the addon's OpenMP workers waited (lib/backend/onednn/thread-wait.ts), onednn only
}

/** What a child measures: one backend, configuration, workload and precision, `steps` timed units. */
interface ChildJob { backend: string; config: string; steps: number; workload: Workload; precision: Precision }

/** Runs this file as a child measuring one job; returns its JSON report. */
function runChild(job: ChildJob, timeoutMinutes = CHILD_TIMEOUT_MINUTES): ChildResult {
  const { backend } = job;
  const child = spawnSync(process.execPath, [__filename, '--child', JSON.stringify(job)], {
    encoding: 'utf8', timeout: timeoutMinutes * 60_000, maxBuffer: 64 << 20,
  });
  const line = (child.stdout ?? '').split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) {
    const lines = (child.stderr ?? '').split('\n').map((l) => l.trim()).filter((l) => l && !/^Node\.js v/.test(l));
    // the error's own line (an uncaught exception prints its stack and properties after it), else the last lines
    const errorLine = lines.find((l) => /^(\w*Error\b|Error:)/.test(l));
    const why = child.error ? child.error.message : errorLine ?? lines.slice(-3).join(' | ');
    return { secPerStep: NaN, imgPerSec: NaN, steps: 0, maxRssMB: NaN, rssMB: [], backend, error: scrub(why || `exit ${child.status}`) };
  }
  return JSON.parse(line) as ChildResult;
}

/**
 * Child side: initialise the backend the project's way, check the precision may run (a refusal is the child's
 * error, shown in the table), warm up, time `steps` units, sample RSS after each.
 */
async function childMain(job: ChildJob): Promise<void> {
  const { initBackend } = await import('../lib/backend/select');
  const { assertPrecisionAvailable } = await import('../lib/backend/onednn/precision');
  const { prepareWorkload } = await import('./workloads');
  const tf = await import('@tensorflow/tfjs-core');
  const info = await initBackend(job.backend as never);
  assertPrecisionAvailable(job.precision, tf.getBackend());
  const shape = benchShape(job.config) as BenchShape;
  const work = await prepareWorkload(job.workload, shape, job.precision);
  work.run();  // warm-up: oneDNN primitive creation, wasm compilation, first allocations
  const rssMB: number[] = [];
  const start = performance.now();
  for (let i = 0; i < job.steps; i++) {
    work.run();
    rssMB.push(process.memoryUsage().rss / 2 ** 20);
  }
  const secPerStep = (performance.now() - start) / 1000 / job.steps;
  work.dispose();
  const steps = job.steps;
  const result: ChildResult = {
    secPerStep, imgPerSec: work.images / secPerStep, steps, backend: info.name,
    maxRssMB: process.resourceUsage().maxRSS / KIB_PER_MIB, rssMB,
  };
  if (info.details?.threadWait !== undefined) result.threadWait = String(info.details.threadWait);
  console.log(JSON.stringify(result));
}

/** How the peer is run on this machine, or why it cannot be. */
type PeerSetup = { python: string; script: string } | { missing: string };

/** True when `python` runs and imports torch. */
export function importsTorch(python: string): boolean {
  const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 120_000 });
  return !probe.error && probe.status === 0;
}

/** Every python3 on PATH, in PATH order, once each (by real path). */
export function pythonsOnPath(): string[] {
  const seen = new Set<string>();
  const found: string[] = [];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'python3');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      const real = fs.realpathSync(candidate);
      if (!seen.has(real)) { seen.add(real); found.push(candidate); }
    } catch { /* not here */ }
  }
  return found;
}

/** Finds the peer script (--peer, ECT_PEER_SCRIPT, or bench/peer/) and a python with torch to run it. */
function findPeer(flags: BenchFlags): PeerSetup {
  const script = flags.peer ?? (process.env.ECT_PEER_SCRIPT ? path.resolve(process.env.ECT_PEER_SCRIPT) : DEFAULT_PEER);
  const from = flags.peer ? '--peer' : process.env.ECT_PEER_SCRIPT ? 'ECT_PEER_SCRIPT' : 'the default, bench/peer/ in the repository';
  if (!fs.existsSync(script)) {
    return { missing: `peer script not found at ${shown(script)} (${from}); pass --peer <path> or set ECT_PEER_SCRIPT` };
  }
  if (flags.python) {
    return importsTorch(flags.python) ? { python: flags.python, script }
      : { missing: `--python ${shown(flags.python)} cannot import torch (or does not run)` };
  }
  const candidates = pythonsOnPath();
  if (!candidates.length) return { missing: 'no python3 on PATH; install python3 and python3-torch, or pass --python <path>' };
  const python = candidates.find(importsTorch);
  return python ? { python, script }
    : { missing: `no python3 on PATH imports torch (${candidates.length} tried): apt-get install python3-torch, or pass --python <a python with torch>` };
}

/**
 * Runs the peer inside a small python wrapper that prints the process's peak resident memory (getrusage,
 * KiB on Linux) on stderr, so no external `time` program is needed.
 */
const PEER_WRAPPER = [
  'import resource, runpy, sys',
  'script = sys.argv[1]; sys.argv = sys.argv[1:]',
  'try:',
  "    runpy.run_path(script, run_name='__main__')",
  'finally:',
  "    print('maxrss_kib=%d' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)",
].join('\n');

/** The rounds' OpenMP wait choices in a few words: 'spin in 3 of 3 rounds' (or each mode's count). */
export function threadWaitSummary(waits: string[]): string {
  const counts = new Map<string, number>();
  for (const wait of waits) {
    const mode = wait.split(' ')[0];
    counts.set(mode, (counts.get(mode) ?? 0) + 1);
  }
  return [...counts].map(([mode, n]) => `${mode} in ${n} of ${waits.length} rounds`).join(', ');
}

/** How each side's OpenMP threads wait between kernels, said under the table. */
const WAIT_NOTE = "OpenMP workers: the addon's spin for a while before they sleep where no other process used the cores when it " +
  'loaded, else sleep at once (lib/backend/onednn/thread-wait.ts; the notes say which, per round); the peer runs in the environment ' +
  "the benchmark started in, so its OpenMP waits its own way (libgomp's default spins) unless that environment sets OMP_WAIT_POLICY " +
  'or GOMP_SPINCOUNT, which both sides then follow.';

/** What one peer run reports. */
interface PeerResult { imgPerSec: number; gflops: number; maxRssMB: number; torch: string }

/** Runs the PyTorch peer once on a configuration, workload and precision; a string with the reason when it fails. */
function runPeer(setup: { python: string; script: string }, shape: BenchShape, steps: number, threads: number, mode: Workload, precision: Precision): PeerResult | string {
  const args = JSON.stringify({ ...shape, steps, threads, mode, precision });
  // the peer's OpenMP waits its own way (libgomp spins by default): the addon's choice for this process is not passed on
  const child = spawnSync(setup.python, ['-c', PEER_WRAPPER, setup.script, args],
    { encoding: 'utf8', timeout: CHILD_TIMEOUT_MINUTES * 60_000, env: withoutChosenWait(process.env) });
  const line = (child.stdout ?? '').split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) {
    const stderr = (child.stderr ?? '').trim().split('\n').filter((l) => !/Warning|warn|maxrss_kib=/.test(l));
    return scrub(child.error ? child.error.message : stderr.slice(-2).join(' | ') || `exit ${child.status}`);
  }
  const report = JSON.parse(line) as { img_per_s: number; gflops: number; torch?: string };
  const rss = /maxrss_kib=(\d+)/.exec(child.stderr ?? '');
  return { imgPerSec: report.img_per_s, gflops: report.gflops, maxRssMB: rss ? Number(rss[1]) / KIB_PER_MIB : NaN, torch: report.torch ?? '?' };
}

/** The median of a non-empty list. */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const fmt = (v: number | undefined, digits: number) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

/** A ratio with its spread over rounds: `1.18x (1.12-1.22)`, or just `1.18x` from one round. */
function ratioText(r: BenchRow): string {
  if (r.ratioToTorch === undefined) return '-';
  const [lo, hi] = r.ratioRange ?? [r.ratioToTorch, r.ratioToTorch];
  return (r.rounds ?? 1) > 1 && lo !== hi ? `${r.ratioToTorch.toFixed(2)}x (${lo.toFixed(2)}-${hi.toFixed(2)})` : `${r.ratioToTorch.toFixed(2)}x`;
}

/** How a report names one side of a comparison: the backend (or the peer) and, when not fp32, its precision. */
function participantName(backend: string, precision: Precision): string {
  return precision === 'fp32' ? backend : `${backend} ${precision}`;
}

const percent = (fraction: number | undefined) => (fraction === undefined ? '-' : `${(100 * fraction).toFixed(1)}%`);

/** The results as a Markdown table. */
export function markdownTable(rows: BenchRow[]): string {
  const header = '| backend | precision | config | workload | img/s (median) | GFLOP/s | of peak | of computed peak | peak RSS (MB) | RSS vs PyTorch | ' +
    'vs PyTorch (median, min-max) | rounds | note |\n' +
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|';
  const body = rows.map((r) => `| ${r.backend} | ${r.precision} | ${r.config} | ${WORKLOAD_LABELS[r.workload]} | ${fmt(r.imgPerSec, 2)} | ${fmt(r.gflops, 1)} | ` +
    `${percent(r.peakFraction)} | ${percent(r.computedPeakFraction)} | ${fmt(r.peakRssMB, 0)} | ` +
    `${r.rssToTorch === undefined ? '-' : `${r.rssToTorch.toFixed(2)}x`} | ${ratioText(r)} | ` +
    `${r.rounds ?? '-'} | ${(r.note ?? '').replace(/\|/g, '/')} |`);
  return [header, ...body].join('\n');
}

/** A backend's bf16 speed over its own fp32 speed on one configuration and workload, round by round. */
export interface PrecisionRatio {
  backend: string;
  config: string;
  workload: Workload;
  roundRatios: Array<number | null>;   // each round's bf16 img/s over fp32 img/s in the same round (null: one side missing)
  median?: number;                     // median over the rounds with both
  range?: [number, number];            // their min-max
  ofMedians?: number;                  // the bf16 row's median img/s over the fp32 row's
}

/**
 * bf16 over fp32 for every backend, configuration and workload measured in both precisions (the peer included): per
 * round (both ran in the same round, so the machine's state is shared), their median and min-max, and the ratio of the
 * two rows' medians.
 */
export function precisionRatios(rows: BenchRow[]): PrecisionRatio[] {
  const out: PrecisionRatio[] = [];
  for (const bf16 of rows.filter((r) => r.precision === 'bf16' && r.roundImgPerSec)) {
    // the peer's bf16 row is named 'pytorch (peer) bf16' (participantName), ours by the backend alone
    const fp32 = rows.find((r) => r.precision === 'fp32' && r.config === bf16.config && r.workload === bf16.workload &&
      (r.backend === bf16.backend || participantName(r.backend, 'bf16') === bf16.backend));
    if (!fp32?.roundImgPerSec) continue;
    const roundRatios = bf16.roundImgPerSec!.map((v, i) => {
      const base = fp32.roundImgPerSec![i];
      return v !== null && base !== null && base !== undefined && base > 0 ? v / base : null;
    });
    const ok = roundRatios.filter((v): v is number => v !== null);
    out.push({
      backend: fp32.backend, config: bf16.config, workload: bf16.workload, roundRatios,
      median: ok.length ? median(ok) : undefined, range: ok.length ? [Math.min(...ok), Math.max(...ok)] : undefined,
      ofMedians: bf16.imgPerSec !== undefined && fp32.imgPerSec ? bf16.imgPerSec / fp32.imgPerSec : undefined,
    });
  }
  return out;
}

/** The precision ratios as a Markdown table (empty when no row was measured in both precisions). */
export function precisionRatioTable(ratios: PrecisionRatio[]): string {
  if (!ratios.length) return '';
  const header = '| backend | config | workload | bf16 / fp32 (median of rounds, min-max) | of the medians | each round |\n|---|---|---|---|---|---|';
  const body = ratios.map((r) => `| ${r.backend} | ${r.config} | ${WORKLOAD_LABELS[r.workload]} | ` +
    `${r.median === undefined ? '-' : `${r.median.toFixed(2)}x (${r.range![0].toFixed(2)}-${r.range![1].toFixed(2)})`} | ` +
    `${r.ofMedians === undefined ? '-' : `${r.ofMedians.toFixed(2)}x`} | ${r.roundRatios.map((v) => (v === null ? '-' : v.toFixed(2))).join(', ')} |`);
  return [header, ...body].join('\n');
}

/** One measured side of a round. */
type Measured = { imgPerSec: number; ratio: number | null; maxRssMB: number; backend: string; threadWait?: string } | { error: string };

/** One round of one configuration: per workload, the order it ran in and what each run gave. */
interface RoundRecord {
  round: number;
  workloads: Partial<Record<Workload, {
    order: string[];
    peer: Partial<Record<Precision, PeerResult | { error: string }>>;
    backends: Record<string, Measured>;   // by participant name (backend, or 'backend bf16')
  }>>;
}

/** The row of one backend (or the peer) from its per-round img/s, ratios and peak memory. */
function summarise(base: BenchRow, imgPerSec: Array<number | null>, ratios: Array<number | null>, rssMB: number[], flopsPerImage: number,
  peak: PeakEstimate, computedPeak: PeakEstimate = peak): BenchRow {
  const ok = imgPerSec.filter((v): v is number => v !== null);
  const okRatios = ratios.filter((v): v is number => v !== null);
  if (!ok.length) return base;
  const med = median(ok);
  const gflops = (med * flopsPerImage) / 1e9;
  return {
    ...base, imgPerSec: med, imgPerSecRange: [Math.min(...ok), Math.max(...ok)], gflops,
    peakFraction: peak.gflops ? gflops / peak.gflops : undefined,
    computedPeakFraction: computedPeak.gflops ? gflops / computedPeak.gflops : undefined,
    peakRssMB: rssMB.length ? Math.max(...rssMB) : undefined,
    ratioToTorch: okRatios.length ? median(okRatios) : undefined,
    ratioRange: okRatios.length ? [Math.min(...okRatios), Math.max(...okRatios)] : undefined,
    roundImgPerSec: imgPerSec, roundRatios: ratios, rounds: ok.length,
  };
}

/** '3 steps', '1 batch', '5 batches'. */
function countOf(n: number, unit: 'step' | 'batch'): string {
  return `${n} ${unit}${n === 1 ? '' : unit === 'batch' ? 'es' : 's'}`;
}

/** Timed units of a workload on a configuration: --steps, else the defaults above. */
export function unitsOf(flags: BenchFlags, workload: Workload, config: string): number {
  if (flags.steps) return flags.steps;
  return workload === 'train' ? DEFAULT_STEPS[config] ?? 3 : DEFAULT_UNITS[workload];
}

/** The units a backend times: 1 on cpu, at most WASM_STEPS on wasm unless --steps says otherwise. */
export function unitsFor(backend: string, flags: BenchFlags, workload: Workload, config: string, steps: number): number {
  if (backend === 'cpu') return 1;
  if (backend === 'wasm' && !flags.steps && workload === 'train') return Math.min(steps, WASM_STEPS[config] ?? 2);
  return steps;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flags = parseFlags(argv);
  if (flags.help) { console.log(USAGE); return; }
  const started = new Date();
  const code = workbenchCommit();  // read before the rounds: the code the figures come from
  const loadAverage = os.loadavg().map((l) => Number(l.toFixed(2)));
  const threads = os.availableParallelism();  // the peer's thread count; our backends use every core too
  const cpu = readCpuFacts();
  const computedPeak = fp32Peak(cpu, threads);
  const computedBf16 = bf16Peak(cpu, threads);
  // Measured first, before any child runs, on the same thread count as every backend and the peer.
  const probe = flags.quick ? { seconds: 0.05, repeats: 1 } : { seconds: 0.25, repeats: 5 };
  const measuredFp32 = measurePeak('fp32', cpu, threads, probe);
  // the probe times VDPBF16PS; where the bf16 peak is AMX tiles its rate is not that peak
  const measuredBf16 = cpu.flags.includes('amx_bf16')
    ? { gflops: null, kernel: 'none', threads, impliedGhz: null, explanation: 'not measured: the probe times VDPBF16PS, and this CPU\'s bf16 peak is its AMX tiles' }
    : measurePeak('bf16', cpu, threads, probe);
  const peak = peakForFractions(computedPeak, measuredFp32);
  const peakBf16 = peakForFractions(computedBf16, measuredBf16);
  const peakOf = (precision: Precision): [PeakEstimate, PeakEstimate] => (precision === 'bf16' ? [peakBf16, computedBf16] : [peak, computedPeak]);
  const machine = {
    cpu: cpu.modelName || 'unknown', cpuArch: cpuArchitecture(cpu) ?? null, logicalCpus: threads, cores: peak.cores, vectorExtensions: vectorExtensions(cpu),
    peakGflops: peak.gflops, peak: peak.explanation, bf16PeakGflops: peakBf16.gflops, bf16Peak: peakBf16.explanation, loadAverageAtStart: loadAverage,
    computedPeakGflops: computedPeak.gflops, measuredPeakGflops: measuredFp32.gflops, computedBf16PeakGflops: computedBf16.gflops,
    measuredBf16PeakGflops: measuredBf16.gflops, impliedClockGhz: measuredFp32.impliedGhz,
  };
  const machineLine = `${machine.cpu}${machine.cpuArch ? ` (${machine.cpuArch})` : ''}, ${threads} logical CPUs (${peak.cores} cores counted), vector extensions ${machine.vectorExtensions}; ` +
    `load average at start ${loadAverage.map((l) => l.toFixed(1)).join(' ')}.`;
  const command = `npm run bench -- ${argv.map((a, i) => (['--peer', '--python', '--out'].includes(argv[i - 1]) ? shown(path.resolve(a)) : a)).join(' ')}`.trim();
  fs.mkdirSync(flags.out, { recursive: true });
  const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\..*/, '');
  console.error(`machine: ${machineLine}\nfp32 peak: ${peak.explanation}\nbf16 peak: ${peakBf16.explanation}`);
  if (flags.quick) console.error('--quick: a smoke run of the benchmark itself; its figures are not measurements');

  const peer = findPeer(flags);
  if ('missing' in peer) console.error(`peer: not run: ${peer.missing}`);
  const rows: BenchRow[] = [];
  const roundsByConfig: Record<string, RoundRecord[]> = {};
  let rssSeriesMB: number[] = [];
  const timed = flags.backends.filter((b) => b !== 'cpu' || flags.withCpu);
  for (const config of flags.configs) {
    const shape = benchShape(config) as BenchShape;
    const workloads = flags.workloads.filter((w) => !workloadProblem(w, shape));
    const records: RoundRecord[] = [];
    for (let round = 0; round < flags.rounds; round++) {
      const record: RoundRecord = { round: round + 1, workloads: {} };
      for (const workload of workloads) {
        const steps = unitsOf(flags, workload, config);
        // every side of the comparison: the peer and each backend, in each precision
        const sides = flags.precisions.flatMap((precision) => [
          ...('missing' in peer ? [] : [{ who: 'peer', precision }]), ...timed.map((who) => ({ who, precision }))]);
        // Reverse the order every other round, so a drift in machine load does not favour one side.
        const order = round % 2 === 0 ? sides : [...sides].reverse();
        const entry = { order: order.map((s) => participantName(s.who, s.precision)), peer: {} as Partial<Record<Precision, PeerResult | { error: string }>>, backends: {} as Record<string, Measured> };
        const progress = (name: string, text: string) => console.error(`${config} ${workload} round ${round + 1}/${flags.rounds}: ${name} ${text}`);
        for (const { who, precision } of order) {
          if (who === 'peer' && !('missing' in peer)) {
            const result = runPeer(peer, shape, steps, threads, workload, precision);
            entry.peer[precision] = typeof result === 'string' ? { error: result } : result;
            progress(participantName('peer', precision), typeof result === 'string' ? `failed: ${result}` : `${result.imgPerSec.toFixed(2)} img/s`);
            continue;
          }
          const result = runChild({ backend: who, config, steps: unitsFor(who, flags, workload, config, steps), workload, precision });
          entry.backends[participantName(who, precision)] = result.error ? { error: result.error.slice(0, 200) }
            : { imgPerSec: result.imgPerSec, ratio: null, maxRssMB: result.maxRssMB, backend: result.backend, threadWait: result.threadWait };
          progress(participantName(who, precision), result.error ? `no result: ${result.error.slice(0, 200)}` : `${result.imgPerSec.toFixed(2)} img/s`);
        }
        for (const { who, precision } of order) {
          const r = entry.backends[participantName(who, precision)];
          const p = entry.peer[precision];
          if (r && 'imgPerSec' in r && p && 'imgPerSec' in p) r.ratio = r.imgPerSec / p.imgPerSec;
        }
        record.workloads[workload] = entry;
      }
      records.push(record);
    }
    roundsByConfig[config] = records;

    for (const workload of flags.workloads) {
      const problem = workloadProblem(workload, shape);
      const flopsPerImage = workloadFlopsPerImage(workload, shape);
      const steps = unitsOf(flags, workload, config);
      const unit = workload === 'train' ? 'step' : 'batch';
      for (const precision of flags.precisions) {
        if (problem) {
          rows.push({ backend: '-', config, workload, precision, note: `not run: ${problem}` });
          continue;
        }
        const entries = records.map((r) => r.workloads[workload]);
        // The peer's row.
        const peerName = participantName('pytorch (peer)', precision);
        let peerRssMB: number | undefined;
        if ('missing' in peer) {
          rows.push({ backend: peerName, config, workload, precision, note: `not run: ${peer.missing}` });
        } else {
          const results = entries.map((e) => e?.peer[precision]);
          const imgs = results.map((p) => (p && 'imgPerSec' in p ? p.imgPerSec : null));
          const ok = results.filter((p): p is PeerResult => !!p && 'imgPerSec' in p);
          const errors = results.filter((p): p is { error: string } => !!p && 'error' in p);
          const row = summarise({ backend: peerName, config, workload, precision, steps }, imgs, imgs.map((v) => (v === null ? null : 1)),
            ok.map((p) => p.maxRssMB), flopsPerImage, ...peakOf(precision));
          peerRssMB = row.peakRssMB;
          row.note = ok.length
            ? `torch ${ok[0].torch}; ${countOf(steps, unit)} after ${PEER_WARMUPS} warm-ups per round; img/s ${row.imgPerSecRange![0].toFixed(2)}-${row.imgPerSecRange![1].toFixed(2)}; ` +
              `its own count: ${median(ok.map((p) => p.gflops)).toFixed(1)} GFLOP/s${errors.length ? `; ${errors.length} round(s) failed: ${errors[0].error}` : ''}`
            : `not run: ${errors[0]?.error ?? 'no result'}`;
          rows.push(row);
        }
        // One row per backend.
        for (const backend of flags.backends) {
          if (!timed.includes(backend)) {
            rows.push({ backend, config, workload, precision, note: 'skipped: ~250x slower than wasm (--with-cpu runs it)' });
            continue;
          }
          const results = entries.map((e) => e?.backends[participantName(backend, precision)] ?? { error: 'not run' });
          const imgs = results.map((r) => ('imgPerSec' in r ? r.imgPerSec : null));
          const ratios = results.map((r) => ('imgPerSec' in r ? r.ratio : null));
          const rss = results.flatMap((r) => ('imgPerSec' in r ? [r.maxRssMB] : []));
          const errors = results.flatMap((r) => ('error' in r ? [r.error] : []));
          const waits = results.flatMap((r) => ('threadWait' in r && r.threadWait ? [r.threadWait] : []));
          const name = results.map((r) => ('backend' in r ? r.backend : undefined)).find(Boolean) ?? backend;
          const stepsRun = unitsFor(backend, flags, workload, config, steps);
          const row = summarise({ backend: name, config, workload, precision, steps: stepsRun }, imgs, ratios, rss, flopsPerImage, ...peakOf(precision));
          if (row.peakRssMB !== undefined && peerRssMB) row.rssToTorch = row.peakRssMB / peerRssMB;
          row.note = row.rounds
            ? `${countOf(stepsRun, unit)} after 1 warm-up per round; img/s ${row.imgPerSecRange![0].toFixed(2)}-${row.imgPerSecRange![1].toFixed(2)}` +
              `${waits.length ? `; OpenMP workers: ${threadWaitSummary(waits)}` : ''}` +
              `${errors.length ? `; ${errors.length} round(s) failed: ${errors[0]}` : ''}`
            : `no result: ${errors[0] ?? 'not run'}`;
          rows.push(row);
        }
      }
    }
  }

  const ratios = precisionRatios(rows);
  const writeReport = (memoryLine: string): string => {
    const peakNote = (p: PeakEstimate, name: string) => (p.gflops === null
      ? `'-' for ${name} rows: this machine's ${name} peak is unknown or absent (see above)`
      : `${name} rows against the ${name} peak above (${p.gflops.toFixed(1)} GFLOP/s)`);
    const flopsNote = 'GFLOP/s = median img/s x FLOPs per image (lib/nn/flops.ts: convolutions, linear layers and attention matmuls; ' +
      'a training step counts 4 forward passes: student forward + backward (3) and the target forward (1); a sampler one pass per network ' +
      'evaluation: 1, 2 and 35 for Heun; features + fd the classifier\'s feature layers), for every row including the peer. ' +
      `Of peak: ${peakNote(peak, 'fp32')}; ${peakNote(peakBf16, 'bf16')}; of computed peak: against the peak from the reported clock ` +
      `(${computedPeak.gflops === null ? 'unknown' : `${computedPeak.gflops.toFixed(1)} GFLOP/s fp32`}${computedBf16.gflops === null ? '' : `, ${computedBf16.gflops.toFixed(1)} bf16`}), ` +
      'which a core running above that clock exceeds. ' +
      `vs PyTorch: each round's img/s over the peer's img/s ` +
      `(same workload and precision) in the same round; the median over ${flags.rounds} round(s) and, in brackets, their min-max ` +
      '(the JSON has every round). Peak RSS: the largest resident set of the process over the rounds (getrusage); RSS vs PyTorch: ' +
      'that over the peer\'s in the same workload and precision.';
    const report = [
      `# ECT benchmark: ${flags.workloads.map((w) => WORKLOAD_LABELS[w]).join(', ')} (${started.toISOString()})`, '',
      ...(flags.quick ? ['**--quick smoke run: the figures below test the benchmark itself and are not measurements.**', ''] : []),
      `Machine: ${machineLine}`, '',
      `fp32 peak: ${peak.explanation}.`, '',
      `bf16 peak: ${peakBf16.explanation}.`, '',
      `Command: \`${command}\``, '',
      `Code: commit ${code} (its compiled dist/ and native addon ran the rounds).`, '',
      markdownTable(rows), '', flopsNote, '', WAIT_NOTE, '',
      ...(ratios.length ? ['bf16 over fp32, the same backend in the same round (the peer: PyTorch\'s autocast over its fp32):', '',
        precisionRatioTable(ratios), ''] : []),
      memoryLine, '',
    ].join('\n');
    fs.writeFileSync(path.join(flags.out, `train-step-${stamp}.md`), report);
    const json = { started, command, code, machine, rounds: flags.rounds, workloads: flags.workloads, precisions: flags.precisions, quick: flags.quick,
      rows, precisionRatios: ratios, roundsByConfig, memoryLine, rssSeriesMB };
    fs.writeFileSync(path.join(flags.out, `train-step-${stamp}.json`), JSON.stringify(json, null, 2));
    fs.writeFileSync(path.join(flags.out, 'train-step-latest.md'), report);
    return report;
  };
  writeReport('Resident memory: measured after the table (see the next report).');  // keep the table if the long memory run dies
  let memoryLine = 'Resident memory: not checked (--memory-steps 0).';
  if (flags.memorySteps > 0) {
    const memory = runChild({ backend: 'onednn', config: flags.memoryConfig, steps: flags.memorySteps, workload: 'train', precision: 'fp32' }, MEMORY_TIMEOUT_MINUTES);
    if (memory.error) {
      memoryLine = `Resident memory over ${flags.memorySteps} onednn steps (${flags.memoryConfig}): not measured (${memory.error}).`;
    } else {
      rssSeriesMB = memory.rssMB;
      // growth from the first tenth of the run (allocator warmed up) to the end
      const base = memory.rssMB[Math.floor(memory.rssMB.length / 10)];
      const last = memory.rssMB[memory.rssMB.length - 1];
      memoryLine = `Resident memory over ${memory.steps} onednn training steps (${flags.memoryConfig}): ` +
        `${base.toFixed(0)} MB at step ${Math.floor(memory.rssMB.length / 10) + 1}, ${last.toFixed(0)} MB at the end ` +
        `(growth ${(100 * (last / base - 1)).toFixed(1)}%, target < 5%); max ${Math.max(...memory.rssMB).toFixed(0)} MB.`;
    }
  }

  const report = writeReport(memoryLine);
  console.log(report);
  console.log(`written to ${path.relative(process.cwd(), flags.out) || '.'}/train-step-${stamp}.{md,json}`);
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  // `--child <job JSON>` is this file measuring one job for the parent (runChild), not a user flag.
  const run = argv[0] === '--child' ? childMain(JSON.parse(argv[1]) as ChildJob) : main();
  run.catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
