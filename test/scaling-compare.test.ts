/** The equal-compute comparison of the scaling study (lib/scaling/compare.ts) on made-up curves with a known answer. */
import { strict as assert } from 'node:assert';
import * as aq from 'arquero';
import { computeFrontier, describeEqualCompute, describeFrontier, equalComputeTable, fitScalingGroups, interpolateLogLog } from '../lib/scaling';

describe('scaling: which model is better at equal compute', () => {
  // small: q = 10 C^-0.3 on C in [1, 100]; large: q = 20 C^-0.5 on C in [4, 400]; equal at C = 2^(1/0.2) = 32
  const small = (c: number) => 10 * c ** -0.3;
  const large = (c: number) => 20 * c ** -0.5;
  const grid = (from: number, n: number) => Array.from({ length: n }, (_, i) => from * 2 ** (i / 2));
  const rows = [
    ...grid(1, 14).map((c) => ({ ch: 16, flops: c, fd: small(c) })),
    ...grid(4, 14).map((c) => ({ ch: 32, flops: c, fd: large(c) })),
    { ch: 32, flops: 8, fd: null },  // a row without an evaluation is left out
  ];
  const table = aq.from(rows);
  const options = { x: 'flops', y: 'fd', groupBy: 'ch', points: 5 };

  it('interpolates a measured curve in log-log, exactly on a power law, and not outside it', () => {
    const xs = grid(1, 5);
    const curve = { xs, ys: xs.map(small) };
    assert.ok(Math.abs(interpolateLogLog(curve, 3)! - small(3)) < 1e-12);
    assert.equal(interpolateLogLog(curve, xs[2]), small(xs[2]));
    assert.equal(interpolateLogLog(curve, 0.5), null);
    assert.equal(interpolateLogLog(curve, 100), null);
  });

  it('compares the groups on the range both measured: the small model first, the large one past the crossing', () => {
    const fits = fitScalingGroups(table, { x: 'flops', y: 'fd', model: 'power', groupBy: ['ch'], bootstrap: { samples: 100, seed: 1 } });
    const comparison = equalComputeTable(table, fits, options);
    const objects = comparison.objects() as Array<Record<string, number | boolean | null>>;
    assert.equal(objects.length, 10, 'five budgets, two groups');
    assert.ok(objects.every((r) => r.measured !== null), 'every budget, the ends too, is on every curve');
    const budgets = [...new Set(objects.map((r) => r.compute as number))];
    assert.ok(Math.abs(budgets[0] - 4) < 1e-9, 'from the later start');
    assert.ok(Math.abs(budgets[4] - 2 ** 6.5) < 1e-6, 'to the earlier end');
    for (const compute of budgets) {
      const best = objects.find((r) => r.compute === compute && r.best_measured)!;
      assert.equal(best.ch, compute < 32 ? 16 : 32, `best at ${compute}`);
      const fitted = objects.find((r) => r.compute === compute && r.best_fitted)!;
      assert.equal(fitted.ch, best.ch, 'exact power laws: the fits agree with the data');
      assert.ok(Math.abs((fitted.fitted as number) - (compute < 32 ? small : large)(compute)) < 1e-6);
    }
    // far from the crossing, noiseless data give bands that separate; the lines say who wins where
    assert.equal(objects.find((r) => r.compute === budgets[0] && r.ch === 16)!.best_fitted_clear, true);
    const lines = describeEqualCompute(comparison, 'ch', (g) => `ch${g}`);
    assert.equal(lines.length, 5);
    assert.match(lines[0], /^4\.00e\+0: measured best ch16 \(ch16 6\.6\d < ch32 10\.0\); fitted best ch16, its band clear of the others$/);
    assert.match(lines[4], /measured best ch32/);
  });

  it('refuses one group, and groups whose measured ranges do not overlap', () => {
    const one = aq.from(rows.filter((r) => r.ch === 16));
    assert.throws(() => equalComputeTable(one, [], options), /needs two groups of 'ch' or more, found 1/);
    const apart = aq.from([{ ch: 1, flops: 1, fd: 3 }, { ch: 1, flops: 2, fd: 2 }, { ch: 2, flops: 5, fd: 3 }, { ch: 2, flops: 9, fd: 1 }]);
    assert.throws(() => equalComputeTable(apart, [], options), /measured no common range of 'flops' \(the latest start, 5\.00, is past the earliest end, 2\.00\)/);
    assert.throws(() => equalComputeTable(table, [], { ...options, y: 'kid' }), /no column 'kid'/);
  });
  it('the compute frontier holds the small model below the crossing and the large one past it, and nothing dominated', () => {
    const frontier = computeFrontier(table, options);
    const rows = frontier.objects() as Array<{ ch: number; flops: number; fd: number }>;
    // the crossing of the two laws is C = 32: below it the small model's points, above it the large one's
    assert.ok(rows.every((r) => (r.flops < 32 ? r.ch === 16 : r.ch === 32)), JSON.stringify(rows));
    assert.deepEqual(rows.map((r) => r.flops), [...rows.map((r) => r.flops)].sort((p, q) => p - q));
    rows.slice(1).forEach((r, i) => assert.ok(r.fd < rows[i].fd, 'each point beats every cheaper one'));
    assert.equal(rows[0].flops, 1);
    assert.equal(rows[rows.length - 1].flops, Math.max(...rows.map((r) => r.flops)));
    const lines = describeFrontier(frontier, options);
    assert.equal(lines.length, 2);
    assert.match(lines[0], /^1\.00e\+0 to .*: ch 16 \(\d+ points\)$/);
    assert.match(lines[1], /: ch 32 \(\d+ points\)$/);
  });
});
