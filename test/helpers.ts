/** Shared test fixtures: a tiny network config and a run config around it. */
import { initBackend, type BackendChoice } from '../lib/backend/select';
import '../lib/tf-gradients';
import type { NetworkConfig, RunConfig, RunKind } from '../lib/config/types';
import { resolveRunConfig } from '../lib/config/resolve';
import type { RunFlags, RunSpec } from '../lib/train/launch';

/**
 * Uses the backend the library would pick (ECT_TEST_BACKEND forces one): the oneDNN backend where it is
 * built, else wasm. The plain cpu backend's convolution gradients are too slow for a test suite.
 */
export async function useTestBackend(): Promise<void> {
  await initBackend((process.env.ECT_TEST_BACKEND as BackendChoice | undefined) ?? 'auto');
}

/** An 8x8 single-channel UNet with every kind of block (down, up, attention, skips, dropout). */
export const TINY_NET: NetworkConfig = {
  resolution: 8, imageChannels: 1, modelChannels: 8, channelMult: [1, 2], numBlocks: 1, attnResolutions: [4], dropout: 0.1, embedMult: 2,
  labelDim: 0, labelDropout: 0,
};

/** The config patch of a small run on the synthetic dataset at 8x8 (a key patched to undefined is left out). */
function tinyPatch(kind: RunKind, patch: Record<string, unknown>): Record<string, unknown> {
  const values: Record<string, unknown> = {
    name: `tiny-${kind}`, net: TINY_NET as never, data: { name: 'synthetic', flip: false }, batch: 4, iters: 6, logEvery: 1, ckptEvery: 3,
    sampleEvery: 0, evalEvery: 0, evalN: 0, ect: { stageIters: 3 }, edm: { heunSteps: 3 },
    optimizer: { lr: kind === 'pretrain' ? 2e-3 : 1e-3, rampupKimg: 0 },
    ema: kind === 'pretrain' ? { halfLifeKimg: 0.05, rampupRatio: 0.5 } : { beta: 0.9 },
    ...patch,
  };
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
}

/** A small run on the synthetic dataset at 8x8. */
export function tinyRunConfig(kind: RunKind, patch: Record<string, unknown> = {}): RunConfig {
  return resolveRunConfig(kind, undefined, [tinyPatch(kind, patch) as never]);
}

/** The same small run as a launcher spec (lib/train/launch.ts) writing to `out`; `flags` are further launcher flags. */
export function tinyRunSpec(kind: RunKind, out: string, patch: Record<string, unknown> = {}, flags: Omit<RunFlags, 'out'> = {}): RunSpec {
  return { kind, flags: { backend: process.env.ECT_TEST_BACKEND, ...flags, out, set: [tinyPatch(kind, patch) as never, ...(flags.set ?? [])] } };
}

// the project's one list of system parts (scripts/system-parts.js, plain JavaScript shared with setup and CI)
// eslint-disable-next-line @typescript-eslint/no-require-imports
const systemParts = require('../../scripts/system-parts.js') as { isPresent(name: string): boolean; missingLine(name: string): string };

/**
 * Skips the calling suite (call it in `before`) when a system part it needs is missing, printing one line
 * that names the part and the command that installs it. Under CI=true a missing part fails instead.
 */
export function requireSystemPart(context: Mocha.Context, ...names: string[]): void {
  for (const name of names) {
    if (systemParts.isPresent(name)) continue;
    const line = systemParts.missingLine(name);
    if (process.env.CI === 'true') throw new Error(`CI=true and a system part is missing: ${line}`);
    console.log(`    skipped: ${line}`);
    context.skip();
  }
}
