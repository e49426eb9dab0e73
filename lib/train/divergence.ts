/**
 * The divergence rule (cfg.divergenceFactor): a run whose loss grows by orders of magnitude while staying finite
 * is stopped, instead of training on and exiting as if all were well.
 */

/** Steps per block of the rule: it compares block means, since single ECT losses vary tenfold from batch to batch. */
export const DIVERGENCE_WINDOW = 50;

/** A block of steps and its mean loss. */
interface Block { mean: number; from: number; to: number }

/**
 * Watches a session's losses in blocks of `window` steps: a block whose mean exceeds `factor` times the lowest
 * block mean so far is a divergence. Healthy runs stay within 2x of their lowest block (the shipped runs: at most
 * 1.8x); a learning rate far too high grows the loss 10^4-fold. Non-finite losses are left to the non-finite rule.
 */
export class DivergenceWatch {
  private sum = 0;
  private count = 0;
  private from = 0;
  private lowest: Block | null = null;

  constructor(readonly factor: number, readonly window = DIVERGENCE_WINDOW) {}

  /** Adds the loss of step `iteration`; returns what diverged when the block it ends did, else null. */
  add(iteration: number, loss: number): string | null {
    if (!(this.factor > 0) || !Number.isFinite(loss)) return null;
    if (this.count === 0) this.from = iteration;
    this.sum += loss;
    this.count += 1;
    if (this.count < this.window) return null;
    const block: Block = { mean: this.sum / this.count, from: this.from, to: iteration };
    this.sum = 0;
    this.count = 0;
    const lowest = this.lowest;
    if (lowest && block.mean > this.factor * lowest.mean) {
      return `the mean loss of iterations ${block.from}-${block.to} is ${block.mean.toPrecision(4)}, ` +
        `${(block.mean / lowest.mean).toPrecision(3)} times its lowest (${lowest.mean.toPrecision(4)} over iterations ${lowest.from}-${lowest.to}), ` +
        `more than divergenceFactor ${this.factor}`;
    }
    if (lowest === null || block.mean < lowest.mean) this.lowest = block;
    return null;
  }
}
