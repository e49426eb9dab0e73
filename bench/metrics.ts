/**
 * Benchmark of the metrics: features and fd_fmnist for 10,000 Fashion-MNIST test images, KID and
 * precision/recall on them, and the Float64 statistics and Fréchet distance of two 2048-d feature sets.
 * Run: npm run build && node dist/bench/metrics.js [--backend wasm] [--n2048 10000]
 */
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend, type BackendChoice } from '../lib/backend/select';
import { loadDataset } from '../lib/data';
import { ClassifierFeatureNetwork } from '../lib/metrics/features';
import { featureStats, frechetDistance } from '../lib/metrics/frechet';
import { kernelDistance } from '../lib/metrics/kid';
import { precisionRecall } from '../lib/metrics/precision-recall';
import { embedDataset, loadOrComputeReference } from '../lib/metrics/reference';

function flag(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] ? process.argv[index + 1] : fallback;
}

async function timed<T>(label: string, work: () => T | Promise<T>, rows: string[][]): Promise<T> {
  const started = process.hrtime.bigint();
  const result = await work();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  rows.push([label, seconds.toFixed(2)]);
  return result;
}

/** Deterministic pseudo-random features with unequal per-dimension scales (a full-rank covariance). */
function syntheticFeatures(rows: number, dim: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(rows * dim);
  for (let i = 0; i < out.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const uniform = state / 4294967296 - 0.5;
    out[i] = uniform * (1 + (i % dim) / dim) + (i % 7) * 0.01;
  }
  return out;
}

async function main(): Promise<void> {
  const backend = await initBackend(flag('backend', process.env.ECT_BACKEND ?? 'auto') as BackendChoice);
  const n2048 = Number(flag('n2048', '10000'));
  const rows: string[][] = [];
  console.log(`backend: ${describeBackend(backend)}`);

  const net = ClassifierFeatureNetwork.load();
  const train = loadDataset({ name: 'fashion-mnist', flip: false }, 'train');
  const test = loadDataset({ name: 'fashion-mnist', flip: false }, 'test');
  const lookup = await timed('reference statistics of 60,000 train images', () => loadOrComputeReference(net, train), rows);
  rows[rows.length - 1][0] += lookup.source === 'cache' ? ' (read from the cache)' : ' (computed and cached)';
  const embedded = await timed('features of 10,000 test images (classifier, penultimate layer)', () => embedDataset(net, test), rows);
  const fd = await timed('fd_fmnist of those 10,000 against the reference (from statistics)', () => frechetDistance(lookup.reference.stats, embedded.stats), rows);
  const kid = await timed('kid_fmnist, 100 subsets of 1,000', () => kernelDistance(lookup.reference.features, lookup.reference.featureRows, embedded.features, embedded.featureRows, net.dim), rows);
  const pr = await timed('precision/recall (k = 3), 10,000 x 10,000', () => precisionRecall(lookup.reference.features, lookup.reference.featureRows, embedded.features, embedded.featureRows, net.dim), rows);
  net.dispose();

  const a = syntheticFeatures(n2048, 2048, 1);
  const b = syntheticFeatures(n2048, 2048, 2);
  const statsA = await timed(`mean + Float64 covariance of ${n2048.toLocaleString('en-US')} x 2048 features`, () => featureStats(a, n2048, 2048), rows);
  const statsB = featureStats(b, n2048, 2048);
  const fd2048 = await timed('Fréchet distance of two 2048-d Gaussians (2 symmetric eigendecompositions, 2 matrix products)', () => frechetDistance(statsA, statsB), rows);

  const width = Math.max(...rows.map((r) => r[0].length));
  console.log(`\n${'step'.padEnd(width)}  seconds`);
  for (const [label, seconds] of rows) console.log(`${label.padEnd(width)}  ${seconds.padStart(7)}`);
  console.log(`\nfd_fmnist(test vs train) = ${fd.toFixed(3)}, kid_fmnist = ${kid.mean.toFixed(4)} +- ${kid.std.toFixed(4)}, ` +
    `precision = ${pr.precision.toFixed(3)}, recall = ${pr.recall.toFixed(3)}; FD of the synthetic 2048-d sets = ${fd2048.toFixed(4)}`);
  console.log(`tensors left: ${tf.memory().numTensors}`);
}

main().catch((err) => {
  console.error(`bench/metrics: ${(err as Error).message}`);
  process.exit(1);
});
