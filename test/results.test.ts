/** Tests of the run loader: tidy table from run directories, FLOPs columns, clear errors on bad runs. */
import { strict as assert } from 'assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultRunConfig } from '../lib/config/defaults';
import { networkPreset } from '../lib/config/network-presets';
import { forwardFlopsPerImage } from '../lib/nn/flops';
import {
  ensureRun, findRunDirs, frechetColumns, headlineTable, lastEvaluatedRows, metricColumns, loadRunsTable, notebookAblationPlan, notebookDemoPlan,
  notebookScalingPlan, readRun, SCALING_WIDTHS, totalRunFlops,
} from '../lib/results';
import { parseOverride, resolveRunConfig } from '../lib/config/resolve';
import { FEATURE_NAMINGS, evaluationColumns, parseMetricColumn } from '../lib/metrics/columns';
import { notebookPaths, repositoryRoot } from '../lib/env';
import { resolveRunInit } from '../lib/train/run';
import type { RunConfig } from '../lib/config/types';
import { runStatus, type RunOutcome, type RunSpec } from '../lib/train/launch';
import type { TeacherRecord } from '../lib/train/ship';

/** Writes a run directory the way the trainer does: config.json and metrics.csv. */
function writeRun(root: string, id: string, config: RunConfig & Record<string, unknown>, csv: string): string {
  const dir = path.join(root, id);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  fs.writeFileSync(path.join(dir, 'metrics.csv'), csv);
  return dir;
}

