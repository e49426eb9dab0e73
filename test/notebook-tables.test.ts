/**
 * The tables and fit lists the notebooks show, made in the library so that cells only call and show: the scaling
 * study's teachers, its labelled fit sets, and the recipe table reshaped for its bar chart.
 */
import { strict as assert } from 'assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as aq from 'arquero';
import { defaultRunConfig } from '../lib/config/defaults';
import { networkPreset } from '../lib/config/network-presets';
import { notebookPaths } from '../lib/env';
import { forwardFlopsPerImage } from '../lib/nn/flops';
import { recipeBars, scalingTeacherTable, totalRunFlops, readRun } from '../lib/results';
import { fitSetOf, scalingFitSets } from '../lib/scaling';

describe('notebook tables: made in the library, shown by the cells', () => {
  let root: string;
  beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-nb-tables-')); });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('tabulates the scaling study\'s teachers: folder, cost per image, last Heun fd and pretraining compute', () => {
    const write = (name: string, channels: number, csv: string): string => {
      const dir = path.join(root, 'results', 'scaling', name);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...defaultRunConfig('pretrain'), net: { ...networkPreset('fmnist-base'), modelChannels: channels } }));
      fs.writeFileSync(path.join(dir, 'metrics.csv'), csv);
      return dir;
    };
    const header = 'iter,kimg,loss,lr,stage,img_per_s,wall_s,fd_fmnist_heun\n';
    const narrow = write('teacher-16', 16, `${header}100,6.4,0.3,0.001,0,50,10,40\n200,12.8,0.2,0.001,0,50,20,30\n300,19.2,0.2,0.001,0,50,30,\n`);
    const unevaluated = write('teacher-24', 24, `${header}100,6.4,0.3,0.001,0,50,10,\n`);
    const study = { widths: [{ width: 16, teacher: narrow, runs: [] }, { width: 24, teacher: unevaluated, runs: [] }] };
    const rows = scalingTeacherTable(study, notebookPaths('full', root)).objects() as Array<Record<string, unknown>>;
    assert.deepEqual(rows.map((r) => [r.width, r.teacher, r.teacher_kimg, r.teacher_fd_heun]),
      [[16, 'results/scaling/teacher-16', 12.8, 30], [24, 'results/scaling/teacher-24', null, null]], 'the last evaluated row, not the last row');
    const run = readRun(narrow);
    assert.equal(rows[0].forward_mflops_per_image, forwardFlopsPerImage(run.config.net) / 1e6);
    assert.ok((rows[1].forward_mflops_per_image as number) > (rows[0].forward_mflops_per_image as number), 'the wider teacher costs more per image');
    assert.equal(rows[0].pretrain_flops, totalRunFlops(run));
    assert.ok((rows[0].pretrain_flops as number) > 0);
  });

  it('fits a scaling study three ways in one labelled list, the late fit on the late budgets only', () => {
    const kimgs = [1, 2, 4, 8, 16, 32, 64];
    const points = aq.from([16, 32].flatMap((width, w) => kimgs.map((kimg) => ({
      width, kimg, train_flops: kimg * 1e12 * (w + 1), fd: 5 + 1e4 * (kimg * 1e12 * (w + 1)) ** -(0.2 + 0.1 * w),
    }))));
    const sets = scalingFitSets(points, { x: 'train_flops', y: 'fd', groupBy: ['width'], bootstrap: { samples: 20, seed: 0 } });
    assert.deepEqual(sets.map((s) => [s.key, s.model, s.span]), [['power_floor', 'power_floor', 'every budget'], ['power', 'power', 'every budget'], ['late', 'power', 'from 8 kimg']]);
    assert.equal(sets[2].label, 'power law, budgets from 8 kimg');
    assert.deepEqual(Array.from(new Set(sets[2].table.array('kimg') as number[])), [8, 16, 32, 64]);
    for (const set of sets) assert.deepEqual(set.fits.map((f) => f.group.width), [16, 32], set.key);
    assert.equal(sets[2].fits[0].fit.n, 4);
    assert.equal(sets[0].fits[0].fit.n, 7);
    // the floored law recovers the floor of 5 and the exponents; the pure law cannot
    const floored = fitSetOf(sets, 'power_floor').fits;
    assert.ok(Math.abs(floored[0].fit.qInf - 5) < 0.05 && Math.abs(floored[0].fit.b - 0.2) < 0.01, JSON.stringify(floored[0].fit));
    assert.ok(Math.abs(floored[1].fit.b - 0.3) < 0.01);
    assert.equal(fitSetOf(sets, 'power').fits[0].fit.qInf, 0);
    assert.throws(() => fitSetOf(sets.slice(0, 2), 'late'), /no 'late' fit set \(have power_floor, power\)/);
    assert.equal(scalingFitSets(points, { x: 'train_flops', y: 'fd', groupBy: ['width'], lateFraction: 1 / 4 })[2].span, 'from 16 kimg');
  });

  it('reshapes the recipe table for its bar chart: one row per variant and sampler', () => {
    const table = aq.from([
      { variant: 'base', setting: 'the base recipe', fd_fmnist_1step: 25, fd_fmnist_2step: 10, fd_fmnist_2step_reached_teacher_at_kimg: 6.4 },
      { variant: 'slow', setting: 'ect.q=256', fd_fmnist_1step: 30, fd_fmnist_2step: 12.5, fd_fmnist_2step_reached_teacher_at_kimg: 'not reached' },
    ]);
    const bars = recipeBars(table).objects() as Array<Record<string, unknown>>;
    assert.deepEqual(bars.map((r) => [r.variant, r.sampler, r.fd_fmnist]),
      [['base', 'fd_fmnist_1step', 25], ['base', 'fd_fmnist_2step', 10], ['slow', 'fd_fmnist_1step', 30], ['slow', 'fd_fmnist_2step', 12.5]]);
    assert.equal(bars[3].setting, 'ect.q=256');
    assert.throws(() => recipeBars(table.select('variant', 'fd_fmnist_1step')), /recipeBars: need one family with _1step and _2step columns, found 0/);
  });
});
