/**
 * Where a run folder stands, from its files alone: nothing to resume, interrupted (a checkpoint before its last
 * iteration), or finished; what the launcher's ensureRun, the sweeps and the notebooks decide by.
 */
import * as fs from 'node:fs';
import { checkpointsNewestFirst, readCheckpointMeta } from '../train/checkpoint';
import { readMetrics } from '../train/metrics-log';
import { readConfigJson, runPaths } from './folder';

/** Where a run directory stands: nothing to resume, interrupted (a checkpoint before its last iteration), or finished. */
export interface RunStatus { state: 'new' | 'interrupted' | 'finished'; iteration: number }

/**
 * The status of a run directory for `iters` iterations (default: its config.json's). Finished: its newest readable
 * checkpoint records that the plateau rule finished it (cfg.plateauGain), or metrics.csv logged the last iteration
 * and no older checkpoint is the newest (committed results keep no checkpoints). A plateaued run may still be
 * continued by hand with --resume.
 */
export function runStatus(runDir: string, iters?: number): RunStatus {
  // the newest checkpoint whose header reads (--resume verifies it whole, and says what it skipped)
  const paths = runPaths(runDir);
  const readable = checkpointsNewestFirst(paths.checkpoints).map(metaOrNull).find((meta) => meta !== null);
  const checkpoint = readable ?? null;
  const checkpointIter = checkpoint ? Number(checkpoint.iteration ?? 0) : 0;
  if (checkpoint?.plateau) return { state: 'finished', iteration: checkpointIter };
  const target = iters ?? (fs.existsSync(paths.config) ? readConfigJson(paths.config).iters as number | undefined : undefined);
  const { rows } = readMetrics(paths.metrics);
  const logged = rows.length ? Number(rows[rows.length - 1].iter) : 0;
  const finished = target !== undefined && logged >= target && (checkpoint === null || checkpointIter >= target);
  if (finished) return { state: 'finished', iteration: Math.max(logged, checkpointIter) };
  return checkpoint ? { state: 'interrupted', iteration: checkpointIter } : { state: 'new', iteration: 0 };
}

/** A checkpoint's metadata, or null when its header cannot be read. */
function metaOrNull(file: string): Record<string, unknown> | null {
  try {
    return readCheckpointMeta(file);
  } catch {
    return null;
  }
}
