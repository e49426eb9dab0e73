/**
 * Whether bf16 pays for the UNets' matrix products: `node dist/bench/matmul-precision.js [--repeats N]`.
 *
 * Times the addon's matrix product in float32 and in bf16 (with the conversion of both inputs, as a bf16 run
 * pays it) on the products a training step runs: the 1x1 convolutions of the decoder's skip connections and of
 * attention forward, their weight gradients (transposed A, a long inner dimension), and the small products of the
 * noise embedding. Rounds alternate the two precisions; each figure is the median over the rounds. This is the
 * measurement behind matMulPrecisionCode (lib/backend/onednn/precision.ts): matrix products stay float32 in bf16.
 */
import { loadAddon } from '../lib/backend/onednn/addon';
import { bf16Support } from '../lib/backend/onednn/precision';
import { readCpuFacts, vectorExtensions } from '../lib/machine/peak';

/** One product C = op(A) op(B): m x k times k x n, and what it is in the step. */
export interface ProductShape { m: number; k: number; n: number; transposeA: boolean; what: string }

/** The products of a res28-ch32 step (batch 64) by kind, from oneDNN's log of one step. */
export const STEP_PRODUCTS: ProductShape[] = [
  { m: 50176, k: 64, n: 64, transposeA: false, what: '1x1 convolution at 28x28, 64 -> 64 channels (forward)' },
  { m: 50176, k: 96, n: 32, transposeA: false, what: 'skip 1x1 convolution at 28x28, 96 -> 32 (forward)' },
  { m: 64, k: 50176, n: 64, transposeA: true, what: 'its weight gradient (x^T dy over 50176 pixels)' },
  { m: 12544, k: 128, n: 64, transposeA: false, what: 'skip 1x1 convolution at 14x14, 128 -> 64' },
  { m: 3136, k: 64, n: 192, transposeA: false, what: 'attention q, k, v at 7x7' },
  { m: 64, k: 128, n: 128, transposeA: false, what: 'noise embedding layer (batch 64)' },
  { m: 64, k: 128, n: 64, transposeA: false, what: 'a block\'s embedding affine map' },
];

/** Median of a list of numbers. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Median milliseconds per product in each precision (0 float32, 1 bf16), alternating, `repeats` calls per round. */
export function timeProduct(shape: ProductShape, rounds: number, repeats: number): { fp32Ms: number; bf16Ms: number } {
  const { addon, reason } = loadAddon();
  if (!addon) throw new Error(`matmul-precision needs the oneDNN addon: ${reason}`);
  const { m, k, n, transposeA } = shape;
  const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i)), b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i));
  const c = new Float32Array(m * n);
  const geometry = [1, 1, m, k, n, transposeA ? 1 : 0, 0];
  const times: number[][] = [[], []];
  for (let round = 0; round < rounds; round++) {
    for (const precision of round % 2 ? [1, 0] : [0, 1]) {
      addon.matMul(geometry, a, b, null, c, 0, 0, precision);  // warm: primitive built, caches filled
      const start = process.hrtime.bigint();
      for (let r = 0; r < repeats; r++) addon.matMul(geometry, a, b, null, c, 0, 0, precision);
      times[precision].push(Number(process.hrtime.bigint() - start) / 1e6 / repeats);
    }
  }
  return { fp32Ms: median(times[0]), bf16Ms: median(times[1]) };
}

function main(): void {
  const argv = process.argv.slice(2);
  const at = argv.indexOf('--repeats');
  const repeats = at >= 0 ? Number(argv[at + 1]) : 20;
  if (!(Number.isInteger(repeats) && repeats > 0)) throw new Error(`--repeats must be a positive integer, got '${argv[at + 1]}'`);
  const rounds = 7;
  const cpu = readCpuFacts();
  const support = bf16Support(cpu.flags);
  if (!support.ok) throw new Error(`matmul-precision compares bf16 with fp32, and ${support.reason}`);
  const { addon } = loadAddon();
  console.log(`Machine: ${cpu.modelName || 'unknown'} (family ${cpu.family}), ${cpu.logicalCpus} logical CPUs, vector extensions ${vectorExtensions(cpu)}; ` +
    `oneDNN ${addon?.version() ?? '?'}, ${addon?.threads() ?? '?'} threads, effective ISA ${addon?.effectiveIsa() ?? '?'}`);
  console.log(`Matrix products in float32 and in bf16 (inputs converted by the addon, as a bf16 step does), median of ${rounds} alternating rounds of ${repeats} calls\n`);
  console.log('| product (m x k x n) | in the step | fp32 ms | bf16 ms | fp32 / bf16 |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const shape of STEP_PRODUCTS) {
    const { fp32Ms, bf16Ms } = timeProduct(shape, rounds, repeats);
    const label = `${shape.transposeA ? `(${shape.k}x${shape.m})^T` : `${shape.m}x${shape.k}`} x ${shape.k}x${shape.n}`;
    console.log(`| ${label} | ${shape.what} | ${fp32Ms.toFixed(3)} | ${bf16Ms.toFixed(3)} | ${(fp32Ms / bf16Ms).toFixed(2)}x |`);
  }
}

if (require.main === module) {
  try {
    main();
  } catch (error) {
    console.error(`matmul-precision: ${(error as Error).message}`);
    process.exit(1);
  }
}
