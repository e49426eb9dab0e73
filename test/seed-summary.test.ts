/** Tests of the over-seeds summary: read from `ect select`'s rows, mean, spread and ratio, unlike evaluations refused. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { appendTableRow } from '../lib/train/metrics-log';
import { readSeedScores, readTeacherScore, seedScoresTable, seedSummaryMarkdown, seedSummaryTable } from '../lib/results/seed-summary';

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

  it('refuses scores on other samples than the teacher\'s, and runs without a selection', () => {
    const c = writeRun('seed2', { '1step/chosen': 6 });
    assert.throws(() => seedSummaryTable(readSeedScores(c), { fd: 2, n: 5000, seed: 0 }, {}), /10000 samples of noise seed 0, the teacher's on 5000 of seed 0/);
    fs.mkdirSync(path.join(root, 'empty'));
    assert.throws(() => readSeedScores(path.join(root, 'empty')), /evaluations\.csv: missing; `ect select/);
  });
});
