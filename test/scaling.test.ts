/** Tests of the scaling-law fits: known exponents recovered from noisy synthetic data, intervals that cover them. */
import { strict as assert } from 'assert';
import * as aq from 'arquero';
import seedrandom from 'seedrandom';
import {
  fitScalingLaw, levenbergMarquardt, predictQuality,
  fitScalingGroups, fitScalingTable, scalingCurveTable, predictTable, residualTable,
} from '../lib/scaling';

/** Gaussian noise by Box-Muller from a seeded uniform generator. */
function gaussian(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** Log-spaced compute from 1e15 to 1e19 FLOPs, the range a small-to-medium study covers. */
function computeGrid(points: number): number[] {
  return Array.from({ length: points }, (_, i) => 10 ** (15 + (4 * i) / (points - 1)));
}

describe('Levenberg-Marquardt solver', () => {
  it('finds the minimum of the Rosenbrock function written as least squares', () => {
    // r1 = 10 (y - x^2), r2 = 1 - x: minimum at (1, 1) with zero error, from a far start
    const solution = levenbergMarquardt({
      residuals: ([x, y]) => [10 * (y - x * x), 1 - x],
      jacobian: ([x]) => [[-20 * x, 10], [-1, 0]],
    }, [-1.2, 1]);
    assert.ok(solution.converged);
    assert.ok(Math.abs(solution.params[0] - 1) < 1e-6 && Math.abs(solution.params[1] - 1) < 1e-6, `${solution.params}`);
  });

  it('stops where the Jacobian is not finite, keeping the start', () => {
    const solution = levenbergMarquardt({ residuals: ([x]) => [x - 1], jacobian: () => [[NaN]] }, [3]);
    assert.deepEqual(solution, { params: [3], sumSquares: 4, iterations: 1, converged: false });
  });
});

describe('pure power law fit', () => {
  it('recovers the exponent and amplitude of exact data, R^2 = 1', () => {
    const compute = computeGrid(8);
    const quality = compute.map((c) => 3e6 * c ** -0.35);
    const fit = fitScalingLaw(compute, quality, 'power');
    assert.ok(Math.abs(fit.b - 0.35) < 1e-9);
    assert.ok(Math.abs(fit.logA - Math.log(3e6)) < 1e-6);
    assert.ok(Math.abs(fit.r2 - 1) < 1e-12);
    assert.equal(fit.r2Space, 'log');
    assert.ok(Math.abs(predictQuality(fit, 1e20) - 3e6 * 1e20 ** -0.35) < 1e-9 * 3e6 * 1e20 ** -0.35);
  });

  it('recovers the exponent from noisy data, and the 95% interval covers the truth in most repeats', () => {
    const trueB = 0.3;
    let covered = 0;
    const repeats = 20;
    for (let rep = 0; rep < repeats; rep++) {
      const random = seedrandom(`power-${rep}`);
      const compute = computeGrid(20);
      const quality = compute.map((c) => 5e5 * c ** -trueB * Math.exp(0.05 * gaussian(random)));
      const fit = fitScalingLaw(compute, quality, 'power', { samples: 400, level: 0.95, seed: rep });
      assert.ok(Math.abs(fit.b - trueB) < 0.05, `b = ${fit.b}`);
      assert.ok(fit.bootstrap!.bLow < fit.b && fit.b < fit.bootstrap!.bHigh);
      if (fit.bootstrap!.bLow <= trueB && trueB <= fit.bootstrap!.bHigh) covered++;
    }
    // a 95% interval misses about 1 in 20; case-resampling with 20 points runs a little narrow
    assert.ok(covered >= 16, `covered ${covered} of ${repeats}`);
  });

  it('rejects non-positive quality and too few points with clear errors', () => {
    assert.throws(() => fitScalingLaw([1, 2, 3], [1, 0, 2], 'power'), /quality\[1\] = 0/);
    assert.throws(() => fitScalingLaw([1, 1, 1], [1, 2, 3], 'power'), /at least 2 distinct compute/);
    assert.throws(() => fitScalingLaw([1, -2], [1, 2], 'power'), /compute\[1\] = -2/);
  });
});

describe('power law with an irreducible floor', () => {
  it('recovers exponent, floor and amplitude of exact data', () => {
    const compute = computeGrid(10);
    const quality = compute.map((c) => 2e4 * c ** -0.28 + 2.5);
    const fit = fitScalingLaw(compute, quality, 'power_floor');
    assert.ok(Math.abs(fit.b - 0.28) < 1e-4, `b = ${fit.b}`);
    assert.ok(Math.abs(fit.qInf - 2.5) < 1e-3, `qInf = ${fit.qInf}`);
    assert.ok(Math.abs(fit.logA - Math.log(2e4)) < 1e-2, `logA = ${fit.logA}`);
    assert.equal(fit.r2Space, 'log');
    assert.ok(fit.r2 > 0.999999);
    const linear = fitScalingLaw(compute, quality, 'power_floor', undefined, { space: 'linear' });
    assert.equal(linear.r2Space, 'linear');
    assert.ok(Math.abs(linear.b - 0.28) < 1e-4 && Math.abs(linear.qInf - 2.5) < 1e-3, `linear: b ${linear.b}, qInf ${linear.qInf}`);
  });

  it('fits in log space so the late, small values count: relative misses of the last points stay small', () => {
    // quality over three decades with a few percent of multiplicative noise, as an fd curve
    const compute = computeGrid(12);
    const wiggle = [1.05, 0.96, 1.03, 0.97, 1.04, 0.95, 1.02, 0.98, 1.05, 0.96, 1.03, 0.97];
    const quality = compute.map((c, i) => (1e11 * c ** -0.6 + 0.5) * wiggle[i]);
    const worstLate = (space: 'log' | 'linear') => {
      const fit = fitScalingLaw(compute, quality, 'power_floor', undefined, { space });
      return Math.max(...quality.slice(-4).map((q, i) => Math.abs(Math.log(fit.fitted[quality.length - 4 + i] / q))));
    };
    assert.ok(worstLate('log') < 0.1, `log space misses a late point by ${worstLate('log')}`);
    assert.ok(worstLate('log') <= worstLate('linear'), `log ${worstLate('log')} vs linear ${worstLate('linear')}`);
  });

  it('recovers the exponent from noisy data and its interval covers the truth in most repeats', () => {
    const trueB = 0.4;
    const trueFloor = 3;
    let covered = 0;
    const repeats = 20;
    for (let rep = 0; rep < repeats; rep++) {
      const random = seedrandom(`floor-${rep}`);
      const compute = computeGrid(20);
      // multiplicative noise of 2% on the measured quality
      const quality = compute.map((c) => (1e7 * c ** -trueB + trueFloor) * (1 + 0.02 * gaussian(random)));
      const fit = fitScalingLaw(compute, quality, 'power_floor', { samples: 300, level: 0.95, seed: rep });
      assert.ok(Math.abs(fit.b - trueB) < 0.1, `b = ${fit.b}`);
      assert.ok(Math.abs(fit.qInf - trueFloor) < 1, `qInf = ${fit.qInf}`);
      if (fit.bootstrap!.bLow <= trueB && trueB <= fit.bootstrap!.bHigh) covered++;
    }
    assert.ok(covered >= 16, `covered ${covered} of ${repeats}`);
  });

  it('the pure power law misfits floored data more than the floor model does', () => {
    const compute = computeGrid(12);
    const quality = compute.map((c) => 1e7 * c ** -0.4 + 3);
    const power = fitScalingLaw(compute, quality, 'power');
    const floor = fitScalingLaw(compute, quality, 'power_floor');
    // the power law must flatten its exponent to bend towards the floor
    assert.ok(power.b < 0.3, `power-law b = ${power.b}`);
    assert.ok(Math.abs(floor.b - 0.4) < 1e-3);
  });

  it('keeps the floor non-negative unless told otherwise, where the data bend the other way', () => {
    // quality falling faster and faster in log-log (as early ECT training does): the best free floor is negative
    const compute = computeGrid(10);
    const quality = compute.map((_, i) => 270 - 1.2 * i * i);
    const free = fitScalingLaw(compute, quality, 'power_floor', undefined, { nonNegativeFloor: false });
    const bounded = fitScalingLaw(compute, quality, 'power_floor');
    assert.ok(free.qInf < 0, `free floor ${free.qInf}`);
    assert.ok(bounded.qInf >= 0 && bounded.qInf < 1e-3 * 270, `bounded floor ${bounded.qInf}`);
    const sse = (fit: typeof free) => fit.residuals.reduce((t, r) => t + r * r, 0);
    assert.ok(sse(bounded) >= sse(free), 'the constraint can only cost fit');
    // a positive floor in the data is recovered the same either way
    const floored = compute.map((c) => 1e7 * c ** -0.4 + 3);
    assert.ok(Math.abs(fitScalingLaw(compute, floored, 'power_floor').qInf - 3) < 1e-3);
  });

  it('needs four distinct compute values', () => {
    assert.throws(() => fitScalingLaw([1, 2, 3], [3, 2, 1], 'power_floor'), /at least 4 distinct/);
  });
});

describe('scaling fits on arquero tables', () => {
  const compute = computeGrid(12);
  const rows = ['small', 'large'].flatMap((size, s) => compute.map((c, i) => ({
    size,
    train_flops: c,
    // the larger model improves faster; one row per run is missing its evaluation
    fd_1step: i === 3 ? null : 1e6 * c ** -(0.25 + 0.1 * s),
  })));
  const table = aq.from(rows);

  it('fits one law per group and returns a summary table', () => {
    const summary = fitScalingTable(table, { x: 'train_flops', y: 'fd_1step', model: 'power', groupBy: ['size'] });
    assert.equal(summary.numRows(), 2);
    const objects = summary.objects() as Array<Record<string, unknown>>;
    const bySize = Object.fromEntries(objects.map((o) => [o.size, o]));
    assert.ok(Math.abs((bySize.small.b as number) - 0.25) < 1e-9);
    assert.ok(Math.abs((bySize.large.b as number) - 0.35) < 1e-9);
    assert.equal(bySize.small.n, 11); // the missing evaluation is skipped
  });

  it('gives curve, prediction and residual tables', () => {
    const options = { x: 'train_flops', y: 'fd_1step', model: 'power' as const, groupBy: ['size'], bootstrap: { samples: 50 } };
    const fits = fitScalingGroups(table, options);
    assert.deepEqual(fits.map((f) => f.group.size), ['large', 'small'], 'groups in key order');
    const small = fits.find((f) => f.group.size === 'small')!.fit;
    const curve = scalingCurveTable(small, 1e15, 1e20, 11);
    assert.equal(curve.numRows(), 11);
    const low = curve.array('low') as number[];
    const high = curve.array('high') as number[];
    const fitted = curve.array('fitted') as number[];
    fitted.forEach((f, i) => assert.ok(low[i] <= f * (1 + 1e-9) && f <= high[i] * (1 + 1e-9)));
    const prediction = predictTable(small, [1e21]).objects()[0] as Record<string, number>;
    assert.ok(Math.abs(prediction.predicted - 1e6 * 1e21 ** -0.25) < 1e-6 * prediction.predicted);
    const residuals = residualTable(table, options, fits);
    assert.equal(residuals.numRows(), 22);
    for (const r of residuals.array('residual') as number[]) assert.ok(Math.abs(r) < 1e-9);
  });

  it('names a missing column', () => {
    assert.throws(() => fitScalingTable(table, { x: 'flops', y: 'fd_1step', model: 'power' }), /no column 'flops'/);
  });
});
