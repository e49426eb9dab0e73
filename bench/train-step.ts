/**
 * `npm run bench`: times the ECT training step of the peer's UNet configurations on every available
 * backend and the PyTorch CPU peer in the same run, and writes the table to results/bench/.
 * Each (backend, configuration) runs in its own child process, so peak memory is its own.
 * Flags: --steps N (timed steps, default per config), --configs a,b, --backends a,b, --with-cpu,
 * --memory-steps N (resident-memory check on onednn, default 200; 0 skips), --memory-config name.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { forwardFlopsPerImage } from '../lib/nn/flops';
import { BENCH_SHAPES, benchRunConfig, type BenchShape } from './ect-step';

/** The fp32 peak of the reference machine (2 AVX2 cores, 2.45 GHz, 2 FMA units: 2 x 2.45e9 x 32). */
export const PEAK_GFLOPS = 157;
const PEER_SCRIPT = '/work/shared/bench/peer_torch_unet.py';
const PYTHON = '/usr/bin/python3';
const BACKENDS = ['tensorflow', 'onednn', 'wasm', 'cpu'] as const;
// Timed steps per configuration (after one warm-up step); small, because wasm takes minutes per big step.
const DEFAULT_STEPS: Record<string, number> = { 'res32-ch64': 2, 'res28-ch32': 3, 'res28-ch16': 4 };

/** One measured (or skipped) row of the table. */
export interface BenchRow {
  backend: string;
  config: string;
  imgPerSec?: number;
  gflops?: number;        // achieved, counting 4 forward passes per image (see stepFlopsPerImage)
  peakFraction?: number;  // gflops / PEAK_GFLOPS
  peakRssMB?: number;
  ratioToTorch?: number;  // img/s over the PyTorch peer's img/s in this run
  steps?: number;
  note?: string;
}

/** What a child process reports for one backend and configuration. */
interface ChildResult { secPerStep: number; imgPerSec: number; steps: number; maxRssMB: number; rssMB: number[]; backend: string; error?: string }

function parseFlags(argv: string[]) {
  const value = (name: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
  return {
    steps: value('--steps') ? Number(value('--steps')) : undefined,
    configs: (value('--configs') ?? Object.keys(BENCH_SHAPES).join(',')).split(',').filter(Boolean),
    backends: (value('--backends') ?? BACKENDS.join(',')).split(','),
    withCpu: argv.includes('--with-cpu'),
    memorySteps: Number(value('--memory-steps') ?? 200),
    memoryConfig: value('--memory-config') ?? 'res28-ch32',
  };
}

/** Runs this file as a child measuring one backend on one configuration; returns its JSON report. */
function runChild(backend: string, config: string, steps: number, timeoutMinutes = 30): ChildResult {
  const child = spawnSync(process.execPath, [__filename, '--child', backend, config, String(steps)], {
    encoding: 'utf8', timeout: timeoutMinutes * 60_000, maxBuffer: 64 << 20,
  });
  const line = (child.stdout ?? '').split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) {
    const why = child.error ? child.error.message : (child.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
    return { secPerStep: NaN, imgPerSec: NaN, steps: 0, maxRssMB: NaN, rssMB: [], backend, error: why || `exit ${child.status}` };
  }
  return JSON.parse(line) as ChildResult;
}

/** Child side: initialise the backend the project's way, warm up, time `steps` steps, sample RSS after each. */
async function childMain(backend: string, config: string, steps: number): Promise<void> {
  const { initBackend } = await import('../lib/backend/select');
  const { createBenchTrainer, runStep } = await import('./ect-step');
  const info = await initBackend(backend as never);
  const shape = BENCH_SHAPES[config];
  const trainer = await createBenchTrainer(shape);
  runStep(trainer);  // warm-up: oneDNN primitive creation, wasm compilation, first allocations
  const rssMB: number[] = [];
  const start = performance.now();
  for (let i = 0; i < steps; i++) {
    runStep(trainer);
    rssMB.push(process.memoryUsage().rss / 2 ** 20);
  }
  const secPerStep = (performance.now() - start) / 1000 / steps;
  const result: ChildResult = {
    secPerStep, imgPerSec: shape.batch / secPerStep, steps, backend: info.name,
    maxRssMB: process.resourceUsage().maxRSS / 1024, rssMB,
  };
  console.log(JSON.stringify(result));
}

/** Runs the PyTorch peer (from its shared path) on a configuration; null with a reason when it cannot. */
function runPeer(shape: BenchShape, steps: number): { imgPerSec: number; gflops: number; maxRssMB: number } | string {
  if (!fs.existsSync(PYTHON) || !fs.existsSync(PEER_SCRIPT)) return `${PYTHON} or ${PEER_SCRIPT} missing`;
  const args = JSON.stringify({ ...shape, steps, threads: os.cpus().length });
  // /usr/bin/time reports the peer's peak resident memory (maximum resident set size, in KiB).
  const useTime = fs.existsSync('/usr/bin/time');
  const child = useTime
    ? spawnSync('/usr/bin/time', ['-f', 'maxrss_kib=%M', PYTHON, PEER_SCRIPT, args], { encoding: 'utf8', timeout: 30 * 60_000 })
    : spawnSync(PYTHON, [PEER_SCRIPT, args], { encoding: 'utf8', timeout: 30 * 60_000 });
  const line = (child.stdout ?? '').split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) {
    const stderr = (child.stderr ?? '').trim().split('\n').filter((l) => !/Warning|warn/.test(l));
    return /No module named 'torch'/.test(child.stderr ?? '') ? 'python3-torch is not installed' : stderr.slice(-2).join(' | ');
  }
  const report = JSON.parse(line) as { img_per_s: number; gflops: number };
  const rss = /maxrss_kib=(\d+)/.exec(child.stderr ?? '');
  return { imgPerSec: report.img_per_s, gflops: report.gflops, maxRssMB: rss ? Number(rss[1]) / 1024 : NaN };
}

