/** Tests of the run loader: tidy table from run directories, FLOPs columns, clear errors on bad runs. */
import { strict as assert } from 'assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as aq from 'arquero';
import { defaultRunConfig } from '../lib/config/defaults';
import { networkPreset } from '../lib/config/network-presets';
import { forwardFlopsPerImage } from '../lib/nn/flops';
import {
  ensureAblationRuns, ensurePlannedRun, findRunDirs, firstKimgReaching, frechetColumns, headlineTable, lastEvaluatedRows, lastQualityRows, metricColumns, loadRunsTable, midTTable,
  notebookAblationPlan, notebookCommittedRuns, notebookDemoPlan, notebookRecipePlan, notebookScalingPlan, NOT_REACHED, readEvaluationTable, readRun,
  recipeTable, requireCommittedDemo, requireCommittedScaling, SCALING_WIDTHS, HEADLINE_TEACHER, teacherInRunQuality, teacherMarkdown, totalRunFlops, tuningRunMarkdown,
} from '../lib/results';
import { FEATURE_NAMINGS, evaluationColumns, parseMetricColumn } from '../lib/metrics/columns';
import { notebookPaths } from '../lib/env';
import { REPOSITORY_ROOT } from '../lib/repository';
import { recordedRunInit, resolveRunInit } from '../lib/runs/folder';
import { SHIPPED_TEACHERS_DIR } from '../lib/teachers/shipped';
import { evalBudgets } from '../lib/train/eval-schedule';
import type { RunConfig } from '../lib/config/types';
import { plannedRunConfig, type RunOutcome, type RunSpec } from '../lib/train/launch';
import { runStatus } from '../lib/runs/status';
import { TEACHER_FILE, type TeacherRecord } from '../lib/teachers/record';

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

  it('keeps each run\'s last evaluated row, or its last row when it evaluated none', () => {
    const table = loadRunsTable([tuneSmall, tuneBase, pretrainDir]);
    const final = lastQualityRows(table, ['fd_fmnist_1step']).objects() as Array<Record<string, unknown>>;
    assert.deepEqual(final.map((r) => [r.run_id, r.iter, r.fd_fmnist_1step]), [['ect-small', 20, 41.5], ['ect-base', 10, 50.1], ['edm-tiny', 200, null]]);
    const evaluatedFirst = aq.from([{ run_id: 'a', iter: 1, fd: 3 }, { run_id: 'a', iter: 2, fd: null }]);
    assert.deepEqual(lastQualityRows(evaluatedFirst, ['fd']).objects(), [{ run_id: 'a', iter: 1, fd: 3 }]);
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

  it('plans the scaling study: per width one ECT run per budget over 1.5+ decades of images, every schedule relative to its run', () => {
    const root = path.join(os.tmpdir(), 'ect-scaling-plan');
    const paths = notebookPaths('full', root);
    const tunes = notebookScalingPlan(paths).filter((r) => r.kind === 'tune');
    assert.deepEqual([...new Set(tunes.map((r) => r.width))], [...SCALING_WIDTHS]);
    const costs: number[] = [];
    for (const width of SCALING_WIDTHS) {
      const runs = tunes.filter((r) => r.width === width);
      const configs = runs.map((run) => plannedRunConfig(run));
      const kimgs = configs.map((cfg) => (cfg.iters * cfg.batch) / 1000);
      assert.ok(runs.length >= 5, `width ${width}: ${runs.length} budgets`);
      assert.ok(Math.log10(Math.max(...kimgs) / Math.min(...kimgs)) >= 1.5, `width ${width}: budgets ${kimgs.join(', ')} kimg`);
      runs.forEach((run, i) => {
        const cfg = configs[i];
        assert.equal(cfg.net.modelChannels, width);
        // the run's own schedule: stages, lr decay and EMA scale with its length; evaluated once, at its end
        assert.ok(cfg.ect.stageFraction !== undefined && cfg.optimizer.decayFraction !== undefined && cfg.ema.sigmaRel !== undefined, run.flags.out);
        assert.ok(Math.abs(cfg.ect.stageIters - cfg.ect.stageFraction * cfg.iters) <= 1, `${run.flags.out}: stage of ${cfg.ect.stageIters} iterations`);
        assert.equal(cfg.optimizer.decayKimg, cfg.optimizer.decayFraction * kimgs[i]);
        assert.deepEqual(evalBudgets(cfg.evalEvery, cfg.evalGrowth, kimgs[i]), [], `${run.flags.out}: no evaluation before its end`);
        assert.equal(run.flags.out, path.join(root, 'results', 'long', 'scaling-relative', `ch${width}-${run.flags.out.split('-').pop()}`));
        assert.equal(run.flags.init, width === 32 ? path.join(SHIPPED_TEACHERS_DIR, HEADLINE_TEACHER)
          : path.join(root, 'results', 'long', 'teachers', `fmnist-edm-ch${width}`), `${run.flags.out}: its width's teacher`);
      });
      costs.push(forwardFlopsPerImage(configs[0].net));
    }
    for (let i = 1; i < costs.length; i++) assert.ok(costs[i] > 1.5 * costs[i - 1], `wider nets cost more per image: ${costs}`);
    // full mode trains nothing: an incomplete study is an error naming its runs and the command
    assert.throws(() => requireCommittedScaling(paths),
      /the scaling study \(configs\/sweeps\/scaling-relative\.json\) is not complete: results\/long\/teachers\/fmnist-edm-ch16 \(new\), results\/long\/scaling-relative\/ch16-4kimg \(new\),.*node bin\/ect\.js sweep run scaling-relative$/);
  });
  it('finds the committed runs\' teachers where the full-mode plans put them, from inits relative to each run', () => {
    const paths = notebookPaths('full', REPOSITORY_ROOT);
    // every committed tuning run names an existing teacher relative to its own folder: a finished run or a shipped teacher
    const committed = findRunDirs(paths.runs).filter((dir) => readRun(dir).config.kind === 'tune');
    assert.ok(committed.length >= 10, `committed tuning runs: ${committed.join(', ')}`);
    for (const dir of committed) {
      const { init } = readRun(dir).config;
      assert.ok(init && !path.isAbsolute(init) && !init.includes('\\'), `${dir}/config.json: init ${init} is not a POSIX path relative to the run`);
      const teacher = resolveRunInit(init, dir);
      assert.ok(fs.existsSync(path.join(teacher, TEACHER_FILE)) || runStatus(teacher).state === 'finished', `${dir}/config.json: init ${init} is neither a finished run nor a shipped teacher`);
    }
    // ... and it is the teacher the notebooks' full-mode plans tune it from
    const planned = [...notebookRecipePlan(paths).map((v) => v.run), ...notebookScalingPlan(paths)]
      .filter((run) => run.kind === 'tune' && fs.existsSync(path.join(run.flags.out, 'config.json')));
    assert.ok(planned.length >= 3, `planned runs found committed: ${planned.map((r) => r.flags.out).join(', ')}`);
    for (const run of planned) assert.equal(resolveRunInit(readRun(run.flags.out).config.init!, run.flags.out), run.flags.init, run.flags.out);
    // the archived minute-scale scaling study counts each width's pretraining compute
    const study = findRunDirs(path.join(paths.runs, 'archive', 'scaling'));
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
      const plan = notebookDemoPlan(paths);
      assert.ok(plan.teacher.flags.out.startsWith(path.join(root, 'build')));
      assert.equal(plan.student.flags.init, plan.shipped.dir);
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
      await ensurePlannedRun(plan.teacher, () => {}, train);
      assert.deepEqual(calls, [{ kind: 'pretrain', resume: false }]);
      assert.equal(runStatus(plan.teacher.flags.out).state, 'finished');
      assert.ok(fs.existsSync(path.join(path.dirname(plan.teacher.flags.out), 'environment.md')));
      await ensurePlannedRun(plan.teacher, () => {}, train);
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

describe('results: the full-mode notebooks read the Fashion-MNIST study\'s committed runs and train nothing', () => {
  let root: string;
  let paths: ReturnType<typeof notebookPaths>;
  let teachers: string;
  const heunCsv = 'iter,kimg,loss,lr,stage,img_per_s,wall_s,fd_fmnist_heun\n100,6.4,0.9,0.001,0,100,60,30\n200,12.8,0.6,0.001,0,100,120,12\n300,19.2,0.5,0.001,0,100,180,9\n';

  const teacherConfig = { ...defaultRunConfig('pretrain'), net: networkPreset('fmnist-base'), evalN: 1000, evalSplit: 'train' as const, backend: { name: 'onednn' } };

  /** The shipped teacher as ship-teacher writes it: the run's config.json (no init), metrics.csv up to the checkpoint, EMA checkpoint, teacher.json. */
  function shipTeacher(): string {
    const dir = writeRun(teachers, 'fmnist-edm-base', teacherConfig, heunCsv.split('\n').slice(0, 3).join('\n') + '\n');
    fs.mkdirSync(path.join(dir, 'checkpoints'));
    fs.writeFileSync(path.join(dir, 'checkpoints', 'ckpt-000000200.ckpt'), 'EMA weights');
    const record = { name: 'fmnist-edm-base', iteration: 200, kimg: 12.8, evaluations: { headline: { metric: 'fd_fmnist_heun', value: 10, n: 10000 } } };
    fs.writeFileSync(path.join(dir, TEACHER_FILE), JSON.stringify(record));
    return dir;
  }

  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-committed-'));
    paths = notebookPaths('full', root);
    teachers = path.join(root, 'data', 'teachers');
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('names the missing or unfinished folder and the command that makes it, then returns the teacher, its run and the headline run', () => {
    const runs = notebookCommittedRuns(paths, teachers);
    const rejects = (folder: string, command: string | RegExp) => assert.throws(() => requireCommittedDemo(paths, teachers), (err: Error) => {
      assert.ok(err.message.startsWith(`${folder}: `), err.message);
      assert.ok(typeof command === 'string' ? err.message.includes(command) : command.test(err.message), err.message);
      return true;
    });
    rejects(path.join(teachers, 'fmnist-edm-base'), 'node bin/ect.js ship-teacher --run results/long/teachers/fmnist-edm-base --name fmnist-edm-base');
    const teacher = shipTeacher();
    const teacherRun = path.join(root, 'results', 'long', 'teachers', 'fmnist-edm-base');
    assert.equal(runs.teacherRun.path, teacherRun);
    rejects(teacherRun, 'node bin/ect.js pretrain --config fmnist-edm-base --out results/long/teachers/fmnist-edm-base');
    writeRun(path.dirname(teacherRun), 'fmnist-edm-base', teacherConfig, 'iter,kimg,loss,lr,stage,img_per_s,wall_s\n100,6.4,0.9,0.001,0,100,60\n');
    rejects(teacherRun, /logged up to iteration 100, but the shipped teacher is its iteration 200.* --resume$/);
    writeRun(path.dirname(teacherRun), 'fmnist-edm-base', teacherConfig, heunCsv);
    const student = path.join(root, 'results', 'long', 'headline', 'fmnist-ect-base');
    const headline = 'node bin/ect.js tune --config fmnist-ect-base --init fmnist-edm-base --out results/long/headline/fmnist-ect-base';
    rejects(student, headline);
    const tune = { ...defaultRunConfig('tune'), net: networkPreset('fmnist-base'), iters: 20, batch: 64, evalEvery: 0.64, evalN: 1000, init: recordedRunInit(teacher, student) };
    writeRun(path.dirname(student), 'fmnist-ect-base', tune, 'iter,kimg,loss,lr,stage,img_per_s,wall_s,fd_fmnist_1step,fd_fmnist_2step\n10,0.64,0.3,0.0001,0,50,10,40,20\n');
    rejects(student, `unfinished: logged up to iteration 10 of 20 (the headline ECT run, tuned from the shipped teacher). Full mode reads committed results and trains nothing; from the repository root, make it with: ${headline} --resume`);
    fs.appendFileSync(path.join(student, 'metrics.csv'), '20,1.28,0.2,0.0001,0,50,20,30,8\n');
    rejects(student, /no checkpoint in checkpoints\//);
    fs.mkdirSync(path.join(student, 'checkpoints'));
    fs.writeFileSync(path.join(student, 'checkpoints', 'ckpt-000000020.ckpt'), 'final weights');
    assert.deepEqual(requireCommittedDemo(paths, teachers), { teacher, teacherRun, student });
  });

  it('counts the shipped teacher\'s pretraining in the headline run\'s compute, and takes its in-run quality at the shipped checkpoint', () => {
    const demo = requireCommittedDemo(paths, teachers);
    assert.ok(!path.isAbsolute(readRun(demo.student).config.init!), 'the init is recorded relative to the run');
    const table = loadRunsTable([demo.teacherRun, demo.student], { includePretraining: true });
    const rows = table.objects() as Array<Record<string, unknown>>;
    const pretraining = totalRunFlops(readRun(demo.teacher));   // the shipped teacher's rows: up to its checkpoint
    assert.ok(pretraining > 0 && pretraining < totalRunFlops(readRun(demo.teacherRun)));
    const tuned = rows.filter((r) => r.kind === 'tune');
    assert.equal(tuned.length, 2);
    for (const row of tuned) assert.ok(row.pretrain_flops === pretraining && row.pretrain_flops_included === true && (row.train_flops as number) > pretraining);
    assert.deepEqual(rows.filter((r) => r.kind === 'pretrain').map((r) => r.fd_fmnist_heun), [30, 12, 9]);
    // the teacher's line: its run's last Heun fd at or before the shipped iteration (200), not the later 9
    assert.deepEqual(teacherInRunQuality(demo, 'fd_fmnist_heun'), { metric: 'fd_fmnist_heun', value: 12, iter: 200, kimg: 12.8, n: 1000, split: 'train' });
    assert.equal(teacherInRunQuality(demo, 'fd_fmnist_1step'), null);
    // small mode: the teacher is its own run, with no teacher.json: its last value
    assert.equal(teacherInRunQuality({ ...demo, teacher: demo.teacherRun }, 'fd_fmnist_heun')!.value, 9);
  });

  it('says what the teacher and the headline run are, every number with its sample count and reference', () => {
    const demo = requireCommittedDemo(paths, teachers);
    const run = tuningRunMarkdown(readRun(demo.student));
    assert.match(run, /tuned from `fmnist-edm-base`/, 'the init as a folder, not the path relative to the run');
    assert.match(run, /10 of 20 iterations|20 of 20 iterations/);
    assert.match(run, /In-run evaluations every [0-9.]+ kimg: 1000 samples against the train images\./);
    const record = {
      name: 'fmnist-edm-base', iteration: 200, kimg: 12.8, parameters: 1.26e6,
      training: { command: 'node bin/ect.js pretrain --config fmnist-edm-base', commit: 'abc1234', machine: { cpu: 'AMD EPYC', cores: 2 }, backend: 'onednn', images: 12800, flops: 5e13, wallSeconds: 3600 },
      evaluations: { headline: { metric: 'fd_fmnist_heun', value: 4.123, n: 10000, networkEvaluations: 35, features: 'fmnist', reference: { dataset: 'fashion-mnist', split: 'test', images: 10000 } } },
    } as unknown as TeacherRecord;
    const teacher = teacherMarkdown(record, demo.teacher);
    assert.match(teacher, /1\.26M-parameter UNet, 200 iterations \(12\.8 kimg\), 5\.00e\+13 training FLOPs, 1 h on 2 cores \(AMD EPYC\)/);
    assert.match(teacher, /fd_fmnist_heun = 4\.12 on 10000 samples against the 10000 test images of fashion-mnist .*not FID/);
  });

  it('plans the recipe study\'s 11 variants from configs/sweeps/recipe.json, and names them and `sweep run recipe` while they are missing', async () => {
    const variants = notebookRecipePlan(paths, teachers);
    assert.deepEqual(variants.map((v) => v.name), ['base', 'stage-25', 'stage-125', 'q256-one-stage', 'lr-3e-4', 'lr-1e-3', 'batch-128', 'ema-0.995',
      'dropout-0', 'mapping-constant', 'weighting-snr_k']);
    const recipe = path.join(root, 'results', 'long', 'recipe');
    assert.equal(notebookCommittedRuns(paths, teachers).recipe.path, recipe);
    for (const { name, run } of variants) {
      assert.equal(run.kind, 'tune');
      assert.equal(run.flags.out, path.join(recipe, name));
      assert.equal(run.flags.init, path.join(teachers, 'fmnist-edm-base'));
    }
    const setting = Object.fromEntries(variants.map((v) => [v.name, v.setting]));
    assert.equal(setting.base, 'the base recipe');
    assert.equal(setting['stage-25'], 'ect.stageIters=25');
    assert.equal(setting['batch-128'], 'iters=125, batch=128, ect.stageIters=25');
    assert.equal(setting['lr-1e-3'], 'optimizer.lr=0.001');
    assert.deepEqual(notebookAblationPlan('full', paths, '/unused', teachers), variants);
    await assert.rejects(ensureAblationRuns('full', paths, '/unused', () => {}, teachers), (err: Error) => {
      assert.ok(err.message.startsWith(`${recipe}: 11 of its 11 runs are missing or unfinished: ${path.join(recipe, 'base')} (new)`), err.message);
      assert.ok(err.message.endsWith('make it with: node bin/ect.js sweep run recipe'), err.message);
      return true;
    });
  });

  it('tabulates each variant\'s final quality and the first kimg its 2-step fd reached the teacher\'s, comparing like with like', () => {
    const csv = 'iter,kimg,loss,lr,stage,img_per_s,wall_s,fd_fmnist_1step,fd_fmnist_2step\n50,3.2,0.3,0.0001,0,50,10,40,14\n100,6.4,0.2,0.0001,1,50,20,30,11\n150,9.6,0.2,0.0001,2,50,30,25,10\n';
    const config = { ...defaultRunConfig('tune'), net: networkPreset('fmnist-base'), evalN: 1000 };
    const fast = writeRun(path.join(root, 'variants'), 'fast', config, csv);
    const slow = writeRun(path.join(root, 'variants'), 'slow', { ...config, ect: { ...config.ect, q: 256 } }, csv.replace(/,11\n/, ',13\n').replace(/,10\n/, ',12.5\n'));
    const runs = loadRunsTable([fast, slow], { keepConfig: ['evalN', 'evalSplit'] });
    const teacher = { metric: 'fd_fmnist_heun', value: 12, iter: 200, kimg: 12.8, n: 1000, split: 'train' };
    const table = recipeTable(runs, [{ name: 'fast', setting: 'the base recipe', dir: fast }, { name: 'slow', setting: 'ect.q=256', dir: slow }], teacher);
    assert.deepEqual(table.objects(), [
      { variant: 'fast', setting: 'the base recipe', kimg: 9.6, fd_fmnist_1step: 25, fd_fmnist_2step: 10, n: 1000, split: 'train', fd_fmnist_2step_reached_teacher_at_kimg: 6.4 },
      { variant: 'slow', setting: 'ect.q=256', kimg: 9.6, fd_fmnist_1step: 25, fd_fmnist_2step: 12.5, n: 1000, split: 'train', fd_fmnist_2step_reached_teacher_at_kimg: NOT_REACHED },
    ]);
    assert.equal(firstKimgReaching([{ kimg: 2, fd: 5 }, { kimg: 1, fd: 4 }], 'fd', 5), 1);
    assert.throws(() => recipeTable(runs, [{ name: 'fast', setting: '', dir: fast }], { ...teacher, n: 10000 }),
      /evaluated on 1000 samples against the train split, the teacher's fd_fmnist_heun on 10000 against the train split: compare like with like/);
  });

  it('reads `ect eval --table` rows into the headline table', () => {
    const file = path.join(root, 'evaluations.csv');
    fs.writeFileSync(file, 'checkpoint,iter,kimg,sampler,mid_t,n,seed,reference,features,backend,seconds,fd_fmnist_1step,fd_fmnist_2step\n'
      + 'results/x/ckpt-1.ckpt,1000,64,1step,,10000,0,fashion-mnist-test,fmnist,onednn,40.8,25,\n'
      + 'results/x/ckpt-1.ckpt,1000,64,2step,0.821,10000,0,fashion-mnist-test,fmnist,onednn,60.4,,12\n');
    fs.appendFileSync(file, 'results/x/ckpt-1.ckpt,1000,64,2step,3,10000,0,fashion-mnist-test,fmnist,onednn,60.4,,15\n'
      + 'results/x/ckpt-1.ckpt,1000,64,2step,0.3,10000,0,fashion-mnist-test,fmnist,onednn,60.4,,14\n');
    assert.deepEqual(midTTable(readEvaluationTable(file)).objects().map((r) => [(r as Record<string, unknown>).mid_t, (r as Record<string, unknown>).fd_fmnist_2step]),
      [[0.3, 14], [0.821, 12], [3, 15]]);
    const rows = readEvaluationTable(file).slice(0, 2);
    assert.deepEqual(rows.map((r) => [r.sampler, r.mid_t, r.n]), [['1step', null, 10000], ['2step', 0.821, 10000]]);
    const teacher = { training: { images: 640000, flops: 1e18 }, evaluations: { headline: { metric: 'fd_fmnist_heun', value: 10, n: 10000, features: 'fmnist', reference: { dataset: 'fashion-mnist', split: 'test' } } } } as unknown as TeacherRecord;
    assert.deepEqual((headlineTable(teacher, rows, 1e8).objects() as Array<Record<string, unknown>>).map((r) => [r.sampler, r.ratio, r.met]), [['1step', 2.5, true], ['2step', 1.2, true]]);
    assert.throws(() => readEvaluationTable(path.join(root, 'none.csv')), /none\.csv: missing/);
  });
});
