/**
 * Tests of the selection protocol: choices come from validation scores only, the test split is scored once for what
 * was chosen and for the last checkpoint, and `ect select` on a small Fashion-MNIST run writes records that agree
 * with evaluating the same checkpoints directly.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chooseLowest, runSelection, type Candidate, type ScoringReference, type Scored } from '../lib/select/protocol';
import { chosenTwoStepMidT, selectForRun } from '../lib/select/run-selection';
import { trainRun } from '../lib/train/launch';
import { disposeModel, loadRunModel, samplerModelOf } from '../lib/runs/model';
import { createRunEvaluator } from '../lib/metrics/evaluate';
import { readEvaluationTable } from '../lib/results/headline';
import { requireSystemPart, tinyRunSpec, TINY_NET, useTestBackend } from './helpers';

const validation: ScoringReference = { split: 'train', seed: 1, n: 100 };
const test: ScoringReference = { split: 'test', seed: 0, n: 1000 };

function candidate(name: string, steps: 1 | 2, midT: number | null = null): Candidate {
  return { name, checkpoint: `${name}.ckpt`, sigmaRel: null, steps, midT };
}

describe('selection protocol', () => {
  it('chooses the lowest validation fd per sampler and scores only the choice and the last checkpoint on test', async () => {
    const candidates = [candidate('a', 1), candidate('a', 2, 1), candidate('a', 2, 3), candidate('b', 1), candidate('b', 2, 1), candidate('b', 2, 3)];
    const last = [candidate('last', 1), candidate('last', 2, 0.8)];
    // validation prefers b at 1 step and (a, t_mid 3) at 2 steps; test would prefer others, which must not matter
    const validationFd: Record<string, number> = { 'a1-': 9, 'a2-1': 7, 'a2-3': 5, 'b1-': 8, 'b2-1': 6, 'b2-3': 6.5 };
    const calls: Array<{ key: string; split: string }> = [];
    const result = await runSelection({ candidates, last, validation, test }, async (c, reference) => {
      const key = `${c.name}${c.steps}-${c.midT ?? ''}`;
      calls.push({ key, split: reference.split });
      const fd = reference.split === 'train' ? validationFd[key] : 100 - (validationFd[key] ?? 50);
      return { fd, metrics: { fd_fmnist_x: fd } };
    });
    assert.equal(result.chosen['1step']!.candidate.name, 'b');
    assert.deepEqual([result.chosen['2step']!.candidate.name, result.chosen['2step']!.candidate.midT], ['a', 3]);
    // every candidate once on validation, before any test score; then exactly 2 chosen + 2 last on test
    assert.deepEqual(calls.slice(0, 6).map((c) => c.split), Array(6).fill('train'));
    assert.deepEqual(calls.slice(6), [{ key: 'b1-', split: 'test' }, { key: 'a2-3', split: 'test' }, { key: 'last1-', split: 'test' }, { key: 'last2-0.8', split: 'test' }]);
    assert.deepEqual(result.test.map((s) => s.role), ['chosen', 'chosen', 'last', 'last']);
    assert.match(result.rule, /lowest fd on validation \(100 samples of noise seed 1 against the train split\).*t_mid 1, 3.*scored once on test \(1000 samples of noise seed 0/);
  });

  it('refuses a validation reference on the test split or on the test noise', async () => {
    const score = async () => ({ fd: 1, metrics: {} });
    const spec = { candidates: [candidate('a', 1)], last: [] as Candidate[], test };
    await assert.rejects(runSelection({ ...spec, validation: { ...validation, split: 'test' } }, score), /must not be the test split/);
    await assert.rejects(runSelection({ ...spec, validation: { ...validation, seed: 0 } }, score), /same noise seed 0/);
  });

  it('breaks ties by the order of the candidates', () => {
    const scores: Scored[] = [candidate('x', 1), candidate('y', 1)].map((c) => ({ candidate: c, reference: validation, fd: 2, metrics: {} }));
    assert.equal(chooseLowest(scores, 1)!.candidate.name, 'x');
    assert.equal(chooseLowest(scores, 2), null);
  });
});

describe('ect select on a run', function () {
  let root: string;
  before(async function () {
    requireSystemPart(this, 'dataset');
    await useTestBackend();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-select-'));
  });
  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('reconstructs post-hoc EMAs, scores on validation, and records test scores equal to direct evaluations', async () => {
    const out = path.join(root, 'run');
    await trainRun(tinyRunSpec('tune', out, {
      net: { ...TINY_NET, resolution: 28 }, data: { name: 'fashion-mnist', flip: false, limit: 256 }, iters: 6, ckptEvery: 3,
      ema: { beta: null, sigmaRel: 0.1, posthoc: { sigmaRels: [0.05, 0.1], snapshotEvery: 2 } }, ect: { stageIters: 3, midT: [0.821] },
    }, { fromScratch: true }));
    assert.deepEqual(fs.readdirSync(path.join(out, 'posthoc')).sort(), ['snapshot-000000002.ckpt', 'snapshot-000000004.ckpt', 'snapshot-000000006.ckpt']);
    const outcome = await selectForRun({ runDir: out, sigmaRels: [0.07], midTs: [0.5, 2], validationN: 24, testN: 24, referenceLimit: 400, batch: 12 });
    // two checkpoints (the run's EMA, post-hoc 0.07) x (1 step, 2 steps at two t_mid) on validation
    const table = readEvaluationTable(outcome.validationTable);
    assert.equal(table.length, 6);
    assert.ok(table.every((r) => r.split === 'train' && Number(r.seed) === 1));
    const lowest = (steps: number) => Math.min(...outcome.result.validation.filter((v) => v.candidate.steps === steps).map((v) => v.fd));
    assert.deepEqual(table.map((r) => Number(r.fd)), outcome.result.validation.map((v) => Number(v.fd.toPrecision(7))));
    assert.equal(outcome.result.chosen['1step']!.fd, lowest(1));
    assert.equal(outcome.result.chosen['2step']!.fd, lowest(2));
    const rows = readEvaluationTable(outcome.evaluations);
    assert.deepEqual(rows.map((r) => String(r.chosen_by).startsWith('validation')), [true, true, false, false]);
    assert.ok(rows.every((r) => r.split === 'test' && Number(r.seed) === 0 && Number(r.n) === 24));
    // the last checkpoint's 1-step test score is what evaluating it directly on the test split gives
    const model = await loadRunModel(out);
    const evaluator = (await createRunEvaluator(model.config, { referenceSplit: 'test', referenceLimit: 400, batch: 12 }))!;
    try {
      const direct = await evaluator.evaluate(samplerModelOf(model), 1, { n: 24, seed: 0 });
      assert.equal(Number(rows[2].fd), Number(direct.fd_fmnist_1step.toPrecision(7)));  // tables keep 7 digits
      assert.equal(outcome.result.test[2].fd, direct.fd_fmnist_1step);
    } finally {
      evaluator.dispose();
      disposeModel(model);
    }
    const record = JSON.parse(fs.readFileSync(outcome.record, 'utf8')) as { rule: string; chosen: Record<string, { checkpoint: string }> };
    assert.match(record.rule, /sigma_rel|EMA width/);
    assert.ok(!path.isAbsolute(record.chosen['1step'].checkpoint));
    // the page exporter's default t_mid: the chosen one for the chosen 2-step checkpoint, none for another checkpoint
    const chosen2 = outcome.result.chosen['2step']!.candidate;
    assert.equal(chosenTwoStepMidT(chosen2.checkpoint), chosen2.midT);
    const other = [outcome.posthocCheckpoints[0], (await import('../lib/runs/model')).resolveCheckpointFile(out)].find((file) => path.resolve(file) !== path.resolve(chosen2.checkpoint))!;
    assert.equal(chosenTwoStepMidT(other), null);
    // the training point chosen too: post-hoc EMAs at an earlier snapshot are candidates beside the last ones
    const early = await selectForRun({ runDir: out, sigmaRels: [0.07], iterations: [4, 6], midTs: [1], validationN: 12, testN: 12, referenceLimit: 400, batch: 12 });
    assert.deepEqual(early.result.validation.map((v) => `${v.candidate.name}/${v.candidate.steps}`),
      ['run EMA/1', 'run EMA/2', 'post-hoc EMA sigma_rel 0.07 at iteration 4/1', 'post-hoc EMA sigma_rel 0.07 at iteration 4/2', 'post-hoc EMA sigma_rel 0.07/1', 'post-hoc EMA sigma_rel 0.07/2']);
    assert.ok(early.posthocCheckpoints[0].endsWith('sigma-0.0700-iter-000000004.ckpt'), early.posthocCheckpoints[0]);
    await assert.rejects(selectForRun({ runDir: out, sigmaRels: [0.07], iterations: [5], midTs: [1], validationN: 12, testN: 12, referenceLimit: 400 }),
      /--iterations 5: .* has no snapshot there \(snapshots at 2, 4, 6\)/);
    // an earlier point of the run, as a run still training would be selected: candidates and the reference reconstructed there
    const endRecord = fs.readFileSync(outcome.record, 'utf8');
    const rowsBefore = readEvaluationTable(outcome.evaluations).length;
    const point = await selectForRun({ runDir: out, sigmaRels: [0.07], at: 4, midTs: [1], validationN: 12, testN: 12, referenceLimit: 400, batch: 12 });
    assert.deepEqual(point.result.validation.map((v) => `${v.candidate.name}/${v.candidate.steps}`), ['post-hoc EMA sigma_rel 0.07/1', 'post-hoc EMA sigma_rel 0.07/2']);
    assert.equal(point.record, path.join(out, 'selection', 'iter-000000004', 'selection.json'));
    assert.match(point.result.rule, /beside the run's own EMA width 0\.1 at iteration 4 with its t_mid 0\.821$/);
    assert.equal(fs.readFileSync(outcome.record, 'utf8'), endRecord, 'the selection at the run\'s end is kept');
    const pointRows = readEvaluationTable(outcome.evaluations).slice(rowsBefore);
    assert.deepEqual(pointRows.map((r) => [Number(r.iter), r.chosen_by]), [
      [4, 'validation (selection/iter-000000004/selection.json)'], [4, 'validation (selection/iter-000000004/selection.json)'],
      [4, 'run EMA width and t_mid at iteration 4 (no choice)'], [4, 'run EMA width and t_mid at iteration 4 (no choice)']]);
    // the reference is the run's own width (0.1) at that point, with its own t_mid
    assert.ok(pointRows.slice(2).every((r) => String(r.checkpoint) === 'posthoc-ema/sigma-0.1000-iter-000000004.ckpt' && Number(r.sigma_rel) === 0.1));
    assert.equal(Number(pointRows[3].mid_t), 0.821);
    assert.equal(chosenTwoStepMidT(point.result.chosen['2step']!.candidate.checkpoint), 1);
    await assert.rejects(selectForRun({ runDir: out, sigmaRels: [0.07], at: 5, midTs: [1], validationN: 12, testN: 12, referenceLimit: 400 }),
      /--at 5: .* has no snapshot there \(snapshots at 2, 4, 6\)/);
    await assert.rejects(selectForRun({ runDir: out, sigmaRels: [0.07], at: 4, iterations: [4], midTs: [1], validationN: 12, testN: 12, referenceLimit: 400 }),
      /either --at .* or --iterations/);
    // the reconstructed EMA is a checkpoint like any other
    const posthoc = await loadRunModel(outcome.posthocCheckpoints[0]);
    assert.equal(posthoc.iteration, 6);
    disposeModel(posthoc);
  });
});