describe('results: loading runs into one table', () => {
  let root: string;
  let pretrainDir: string;
  let tuneSmall: string;
  let tuneBase: string;

  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-results-'));
    const pretrain = { ...defaultRunConfig('pretrain'), net: networkPreset('fmnist-tiny'), backend: { name: 'cpu' } };
    pretrainDir = writeRun(root, 'edm-tiny', pretrain,
      'iter,kimg,loss,lr,stage,img_per_s,wall_s\n100,12.8,0.5,0.001,0,50,256\n200,25.6,0.4,0.001,0,50,512\n');
    const tune = defaultRunConfig('tune');
    tuneSmall = writeRun(root, 'ect-small', {
      ...tune, net: networkPreset('fmnist-small'), init: path.join(pretrainDir, 'checkpoints', 'final.json'), backend: { name: 'wasm' },
    }, 'iter,kimg,loss,lr,stage,img_per_s,wall_s,fd_fmnist_1step\n10,1.28,0.3,0.0001,0,40,32,\n20,2.56,0.2,0.0001,0,40,64,41.5\n');
    tuneBase = writeRun(root, 'ect-base', { ...tune, net: networkPreset('fmnist-base'), backend: 'cpu' },
      'iter,kimg,loss,lr,stage,img_per_s,wall_s,fd_fmnist_1step,fd_fmnist_2step\n10,1.28,0.3,0.0001,0,20,64,50.1,40.2\n');
  });

  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('finds run directories under a results folder', () => {
    assert.deepEqual(findRunDirs(root).map((d) => path.basename(d)), ['ect-base', 'ect-small', 'edm-tiny']);
  });

  it('makes one tidy row per logged row with varying config, FLOPs, backend and every metric', () => {
    const table = loadRunsTable([tuneSmall, tuneBase]);
    assert.equal(table.numRows(), 3);
    const names = table.columnNames();
    for (const column of ['run_id', 'iter', 'images_seen', 'train_flops', 'pretrain_flops_included', 'wall_s', 'backend', 'loss', 'fd_fmnist_1step', 'fd_fmnist_2step']) {
      assert.ok(names.includes(column), `missing ${column} in ${names}`);
    }
    // only what differs between the two runs becomes a config column
    assert.ok(names.includes('net.modelChannels'));
    assert.ok(!names.includes('ect.q'));
    const rows = table.objects() as Array<Record<string, unknown>>;
    const small20 = rows.find((r) => r.run_id === 'ect-small' && r.iter === 20)!;
    assert.equal(small20.images_seen, 2560);
    // ECT: student forward + backward (3 forward passes) + target forward (1) per image
    const expected = forwardFlopsPerImage(networkPreset('fmnist-small')) * 4 * 2560;
    assert.equal(small20.train_flops, expected);
    assert.equal(small20.pretrain_flops_included, false);
    assert.equal(small20.backend, 'wasm');
    assert.equal(small20.fd_fmnist_1step, 41.5);
    const small10 = rows.find((r) => r.run_id === 'ect-small' && r.iter === 10)!;
    assert.equal(small10.fd_fmnist_1step, null);   // not evaluated at that iteration
    assert.equal(small10.fd_fmnist_2step, null);   // this run never evaluated 2-step
    assert.equal(rows.find((r) => r.run_id === 'ect-base')!.backend, 'cpu');
  });

  it('adds the pretraining run\'s compute when asked, and says so', () => {
    const table = loadRunsTable([tuneSmall], { includePretraining: true });
    const row = (table.objects() as Array<Record<string, unknown>>).find((r) => r.iter === 20)!;
    // EDM pretraining: forward + backward = 3 forward passes per image, 25,600 images
    const pretrainFlops = forwardFlopsPerImage(networkPreset('fmnist-tiny')) * 3 * 25600;
    assert.equal(row.pretrain_flops, pretrainFlops);
    assert.equal(row.train_flops, forwardFlopsPerImage(networkPreset('fmnist-small')) * 4 * 2560 + pretrainFlops);
    assert.equal(row.pretrain_flops_included, true);
  });

  it('finds a pretraining run recorded under another checkout\'s absolute path (committed results)', () => {
    const moved = path.join(root, 'moved');
    fs.mkdirSync(path.join(moved, 'demo'), { recursive: true });
    fs.cpSync(pretrainDir, path.join(moved, 'demo', 'teacher'), { recursive: true });
    const config = JSON.parse(fs.readFileSync(path.join(tuneSmall, 'config.json'), 'utf8'));
    writeRun(path.join(moved, 'ablations'), 'baseline', { ...config, init: '/elsewhere/checkout/results/demo/teacher/checkpoints/ckpt-000000600.ckpt' },
      fs.readFileSync(path.join(tuneSmall, 'metrics.csv'), 'utf8'));
    // (its checkpoints are not there either: committed results keep config.json and metrics.csv)
    const table = loadRunsTable([path.join(moved, 'ablations', 'baseline')], { includePretraining: true });
    assert.ok((table.array('pretrain_flops') as number[]).every((f) => f > 0));
    // a path that exists nowhere is still an error that names it
    writeRun(path.join(moved, 'ablations'), 'orphan', { ...config, init: '/elsewhere/checkout/results/nowhere/teacher' },
      fs.readFileSync(path.join(tuneSmall, 'metrics.csv'), 'utf8'));
    assert.throws(() => loadRunsTable([path.join(moved, 'ablations', 'orphan')], { includePretraining: true }), /cannot find the pretraining run of init '\/elsewhere\/checkout\/results\/nowhere\/teacher'/);
  });

  it('keeps the last evaluated row per run', () => {
    const last = lastEvaluatedRows(loadRunsTable([tuneSmall, tuneBase]), 'fd_fmnist_1step');
    assert.equal(last.numRows(), 2);
    assert.deepEqual((last.array('fd_fmnist_1step') as number[]).slice().sort(), [41.5, 50.1]);
  });

  it('finds the metric columns the evaluator declares, and the Frechet distances among them', () => {
    const table = loadRunsTable([tuneSmall, tuneBase]).derive({
      kid_std_fmnist_1step: () => 0.1, precision_fmnist_1step: () => null, fid_heun: () => 3, kid_sample: () => 0.5, not_a_metric: () => 1,
    });
    // precision has no value; loss, lr and other columns are not metrics
    assert.deepEqual(metricColumns(table), ['fd_fmnist_1step', 'fd_fmnist_2step', 'kid_std_fmnist_1step', 'fid_heun', 'kid_sample']);
    assert.deepEqual(frechetColumns(table), ['fd_fmnist_1step', 'fd_fmnist_2step', 'fid_heun']);
    // every column an evaluator writes is found, whatever its metrics (lib/metrics/columns.ts is the one list)
    for (const naming of Object.values(FEATURE_NAMINGS)) {
      for (const [metric, column] of Object.entries(evaluationColumns(naming, '2step'))) {
        assert.deepEqual(parseMetricColumn(column), { metric, features: Object.keys(FEATURE_NAMINGS).find((k) => FEATURE_NAMINGS[k as keyof typeof FEATURE_NAMINGS] === naming), label: '2step' });
      }
    }
    assert.equal(parseMetricColumn('loss'), null);
  });

  it('names the file and the problem for broken runs', () => {
    const broken = path.join(root, 'broken');
    fs.mkdirSync(broken, { recursive: true });
    assert.throws(() => readRun(broken), /broken\/config\.json: missing/);
    fs.writeFileSync(path.join(broken, 'config.json'), '{ not json');
    assert.throws(() => readRun(broken), /broken\/config\.json: not valid JSON/);
    fs.writeFileSync(path.join(broken, 'config.json'), JSON.stringify(defaultRunConfig('tune')));
    assert.throws(() => readRun(broken), /broken\/metrics\.csv: missing/);
    fs.writeFileSync(path.join(broken, 'metrics.csv'), 'iter,kimg\n1,2\n');
    assert.throws(() => readRun(broken), /metrics\.csv: missing columns loss/);
    fs.writeFileSync(path.join(broken, 'metrics.csv'), 'iter,kimg,loss,lr,stage,img_per_s,wall_s\nten,1,0,0,0,0,0\n');
    assert.throws(() => readRun(broken), /metrics\.csv: line 2: 'iter' is not a number/);
    fs.rmSync(broken, { recursive: true });
  });
});

