/**
 * When a run evaluates its samples along training. Evaluations fall at budgets of `every` kimg: evenly spaced
 * (every, 2 every, 3 every, ...) when `growth` is 1, else log-spaced (every, every g, every g^2, ...), which gives
 * a scaling study a few budgets per doubling of compute from one run instead of many at its end.
 */

/** Budgets closer than this (kimg) count as reached: a budget of 2 kimg is met by 2.0000000001. */
const TOLERANCE_KIMG = 1e-9;

/** The first evaluation budget (kimg) after `kimg`, in the schedule of `every` kimg and `growth` (>= 1); Infinity when every is 0. */
export function nextEvalKimg(kimg: number, every: number, growth = 1): number {
  if (!(every > 0)) return Infinity;
  if (!(growth >= 1)) throw new RangeError(`evaluation growth must be >= 1, got ${growth}`);
  if (growth === 1) return (Math.floor(kimg / every + TOLERANCE_KIMG) + 1) * every;
  if (kimg + TOLERANCE_KIMG < every) return every;
  let n = Math.floor(Math.log(kimg / every) / Math.log(growth));
  // the logarithm can land one off either way near a budget: step to the first budget strictly above kimg
  while (n > 0 && every * growth ** n > kimg + TOLERANCE_KIMG) n -= 1;
  while (every * growth ** n <= kimg + TOLERANCE_KIMG) n += 1;
  return every * growth ** n;
}

/** Whether `kimg` has reached the budget `next` (within rounding). */
export function reachedEvalBudget(kimg: number, next: number): boolean {
  return kimg + TOLERANCE_KIMG >= next;
}

/** The budgets (kimg) of the schedule up to `maxKimg`, for plans and messages. */
export function evalBudgets(every: number, growth: number, maxKimg: number): number[] {
  const budgets: number[] = [];
  for (let next = nextEvalKimg(0, every, growth); reachedEvalBudget(maxKimg, next); next = nextEvalKimg(next, every, growth)) budgets.push(next);
  return budgets;
}
