/** Seeded randomness: every random draw of a training step is a pure function of (run seed, iteration, stream). */
import seedrandom from 'seedrandom';

/** A 31-bit seed for one purpose ("stream") of one training step, so a resumed run redraws the same numbers. */
export function stepSeed(runSeed: number, iteration: number, stream: string): number {
  // FNV-1a over the three parts: cheap, deterministic, well spread
  let hash = 0x811c9dc5;
  for (const ch of `${runSeed}:${iteration}:${stream}`) {
    hash ^= ch.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash & 0x7fffffff;
}

/** n standard normal numbers from a seeded generator (Box-Muller). */
export function normalSamples(seed: number, n: number): Float64Array {
  const rng = seedrandom(`normal-${seed}`);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = Math.max(rng(), Number.MIN_VALUE);
    const u2 = rng();
    const radius = Math.sqrt(-2 * Math.log(u1));
    out[i] = radius * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = radius * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** n log-normal numbers: exp(mean + std * N(0, 1)). */
export function logNormalSamples(seed: number, n: number, mean: number, std: number): Float64Array {
  return normalSamples(seed, n).map((z) => Math.exp(mean + std * z));
}
