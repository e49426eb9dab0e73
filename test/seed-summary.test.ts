/** Tests of the over-seeds summary: read from `ect select`'s rows, mean, spread and ratio, unlike evaluations refused. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { appendTableRow } from '../lib/train/metrics-log';
import {
  alongRunCurves, alongRunTable, readScoresAlongRun, readSeedScores, readTeacherScore, seedScoresTable, seedSummaryMarkdown, seedSummaryTable,
} from '../lib/results/seed-summary';

describe('seed summary', () => {
  let root: string;
  before(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-seeds-')); });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  function writeRun(name: string, fds: Record<string, number>): string {
    const dir = path.join(root, name);
    fs.mkdirSync(dir);
    const file = path.join(dir, 'evaluations.csv');
    // an older selection first: the newest rows of each sampler and role count
    appendTableRow(file, { candidate: 'old', sampler: '1step', mid_t: '', split: 'test', seed: 0, n: 10000, fd: 99, chosen_by: 'validation (selection/selection.json)' });
    appendTableRow(file, { checkpoint: 'x', sampler: '2step', n: 1000, fd: 5 });  // an ect eval row without chosen_by: not a selection
    for (const [key, fd] of Object.entries(fds)) {
      const [sampler, role] = key.split('/');
      appendTableRow(file, {
        candidate: 'run EMA', sampler, mid_t: sampler === '2step' ? 3 : '', split: 'test', seed: 0, n: 10000, fd,
        chosen_by: role === 'chosen' ? 'validation (selection/selection.json)' : 'last checkpoint, run EMA and t_mid (no choice)',
      });
    }
    return dir;
  }

  it('gives each sampler and role the seeds\' mean, spread and ratio to the teacher', () => {
    const a = writeRun('seed0', { '1step/chosen': 6, '2step/chosen': 3, '1step/last': 7, '2step/last': 4 });
    const b = writeRun('seed1', { '1step/chosen': 8, '2step/chosen': 5, '1step/last': 9, '2step/last': 4 });
    const scores = [...readSeedScores(a), ...readSeedScores(b)];
    assert.equal(scores.length, 8);
    const table = seedSummaryTable(scores, { fd: 2, n: 10000, seed: 0 }, { '1step': 3, '2step': 1.5 }).objects() as Array<Record<string, unknown>>;
    const row = (sampler: string, role: string) => table.find((r) => r.sampler === sampler && r.role === role)!;
    assert.equal(row('1step', 'chosen').fd_mean, 7);
    assert.ok(Math.abs((row('1step', 'chosen').fd_std as number) - Math.SQRT2) < 1e-12);
    assert.equal(row('1step', 'chosen').ratio, 3.5);
    assert.equal(row('1step', 'chosen').met, false);
    assert.equal(row('2step', 'chosen').ratio, 2);
    assert.equal(row('2step', 'last').fd_std, 0);
    assert.equal(row('2step', 'last').fd_per_seed, '4.000 / 4.000');
    const markdown = seedSummaryMarkdown(seedSummaryTable(scores, { fd: 2, n: 10000, seed: 0 }, { '1step': 3, '2step': 1.5 })).split('\n');
    assert.equal(markdown.length, 6);
    assert.match(markdown.find((line) => line.startsWith('| 1step | chosen'))!, /\| 2 \| 6\.000 \/ 8\.000 \| 7 \| 1\.41 \| 2 \| 3\.50 \| 3 \| 4 \| 3 \| false \|/);
    const perSeed = seedScoresTable(scores).objects() as Array<Record<string, unknown>>;
    assert.equal(perSeed.length, 8);
    assert.deepEqual(perSeed.find((r) => r.run === 'seed1' && r.sampler === '2step' && r.role === 'chosen'), { run: 'seed1', sampler: '2step', role: 'chosen', what: 'run EMA, t_mid 3', fd: 5 });
    const teacher = path.join(root, 'teacher.csv');
    appendTableRow(teacher, { checkpoint: 't', sampler: 'heun', n: 10000, seed: 0, fd_fmnist_heun: 2.5 });
    assert.deepEqual(readTeacherScore(teacher), { fd: 2.5, n: 10000, seed: 0 });
  });

  it('reads the scores along a run: each snapshot\'s chosen and no-choice rows once, as a table and as curves', () => {
    const dir = path.join(root, 'long');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'evaluations.csv');
    const row = (kimg: number, sampler: string, chosen: boolean, fd: number, split = 'test') => appendTableRow(file, {
      candidate: chosen ? 'post-hoc EMA sigma_rel 0.08' : 'run EMA', sampler, mid_t: sampler === '2step' ? 3 : '', split, seed: 0, n: 10000, fd, kimg,
      chosen_by: chosen ? 'validation (selection/selection.json)' : 'run EMA width and t_mid at this iteration (no choice)',
    });
    row(320, '1step', true, 9); row(320, '2step', true, 5); row(320, '1step', false, 10);
    row(160, '1step', true, 12); row(160, '2step', true, 7);
    row(320, '1step', true, 9.5);          // the selection repeated at 320 kimg: its newest row counts
    row(160, '1step', true, 1, 'validation');  // not a test row
    const scores = readScoresAlongRun(dir);
    assert.deepEqual(scores.map((s) => [s.kimg, s.sampler, s.choice, s.fd]), [
      [160, '1step', 'chosen on validation', 12], [160, '2step', 'chosen on validation', 7],
      [320, '1step', 'chosen on validation', 9.5], [320, '1step', 'run EMA, no choice', 10], [320, '2step', 'chosen on validation', 5]]);
    const table = alongRunTable(scores, { fd: 2.5, n: 10000, seed: 0 }).objects() as Array<Record<string, unknown>>;
    assert.equal(table.find((r) => r.kimg === 320 && r.sampler === '2step')!.ratio, 2);
    assert.equal(table.find((r) => r.kimg === 160 && r.sampler === '2step')!.what, 'post-hoc EMA sigma_rel 0.08, t_mid 3');
    assert.throws(() => alongRunTable(scores, { fd: 2.5, n: 1000, seed: 0 }), /at 160 kimg is on 10000 samples of noise seed 0, the teacher's on 1000/);
    const curves = alongRunCurves(scores).objects() as Array<Record<string, unknown>>;
    assert.deepEqual(curves.find((r) => r.kimg === 320 && r.choice === 'chosen on validation'), { kimg: 320, choice: 'chosen on validation', fd_1step: 9.5, fd_2step: 5 });
    assert.deepEqual(curves.find((r) => r.kimg === 320 && r.choice === 'run EMA, no choice'), { kimg: 320, choice: 'run EMA, no choice', fd_1step: 10, fd_2step: null });
  });

  it('refuses scores on other samples than the teacher\'s, and runs without a selection', () => {
    const c = writeRun('seed2', { '1step/chosen': 6 });
    assert.throws(() => seedSummaryTable(readSeedScores(c), { fd: 2, n: 5000, seed: 0 }, {}), /10000 samples of noise seed 0, the teacher's on 5000 of seed 0/);
    fs.mkdirSync(path.join(root, 'empty'));
    assert.throws(() => readSeedScores(path.join(root, 'empty')), /evaluations\.csv: missing; `ect select/);
  });
});