describe('results: the notebooks\' planned runs', () => {

  it('evaluates the full-mode demo ECT run several times along training (the dynamics notebook draws them)', () => {
    const plan = notebookDemoPlan('full', notebookPaths('full', path.join(os.tmpdir(), 'ect-demo-plan')));
    const cfg = resolveRunConfig('tune', plan.student.flags.config);
    const kimg = (cfg.iters * cfg.batch) / 1000;
    assert.ok(kimg / plan.student.flags.evalEvery! >= 6, `${kimg} kimg evaluated every ${plan.student.flags.evalEvery} kimg`);
  });

  it('plans the scaling study as one teacher and one evaluated ECT run per width, each tuned from its own width', () => {
    const root = path.join(os.tmpdir(), 'ect-scaling-plan');
    const paths = notebookPaths('full', root);
    assert.deepEqual(notebookScalingPlan('small', notebookPaths('small', root), '/t'), []);
    const demoTeacher = notebookDemoPlan('full', paths).teacher.flags.out;
    const plan = notebookScalingPlan('full', paths, demoTeacher);
    const tunes = plan.filter((r) => r.kind === 'tune');
    assert.equal(tunes.length, SCALING_WIDTHS.length);
    const costs: number[] = [];
    for (const run of tunes) {
      const cfg = resolveRunConfig('tune', run.flags.config, run.flags.set.map(parseOverride));
      assert.ok(run.flags.out.startsWith(path.join(root, 'results', 'scaling')));
      assert.ok(run.flags.evalEvery! > 0 && run.flags.evalN! > 0, 'every study run is evaluated along training');
      // its teacher is planned with the same width (or is the demo teacher, whose width is the preset's 16)
      const teacher = plan.find((r) => r.flags.out === run.flags.init);
      const teacherCfg = teacher
        ? resolveRunConfig('pretrain', teacher.flags.config, teacher.flags.set.map(parseOverride))
        : resolveRunConfig('pretrain', notebookDemoPlan('full', paths).teacher.flags.config);
      if (!teacher) assert.equal(run.flags.init, demoTeacher);
      assert.equal(teacherCfg.net.modelChannels, cfg.net.modelChannels);
      assert.ok(!(teacher?.flags.out ?? '').includes(`${path.sep}scaling${path.sep}`), 'teachers stay out of the study folder');
      costs.push(forwardFlopsPerImage(cfg.net));
    }
    for (let i = 1; i < costs.length; i++) assert.ok(costs[i] > 1.5 * costs[i - 1], `wider nets cost more per image: ${costs}`);
  });
  it('finds the committed runs\' teachers where the full-mode plan puts them, from inits relative to each run', () => {
    const paths = notebookPaths('full', repositoryRoot());
    // every committed tuning run names an existing teacher relative to its own folder
    const committed = findRunDirs(paths.runs).filter((dir) => readRun(dir).config.kind === 'tune');
    assert.ok(committed.length >= 10, `committed tuning runs: ${committed.join(', ')}`);
    for (const dir of committed) {
      const { init } = readRun(dir).config;
      assert.ok(init && !path.isAbsolute(init) && !init.includes('\\'), `${dir}/config.json: init ${init} is not a POSIX path relative to the run`);
      assert.equal(runStatus(resolveRunInit(init, dir)).state, 'finished', `${dir}/config.json: init ${init} is not a finished run`);
    }
    // ... and it is the teacher the notebooks' full-mode plan trains it from
    const demo = notebookDemoPlan('full', paths);
    const teacher = demo.teacher.flags.out;
    const planned = [demo.student, ...notebookAblationPlan('full', paths, teacher), ...notebookScalingPlan('full', paths, teacher)]
      .filter((run) => run.kind === 'tune' && fs.existsSync(path.join(run.flags.out, 'config.json')));
    assert.ok(planned.length >= 10, `planned runs found committed: ${planned.map((r) => r.flags.out).join(', ')}`);
    for (const run of planned) assert.equal(resolveRunInit(readRun(run.flags.out).config.init!, run.flags.out), run.flags.init, run.flags.out);
    // the scaling study counts each width's pretraining compute
    const study = findRunDirs(path.join(paths.runs, 'scaling'));
    const rows = loadRunsTable(study, { includePretraining: true }).objects() as Array<Record<string, unknown>>;
    for (const dir of study) {
      const expected = totalRunFlops(readRun(resolveRunInit(readRun(dir).config.init!, dir)));
      const own = rows.filter((r) => r.run_id === path.basename(dir));
      assert.ok(expected > 0 && own.length > 0 && own.every((r) => r.pretrain_flops === expected && r.pretrain_flops_included === true), dir);
    }
  });

  it('plans small runs apart from results/, trains a missing run once and then reuses it', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-plan-'));
    try {
      const paths = notebookPaths('small', root);
      const plan = notebookDemoPlan('small', paths);
      assert.ok(plan.teacher.flags.out.startsWith(path.join(root, 'build')));
      assert.equal(plan.student.flags.init, plan.teacher.flags.out);
      const calls: Array<{ kind: string; resume: unknown }> = [];
      // a stand-in for the launcher's trainRun that writes a finished run directory
      const train = async ({ kind, flags }: RunSpec): Promise<RunOutcome> => {
        const out = flags.out as string;
        calls.push({ kind, resume: flags.resume });
        writeRun(path.dirname(out), path.basename(out), { ...defaultRunConfig(kind), iters: flags.iters as number },
          `iter,kimg,loss,lr,stage,img_per_s,wall_s\n${flags.iters},0.048,1,0.001,0,10,5\n`);
        return { runDir: out, iteration: flags.iters as number, stopped: false, reused: false };
      };
      assert.equal(runStatus(plan.teacher.flags.out).state, 'new');
      await ensureRun(plan.teacher, () => {}, train);
      assert.deepEqual(calls, [{ kind: 'pretrain', resume: false }]);
      assert.equal(runStatus(plan.teacher.flags.out).state, 'finished');
      assert.ok(fs.existsSync(path.join(path.dirname(plan.teacher.flags.out), 'environment.md')));
      await ensureRun(plan.teacher, () => {}, train);
      assert.equal(calls.length, 1); // finished: reused, not retrained
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('results: the headline ratios against a shipped teacher', () => {
  const teacher = {
    name: 't', training: { images: 640000, flops: 640000 * 3 * 5e8 },
    evaluations: { headline: { metric: 'fd_fmnist_heun', value: 4, n: 10000, features: 'fmnist', reference: { dataset: 'fashion-mnist', split: 'test' } } },
  } as unknown as TeacherRecord;
  const row = (sampler: string, kimg: number, fd: number, extra: Record<string, string | number> = {}) => ({
    checkpoint: `runs/x/ckpt-${kimg}.ckpt`, kimg, sampler, n: 10000, reference: 'fashion-mnist-test', features: 'fmnist', [`fd_fmnist_${sampler}`]: fd, ...extra,
  });

  it('computes the ratio to the teacher, the images and FLOPs against the teacher\'s, and whether the target is met', () => {
    const table = headlineTable(teacher, [row('2step', 64, 5.6), row('1step', 64, 12.4), row('2step', 192, 5)], 5e8).objects() as Array<Record<string, number | boolean>>;
    assert.equal(table[0].ratio, 1.4);
    assert.equal(table[0].met, true);
    assert.equal(table[0].image_share, 0.1);
    assert.ok(Math.abs((table[0].flops_share as number) - (64000 * 4) / (640000 * 3)) < 1e-12, 'ECT costs 4 passes per image, EDM 3');
    assert.equal(table[1].ratio, 3.1);
    assert.equal(table[1].met, false, '1 step: within 3x');
    assert.equal(table[2].met, false, 'more than 25% of the teacher\'s images');
  });

  it('refuses to compare unlike numbers', () => {
    assert.throws(() => headlineTable(teacher, [row('2step', 64, 5, { n: 1000 })], 5e8), /1000 images, but the teacher's fd_fmnist_heun is on 10000/);
    assert.throws(() => headlineTable(teacher, [row('2step', 64, 5, { reference: 'fashion-mnist-train' })], 5e8), /reference fashion-mnist-train, but the teacher's is fashion-mnist-test/);
    assert.throws(() => headlineTable(teacher, [row('heun', 64, 5)], 5e8), /sampler 'heun' is not one of 1step, 2step/);
  });
});