const fmt = (v: number | undefined, digits: number) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

/** The results as a Markdown table. */
export function markdownTable(rows: BenchRow[]): string {
  const header = '| backend | config | img/s | GFLOP/s | of fp32 peak | peak RSS (MB) | vs PyTorch | note |\n|---|---|---|---|---|---|---|---|';
  const body = rows.map((r) => `| ${r.backend} | ${r.config} | ${fmt(r.imgPerSec, 2)} | ${fmt(r.gflops, 1)} | ${r.peakFraction === undefined ? '-' : `${(100 * r.peakFraction).toFixed(1)}%`} | ${fmt(r.peakRssMB, 0)} | ${r.ratioToTorch === undefined ? '-' : `${r.ratioToTorch.toFixed(2)}x`} | ${(r.note ?? '').replace(/\|/g, '/')} |`);
  return [header, ...body].join('\n');
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const rows: BenchRow[] = [];
  const started = new Date();
  const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, load average at start ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`;
  const outDir = path.resolve(__dirname, '..', '..', 'results', 'bench');
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\..*/, '');
  let rssSeriesMB: number[] = [];
  for (const config of flags.configs) {
    const shape = BENCH_SHAPES[config];
    if (!shape) throw new Error(`unknown config '${config}'; known: ${Object.keys(BENCH_SHAPES).join(', ')}`);
    const steps = flags.steps ?? DEFAULT_STEPS[config] ?? 3;
    const flopsPerImage = 4 * forwardFlopsPerImage(benchRunConfig(shape).net);
    const peer = runPeer(shape, steps);
    const peerImgPerSec = typeof peer === 'string' ? undefined : peer.imgPerSec;
    if (typeof peer === 'string') {
      rows.push({ backend: 'pytorch (peer)', config, note: `not run: ${peer}` });
    } else {
      rows.push({
        backend: 'pytorch (peer)', config, imgPerSec: peer.imgPerSec, gflops: (peer.imgPerSec * flopsPerImage) / 1e9,
        peakFraction: (peer.imgPerSec * flopsPerImage) / 1e9 / PEAK_GFLOPS, peakRssMB: peer.maxRssMB, ratioToTorch: 1, steps,
        note: `${steps} steps after 2 warm-ups; its own count: ${peer.gflops.toFixed(1)} GFLOP/s (no attention matmuls)`,
      });
    }
    console.error(`${config}: peer ${typeof peer === 'string' ? peer : `${peer.imgPerSec.toFixed(2)} img/s`}`);
    for (const backend of flags.backends) {
      if (backend === 'cpu' && !flags.withCpu) {
        rows.push({ backend, config, note: 'skipped: ~250x slower than wasm (--with-cpu runs it)' });
        continue;
      }
      const result = runChild(backend, config, backend === 'cpu' ? 1 : steps);
      if (result.error) {
        rows.push({ backend, config, note: `no result: ${result.error.slice(0, 200)}` });
        console.error(`${config}: ${backend}: no result: ${result.error.slice(0, 200)}`);
        continue;
      }
      const gflops = (result.imgPerSec * flopsPerImage) / 1e9;
      rows.push({
        backend: result.backend, config, imgPerSec: result.imgPerSec, gflops, peakFraction: gflops / PEAK_GFLOPS,
        peakRssMB: result.maxRssMB, ratioToTorch: peerImgPerSec ? result.imgPerSec / peerImgPerSec : undefined,
        steps: result.steps, note: `${result.steps} steps after 1 warm-up`,
      });
      console.error(`${config}: ${backend} ${result.imgPerSec.toFixed(2)} img/s`);
    }
  }

  const writeReport = (memoryLine: string): string => {
    const flopsNote = 'GFLOP/s = img/s x 4 x forward FLOPs per image (lib/nn/flops.ts: convolutions, linear layers and ' +
      'attention matmuls; one step = student forward + backward (3 passes) + target forward (1 pass)), for every row ' +
      `including the peer. Fraction of peak against ${PEAK_GFLOPS} GFLOP/s (2 AVX2 cores).`;
    const report = [
      `# ECT training-step benchmark (${started.toISOString()})`, '',
      `Machine: ${machine}. Command: \`npm run bench -- ${process.argv.slice(2).join(' ')}\``, '',
      markdownTable(rows), '', flopsNote, '', memoryLine, '',
    ].join('\n');
    fs.writeFileSync(path.join(outDir, `train-step-${stamp}.md`), report);
    fs.writeFileSync(path.join(outDir, `train-step-${stamp}.json`), JSON.stringify({ started, machine, rows, memoryLine, rssSeriesMB }, null, 2));
    fs.writeFileSync(path.join(outDir, 'train-step-latest.md'), report);
    return report;
  };
  writeReport('Resident memory: measured after the table (see the next report).');  // keep the table if the long memory run dies
  let memoryLine = '';
  if (flags.memorySteps > 0) {
    const memory = runChild('onednn', flags.memoryConfig, flags.memorySteps, 120);
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
  console.log(`written to ${path.relative(process.cwd(), outDir)}/train-step-${stamp}.{md,json}`);
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const run = argv[0] === '--child' ? childMain(argv[1], argv[2], Number(argv[3])) : main();
  run.catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
