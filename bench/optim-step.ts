/** Times one optimiser step (tfjs kernels vs the fused loop), one EMA update and a checkpoint save/load. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { OptimizerConfig } from '../lib/config/types';
import { Ema } from '../lib/train/ema';
import { UpdateKernel, createOptimizer } from '../lib/train/optim';
import { disposeCheckpoint, loadCheckpoint, saveCheckpoint } from '../lib/train/checkpoint';

const MILLION = 1e6;
const TENSOR_SIZE = 1_000_000;  // parameters per tensor
const RADAM: OptimizerConfig = { name: 'radam', lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, rampupKimg: 0 };

/** Mean milliseconds of `repeats` calls of `fn`, after one warm-up call. */
function timeMs(fn: () => void, repeats: number): number {
  fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < repeats; i++) fn();
  return Number(process.hrtime.bigint() - start) / 1e6 / repeats;
}

async function main(): Promise<void> {
  const millions = Number(process.argv[2] ?? 10);
  await tf.setBackend('cpu');
  const params = new Map<string, tf.Variable>();
  for (let i = 0; i < millions; i++) params.set(`p${i}`, tf.tidy(() => tf.variable(tf.randomNormal([TENSOR_SIZE]))));
  const grads = new Map([...params].map(([name, p]) => [name, tf.randomNormal(p.shape)] as [string, tf.Tensor]));
  const count = millions * TENSOR_SIZE / MILLION;
  console.log(`backend ${tf.getBackend()}, ${count}M float32 parameters, ${os.cpus().length} cores`);
  for (const kernel of ['tensor', 'fused'] as UpdateKernel[]) {
    const optimizer = createOptimizer(RADAM, params, kernel);
    console.log(`RAdam step (${kernel} kernel): ${timeMs(() => optimizer.apply(grads, 0), 2).toFixed(0)} ms`);
    optimizer.dispose();
  }
  for (const kernel of ['tensor', 'fused'] as UpdateKernel[]) {
    const ema = new Ema(params, { beta: 0.9999 }, undefined, kernel);
    console.log(`EMA update (${kernel} kernel): ${timeMs(() => ema.update(0, 128), 2).toFixed(0)} ms`);
    ema.dispose();
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-bench-'));
  const file = path.join(dir, 'ckpt-000000001.ckpt');
  const saveMs = timeMs(() => saveCheckpoint(file, { meta: {}, groups: { params } }), 1);
  const loadMs = timeMs(() => disposeCheckpoint(loadCheckpoint(file)), 1);
  const megabytes = fs.statSync(file).size / 2 ** 20;
  console.log(`checkpoint of ${megabytes.toFixed(0)} MiB: save ${saveMs.toFixed(0)} ms, load (with SHA-256 check) ${loadMs.toFixed(0)} ms`);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
