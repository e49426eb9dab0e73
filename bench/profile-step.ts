/** Where an ECT training step spends its time, kernel by kernel: `node dist/bench/profile-step.js [backend] [config]`. */
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend, type BackendChoice } from '../lib/backend/select';
import { BENCH_SHAPES, createBenchTrainer, runStep, type BenchShape } from './ect-step';

/** Milliseconds and calls per kernel name over one profiled step, largest first. */
export interface KernelTime { kernel: string; ms: number; calls: number; share: number }

/** Entries of tf.profile that are op scopes around kernels, not kernels. */
function isOpScope(name: string): boolean {
  return name.endsWith('__op') || name === 'unnamed scope';
}

/** Profiles one training step (after warm-up steps) and sums kernel times by kernel name. */
export async function profileStep(shape: BenchShape, warmupSteps = 2): Promise<{ wallMs: number; kernels: KernelTime[] }> {
  const trainer = await createBenchTrainer(shape);
  for (let i = 0; i < warmupSteps; i++) runStep(trainer);
  const start = performance.now();
  const profile = await tf.profile(() => { runStep(trainer); });
  const wallMs = performance.now() - start;
  const byName = new Map<string, { ms: number; calls: number }>();
  for (const k of profile.kernels) {
    // ops built with customGrad (fused conv/matMul, our fused kernels) appear as a scope around the kernel
    // they run: count the kernel, not the scope, so no time is counted twice
    if (isOpScope(k.name)) continue;
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const entry = byName.get(k.name) ?? { ms: 0, calls: 0 };
    entry.ms += ms;
    entry.calls += 1;
    byName.set(k.name, entry);
  }
  const total = [...byName.values()].reduce((s, e) => s + e.ms, 0);
  const kernels = [...byName].map(([kernel, e]) => ({ kernel, ms: e.ms, calls: e.calls, share: e.ms / total }))
    .sort((a, b) => b.ms - a.ms);
  trainer.net.dispose();
  return { wallMs, kernels };
}

async function main(): Promise<void> {
  const backend = process.argv[2] ?? 'onednn';
  const shapeName = process.argv[3] ?? 'res28-ch32';
  const shape = BENCH_SHAPES[shapeName];
  if (!shape) throw new Error(`unknown config ${shapeName}; known: ${Object.keys(BENCH_SHAPES).join(', ')}`);
  // the same set-up as training (wasm gets its training kernels, onednn its addon), or a clear error
  console.log(describeBackend(await initBackend(backend as BackendChoice)));
  const { wallMs, kernels } = await profileStep(shape);
  const kernelMs = kernels.reduce((s, k) => s + k.ms, 0);
  console.log(`${backend} ${shapeName}: step ${wallMs.toFixed(0)} ms wall (profiled), kernels ${kernelMs.toFixed(0)} ms`);
  for (const k of kernels.slice(0, 25)) {
    console.log(`${k.kernel.padEnd(24)} ${k.ms.toFixed(1).padStart(9)} ms ${(100 * k.share).toFixed(1).padStart(5)}% ${String(k.calls).padStart(5)} calls`);
  }
}

if (require.main === module) {
  main().catch((error) => { console.error(error instanceof Error ? error.message : error); process.exit(1); });
}
