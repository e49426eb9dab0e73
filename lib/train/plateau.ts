/**
 * The plateau stop rule of the Fashion-MNIST teachers: a run is finished once doubling its training images improved its quality
 * (the primary Frechet distance of its in-run evaluations) by less than a fraction, config.plateauGain.
 */

/** One in-run evaluation: thousands of training images seen, and the run's primary Frechet distance then. */
export interface Evaluation { kimg: number; fd: number }

/** What the rule found at one evaluation, with the numbers a message needs. */
export interface PlateauCheck {
  kimg: number;           // training images of the current evaluation, in thousands
  halfKimg: number;       // half of them
  fdNow: number;          // fd at kimg
  fdHalf: number;         // fd at halfKimg
  interpolated: boolean;  // fdHalf lies between two evaluations (false: one was at halfKimg exactly)
  gain: number;           // (fdHalf - fdNow) / fdHalf: the relative improvement of the last doubling
  threshold: number;      // config.plateauGain
  stop: boolean;          // gain < threshold
}

/**
 * The rule at the `current` evaluation, given the run's earlier ones (any order): fd at half the current images,
 * linear in log(kimg) between the two evaluations bracketing it (the current one may be the upper), and
 * gain = (fd_half - fd_now) / fd_half; stop when gain < threshold. Null, never a stop, when no evaluation is at
 * or before half the current images. A non-finite fd gives a NaN gain, which never stops.
 */
export function plateauCheck(history: Evaluation[], current: Evaluation, threshold: number): PlateauCheck | null {
  if (!(current.kimg > 0)) return null;
  const halfKimg = current.kimg / 2;
  const points = [...history.filter((e) => e.kimg > 0 && e.kimg < current.kimg), current].sort((a, b) => a.kimg - b.kimg);
  const below = points.filter((e) => e.kimg <= halfKimg).pop();
  if (!below) return null;
  const above = points.find((e) => e.kimg > halfKimg) as Evaluation;  // there is one: the current evaluation
  const interpolated = below.kimg < halfKimg;
  // linear in log kimg: w = (ln half - ln below) / (ln above - ln below)
  const w = interpolated ? Math.log(halfKimg / below.kimg) / Math.log(above.kimg / below.kimg) : 0;
  const fdHalf = below.fd + w * (above.fd - below.fd);
  const gain = (fdHalf - current.fd) / fdHalf;
  return { kimg: current.kimg, halfKimg, fdNow: current.fd, fdHalf, interpolated, gain, threshold, stop: gain < threshold };
}

/** The evaluations of `column` among metrics.csv rows (lib/train/metrics-log.ts readMetrics): rows where it has a finite value. */
export function evaluationsOf(rows: Array<Record<string, string>>, column: string): Evaluation[] {
  return rows
    .filter((row) => row[column] !== undefined && row[column] !== '')
    .map((row) => ({ kimg: Number(row.kimg), fd: Number(row[column]) }))
    .filter((e) => Number.isFinite(e.kimg) && Number.isFinite(e.fd));
}

/** What a checkpoint of a run finished by the rule records (its meta's `plateau`). */
export interface PlateauRecord { kimg: number; fdHalf: number; fdNow: number; gain: number; metric: string; threshold: number }

export function plateauRecord(check: PlateauCheck, metric: string): PlateauRecord {
  return { kimg: check.kimg, fdHalf: check.fdHalf, fdNow: check.fdNow, gain: check.gain, metric, threshold: check.threshold };
}

const short = (x: number) => String(Number(x.toPrecision(4)));
const percent = (x: number) => `${Number((100 * x).toPrecision(3))}%`;

/**
 * One line on a check: "plateau: fd_fmnist_heun 4.84 at 409.6 kimg vs 5.3 at 204.8 kimg (interpolated): doubling the
 * images gained 8.7% < 10%: the run is finished" (or ">= 10%: training on").
 */
export function describePlateau(check: PlateauCheck, metric: string): string {
  const verdict = check.stop ? `< ${percent(check.threshold)}: the run is finished` : `>= ${percent(check.threshold)}: training on`;
  return `plateau: ${metric} ${short(check.fdNow)} at ${short(check.kimg)} kimg vs ${short(check.fdHalf)} at ${short(check.halfKimg)} kimg` +
    `${check.interpolated ? ' (interpolated)' : ''}: doubling the images gained ${percent(check.gain)} ${verdict}`;
}
