/**
 * Seeded randomness. Every random draw of a run is a pure function of (run seed, index, purpose), where the
 * index is the training iteration (or the epoch, or the image), so a resumed run redraws the same numbers and
 * the same checkpoint is evaluated on the same noise wherever it is evaluated.
 */
import seedrandom from 'seedrandom';

/**
 * What a draw is for; one name per stream, so two purposes never share numbers. `sample-noise-K` is the
 * noise of sampler step K (0: the initial x = sigma_max z; K >= 1: the fresh noise of the K-th consistency step).
 */
export type DrawPurpose =
  | 'edm-sigma' | 'edm-noise'        // EDM pretraining: noise levels and noise (per iteration)
  | 'ect-t' | 'ect-noise'            // ECT tuning: times t and the shared noise (per iteration)
  | 'dropout'                        // dropout masks of a training step, in either loss (per iteration)
  | 'label-dropout'                  // which images' class labels a training step drops (per iteration)
  | 'batch-order' | 'flip'           // the batch loader: each epoch's order and flips (per epoch)
  | 'classifier-init'                // the Fashion-MNIST classifier's initial weights (per parameter)
  | 'classifier-order'               // the order of its training images (per epoch)
  | `sample-noise-${number}`         // sampling and evaluation noise (per image)
  | 'sample-class';                  // the class of a conditional model's image when none is asked for (per image)

/**
 * The seed of one draw: FNV-1a over (run seed, index, purpose), a 31-bit integer that is never 0. Every
 * seed handed to tfjs comes from here: tfjs treats a seed of 0 as "unseeded" and draws differently each run.
 */
export function drawSeed(runSeed: number, index: number, purpose: DrawPurpose): number {
  let hash = 0x811c9dc5;
  for (const ch of `${runSeed}:${index}:${purpose}`) {
    hash ^= ch.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return (hash & 0x7fffffff) || 1;
}

/** A 32-bit integer hash with full avalanche (MurmurHash3's finaliser), as an unsigned number. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The i-th number of a counter-based uniform stream in [0, 1): independent of how many were drawn before, so
 * dropout units and image flips are drawn by index (one hash per number, the same on every backend).
 */
export function hashUniform(seed: number, i: number): number {
  return mix32((Math.imul(i, 0x9e3779b1) + mix32(seed)) | 0) / 4294967296;
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

/**
 * Standard normal noise for images start .. start+count-1 (each `size` values, concatenated): image i's
 * noise depends only on (seed, i, purpose), so neither the batch size nor the first image changes it.
 */
export function imageNoise(seed: number, purpose: DrawPurpose, start: number, count: number, size: number): Float32Array {
  const out = new Float32Array(count * size);
  for (let k = 0; k < count; k++) out.set(normalSamples(drawSeed(seed, start + k, purpose), size), k * size);
  return out;
}

/**
 * A seeded permutation of 0..n-1: Fisher-Yates with the mulberry32 generator (small, fast, reproducible).
 * The one shuffle of the project: batch order, the classifier's epochs, KID subsets and kept feature rows.
 * (The committed Fashion-MNIST classifier was trained with exactly this permutation; do not change it.)
 */
export function seededPermutation(n: number, seed: number): Uint32Array {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const swap = order[i];
    order[i] = order[j];
    order[j] = swap;
  }
  return order;
}
