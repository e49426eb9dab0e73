/**
 * Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", section 3
 * and appendix C.2): a run tracks power-function EMAs of a few widths and stores them as snapshots (ema.posthoc);
 * afterwards the EMA of any other width, at any snapshot's time, is a linear combination of the snapshots whose
 * averaging profiles best match the wanted one in least squares. docs/selection.md says how a width is chosen.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Matrix, solve } from 'ml-matrix';
import { posthocGroupName, powerEmaGamma } from '../train/ema';
import { disposeCheckpoint, loadCheckpoint, readCheckpointMeta, saveCheckpoint } from '../train/checkpoint';
import { runPaths, POSTHOC_DIR } from '../runs/folder';

/** One averaging profile: a power-function EMA of exponent gamma as it stands after t images. */
export interface PowerProfile {
  t: number;      // images seen
  gamma: number;  // exponent: image tau weighs (gamma + 1) tau^gamma / t^(gamma + 1)
}

/**
 * The inner product of two power-function profiles over the images: the integral over [0, min(ta, tb)] of
 * (ga + 1) tau^ga / ta^(ga + 1) * (gb + 1) tau^gb / tb^(gb + 1), computed through logarithms so large exponents
 * and image counts do not overflow.
 */
export function profileInnerProduct(a: PowerProfile, b: PowerProfile): number {
  const overlap = Math.min(a.t, b.t);
  const sum = a.gamma + b.gamma + 1;
  return Math.exp(Math.log(a.gamma + 1) + Math.log(b.gamma + 1) - Math.log(sum)
    + sum * Math.log(overlap) - (a.gamma + 1) * Math.log(a.t) - (b.gamma + 1) * Math.log(b.t));
}

/**
 * The coefficients x that make sum_i x_i snapshot_i the least-squares best match of `target`'s profile: the
 * solution of the Gram system A x = b, A_ij = <p_i, p_j>, b_i = <p_i, p_target> (through an SVD, since neighbouring
 * snapshots have nearly equal profiles).
 */
export function posthocCoefficients(snapshots: PowerProfile[], target: PowerProfile): number[] {
  if (snapshots.length === 0) throw new Error('post-hoc EMA: no snapshots to reconstruct from');
  const gram = new Matrix(snapshots.map((a) => snapshots.map((b) => profileInnerProduct(a, b))));
  const rhs = Matrix.columnVector(snapshots.map((a) => profileInnerProduct(a, target)));
  return solve(gram, rhs, true).getColumn(0);
}

/**
 * Relative L2 error of the reconstructed profile: ||sum x_i p_i - p_target|| / ||p_target||, from inner products
 * alone. Near 0: the snapshots can express the wanted EMA; large: too few snapshots, or a width far outside theirs.
 */
export function profileFitError(snapshots: PowerProfile[], coefficients: number[], target: PowerProfile): number {
  let squared = profileInnerProduct(target, target);
  snapshots.forEach((a, i) => {
    squared -= 2 * coefficients[i] * profileInnerProduct(a, target);
    snapshots.forEach((b, j) => { squared += coefficients[i] * coefficients[j] * profileInnerProduct(a, b); });
  });
  return Math.sqrt(Math.max(squared, 0) / profileInnerProduct(target, target));
}

/** One snapshot file of a run: where it is, when it was taken and which widths it holds. */
export interface SnapshotInfo {
  file: string;
  iteration: number;
  imagesSeen: number;
  sigmaRels: number[];
}

const SNAPSHOT_NAME = /^snapshot-(\d+)\.ckpt$/;

/** The post-hoc EMA snapshots of a run folder (its posthoc/), oldest first; an error saying why when there are none. */
export function listSnapshots(runDir: string): SnapshotInfo[] {
  const dir = path.join(runDir, POSTHOC_DIR);
  if (!fs.existsSync(dir)) {
    throw new Error(`${runDir}: no ${POSTHOC_DIR}/ folder of snapshots; post-hoc EMA needs a run trained with ema.posthoc (e.g. --set ema.posthoc.sigmaRels=[0.05,0.1] --set ema.posthoc.snapshotEvery=125)`);
  }
  const files = fs.readdirSync(dir).filter((name) => SNAPSHOT_NAME.test(name)).sort();
  if (files.length === 0) throw new Error(`${dir}: holds no snapshot-*.ckpt files`);
  return files.map((name) => {
    const file = path.join(dir, name);
    const meta = readCheckpointMeta(file);
    const { iteration, imagesSeen, sigmaRels } = meta as { iteration?: unknown; imagesSeen?: unknown; sigmaRels?: unknown };
    if (typeof iteration !== 'number' || typeof imagesSeen !== 'number' || !(imagesSeen > 0) || !Array.isArray(sigmaRels)) {
      throw new Error(`${file}: not a post-hoc EMA snapshot (its meta needs iteration, imagesSeen > 0 and sigmaRels)`);
    }
    return { file, iteration, imagesSeen, sigmaRels: sigmaRels as number[] };
  });
}

/** What a reconstruction used and how well its profile fits. */
export interface PosthocReconstruction {
  sigmaRel: number;
  iteration: number;         // the time it is reconstructed at (that of the last snapshot used)
  imagesSeen: number;
  snapshots: number;         // snapshot files used
  profileError: number;      // profileFitError of the combination
  weights: Map<string, tf.Tensor>;  // the reconstructed EMA weights (the caller disposes them)
}

/**
 * The EMA of relative width `sigmaRel` at `iteration` (default: the last snapshot's), from the snapshots taken up
 * to then: every tracked width of every such snapshot is one term of the least-squares combination. The weights
 * are summed in float64 and stored as float32.
 */
export function reconstructPosthocEma(runDir: string, sigmaRel: number, iteration?: number): PosthocReconstruction {
  const all = listSnapshots(runDir);
  const at = iteration ?? all[all.length - 1].iteration;
  const used = all.filter((s) => s.iteration <= at);
  const last = used[used.length - 1];
  if (!last || last.iteration !== at) {
    throw new Error(`${path.join(runDir, POSTHOC_DIR)}: no snapshot at iteration ${at} (snapshots at ${all.map((s) => s.iteration).join(', ')})`);
  }
  const terms = used.flatMap((snapshot) => snapshot.sigmaRels.map((width, index) => ({ snapshot, index, profile: { t: snapshot.imagesSeen, gamma: powerEmaGamma(width) } })));
  const target = { t: last.imagesSeen, gamma: powerEmaGamma(sigmaRel) };
  const coefficients = posthocCoefficients(terms.map((term) => term.profile), target);
  const sums = new Map<string, { shape: number[]; values: Float64Array }>();
  for (const snapshot of used) {
    const ckpt = loadCheckpoint(snapshot.file);
    try {
      terms.forEach((term, k) => {
        if (term.snapshot !== snapshot) return;
        const group = ckpt.groups[posthocGroupName(term.index)];
        if (!group) throw new Error(`${snapshot.file}: lacks the group ${posthocGroupName(term.index)} its meta lists (sigma_rel ${snapshot.sigmaRels[term.index]})`);
        for (const [name, tensor] of group) {
          const values = tensor.dataSync();
          let sum = sums.get(name);
          if (!sum) {
            sum = { shape: tensor.shape, values: new Float64Array(values.length) };
            sums.set(name, sum);
          }
          if (sum.values.length !== values.length) throw new Error(`${snapshot.file}: ${name} has ${values.length} values, earlier snapshots ${sum.values.length}`);
          for (let i = 0; i < values.length; i++) sum.values[i] += coefficients[k] * values[i];
        }
      });
    } finally {
      disposeCheckpoint(ckpt);
    }
  }
  const weights = new Map<string, tf.Tensor>();
  for (const [name, { shape, values }] of sums) weights.set(name, tf.tensor(Float32Array.from(values), shape, 'float32'));
  return {
    sigmaRel, iteration: last.iteration, imagesSeen: last.imagesSeen, snapshots: used.length,
    profileError: profileFitError(terms.map((term) => term.profile), coefficients, target), weights,
  };
}

/** File name of a reconstructed EMA: posthoc-ema/sigma-0.0500-iter-000002500.ckpt in the run folder. */
export function posthocEmaPath(runDir: string, sigmaRel: number, iteration: number): string {
  return path.join(runPaths(runDir).posthocEma, `sigma-${sigmaRel.toFixed(4)}-iter-${String(iteration).padStart(9, '0')}.ckpt`);
}

/**
 * Writes a reconstruction as an EMA-only checkpoint (it samples, evaluates, exports and starts a tuning run like any
 * other; training cannot resume from it), with the run's recorded config and how it was made in its meta.
 */
export function writePosthocEma(runDir: string, rec: PosthocReconstruction, file = posthocEmaPath(runDir, rec.sigmaRel, rec.iteration)): string {
  const snapshotMeta = readCheckpointMeta(listSnapshots(runDir).find((s) => s.iteration === rec.iteration)!.file);
  saveCheckpoint(file, {
    meta: {
      format: 'ect-workbench-run', emaOnly: true, iteration: rec.iteration, imagesSeen: rec.imagesSeen, config: snapshotMeta.config,
      backend: snapshotMeta.backend ?? null,
      posthocEma: { sigmaRel: rec.sigmaRel, snapshots: rec.snapshots, profileError: rec.profileError },
    },
    groups: { ema: rec.weights },
  });
  return file;
}
