/**
 * The notebooks' studies have one path: small mode is a miniature of full mode's study (the same files, columns and
 * comparisons), and the mode only picks which inputs are read. No test here trains, ships or scores: stand-ins do.
 */
import { strict as assert } from 'assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultRunConfig } from '../lib/config/defaults';
import { notebookPaths } from '../lib/env';
import { REPOSITORY_ROOT } from '../lib/repository';
import {
  ensureAnnealedStudy, ensureDemoRuns, ensureHeadlineEvaluations, notebookAblationPlan, notebookDemoPlan, notebookStudyResults, readManifest,
  referenceLabel, runFolderSummary, smallAnnealedPlan, teacherReferenceLine, SMALL_ANNEALED, SMALL_TEACHER,
} from '../lib/results';
import type { RunOutcome, RunSpec } from '../lib/train/launch';
import type { ShipOptions, ShippedTeacher } from '../lib/teachers/ship';

/** Writes a run folder as the trainer does (config.json, metrics.csv), finished at `iters`. */
function writeRun(dir: string, config: object, csv: string): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  fs.writeFileSync(path.join(dir, 'metrics.csv'), csv);
  return dir;
}

describe('the notebooks\' studies: small mode is a miniature of full mode', () => {
  let root: string;
  beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-studies-')); });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('plans a small teacher that is evaluated, shipped and tuned from, and variants evaluated like it', () => {
    const paths = notebookPaths('small', root);
    const plan = notebookDemoPlan(paths);
    assert.ok(plan.teacher.flags.out.startsWith(path.join(root, 'build')));
    assert.equal(plan.student.flags.init, plan.shipped.dir, 'the ECT run is tuned from the shipped teacher, as in full mode');
    assert.equal(plan.shipped.dir, path.join(plan.shipped.out, SMALL_TEACHER.name));
    for (const run of [plan.teacher, plan.student]) {
      assert.ok(run.flags.evalEvery! > 0 && run.flags.evalEvery! * 1000 <= run.flags.iters! * run.flags.batch!, `${run.flags.out} evaluates within its run`);
      assert.equal(run.flags.evalN, SMALL_TEACHER.evalN);
      assert.ok(run.flags.set.includes('evalSplit="test"'));
    }
    // recipeTable compares the variants with the teacher's in-run fd only on as many samples against the same split
    const variants = notebookAblationPlan('small', paths, plan.shipped.dir);
    assert.ok(variants.length >= 3);
    for (const { run, setting } of variants) {
      assert.equal(run.flags.init, plan.shipped.dir);
      assert.equal(run.flags.evalN, plan.teacher.flags.evalN);
      assert.ok(run.flags.set.includes('evalSplit="test"') && !setting.includes('evalSplit'), setting);
    }
  });

  it('trains the small teacher, ships it once with its command, and tunes from it; a second call trains and ships nothing', async () => {
    const paths = notebookPaths('small', root);
    const calls: string[] = [];
    const train = async ({ kind, flags }: RunSpec): Promise<RunOutcome> => {
      calls.push(`${kind} ${path.basename(flags.out!)} init=${flags.init ? path.basename(flags.init) : '-'}`);
      writeRun(flags.out!, { ...defaultRunConfig(kind), iters: flags.iters }, `iter,kimg,loss,lr,stage,img_per_s,wall_s\n${flags.iters},0.048,1,0.001,0,10,5\n`);
      return { runDir: flags.out!, iteration: flags.iters!, stopped: false, reused: false };
    };
    const ship = async (opts: ShipOptions): Promise<ShippedTeacher> => {
      calls.push(`ship ${opts.name} eval-n=${opts.evalN} command=${opts.command}`);
      const dir = path.join(opts.out!, opts.name);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'teacher.json'), '{}');
      return { dir, record: {} as ShippedTeacher['record'] };
    };
    const demo = await ensureDemoRuns('small', paths, () => {}, { train, ship });
    const plan = notebookDemoPlan(paths);
    assert.deepEqual(demo, { teacher: plan.shipped.dir, teacherRun: plan.teacher.flags.out, student: plan.student.flags.out });
    assert.equal(calls.length, 3, calls.join('\n'));
    assert.match(calls[0], /^pretrain teacher init=-$/);
    assert.match(calls[1], new RegExp(`^ship ${SMALL_TEACHER.name} eval-n=${SMALL_TEACHER.evalN} command=node bin/ect\\.js pretrain --config fmnist-edm-tiny --out build/notebook-runs/demo/teacher `));
    assert.equal(calls[2], `tune ect init=${SMALL_TEACHER.name}`);
    await ensureDemoRuns('small', paths, () => {}, { train, ship });
    assert.equal(calls.length, 3, 'finished runs and a shipped teacher are reused');
  });

  it('lists the same results in both modes, each with where it is, what it is and the command that makes it', () => {
    const full = notebookStudyResults('full', notebookPaths('full'));
    const small = notebookStudyResults('small', notebookPaths('small', root));
    assert.deepEqual(Object.keys(small).sort(), Object.keys(full).sort());
    assert.equal(path.relative(REPOSITORY_ROOT, full.student.path).split(path.sep).join('/'), 'results/long/headline/fmnist-ect-base');
    for (const result of Object.values(small)) {
      assert.ok(result.path.startsWith(path.join(root, 'build')), result.path);
      assert.ok(result.what && result.command, JSON.stringify(result));
      assert.ok(!result.command.includes(root), `${result.command} names a machine path`);
    }
    assert.match(small.teacher.command, /^node bin\/ect\.js ship-teacher --run build\/notebook-runs\/demo\/teacher --name fmnist-edm-tiny --out build\/notebook-runs\/demo\/shipped/);
  });

  it('reads the committed headline evaluations in full mode; small mode reuses its miniature without scoring again', async () => {
    const demo = { teacher: 'no-such-teacher', teacherRun: 'unused', student: 'no-such-run' };
    const committed = await ensureHeadlineEvaluations('full', notebookPaths('full'), demo);
    assert.equal(path.relative(REPOSITORY_ROOT, committed).split(path.sep).join('/'), 'results/long/headline/evaluations.csv');
    await assert.rejects(ensureHeadlineEvaluations('full', notebookPaths('full', root), demo), /evaluations\.csv: missing .*node bin\/ect\.js eval --checkpoint/);
    const paths = notebookPaths('small', root);
    const file = notebookStudyResults('small', paths).evaluations.path;
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, 'checkpoint,iter,kimg,sampler,mid_t,n,seed,reference,features,fd_fmnist_1step\nc,6,0.048,1step,,50,0,fashion-mnist-test,fmnist,400\n');
    assert.equal(await ensureHeadlineEvaluations('small', paths, demo), file);   // the teacher 'no-such-teacher' is never read
  });

  it('reads the committed annealed seeds and teacher score in full mode, naming the command when one is missing', async () => {
    const demo = { teacher: 'unused', teacherRun: 'unused', student: 'unused' };
    const study = await ensureAnnealedStudy('full', notebookPaths('full'), demo);
    const relative = (p: string) => path.relative(REPOSITORY_ROOT, p).split(path.sep).join('/');
    assert.equal(relative(study.teacherScore), 'results/long/annealed/teacher-evaluations.csv');
    assert.deepEqual(study.runs.map(relative), ['results/long/annealed/seed0', 'results/long/annealed/seed1']);
    await assert.rejects(ensureAnnealedStudy('full', notebookPaths('full', root), demo, () => {}, readManifest()),
      /teacher-evaluations\.csv, .*seed0\/evaluations\.csv, .*seed1\/evaluations\.csv: missing .*node bin\/ect\.js tune --config fmnist-ect-annealed/);
  });

  it('plans the small annealed study as the annealed preset over two seeds from the given teacher, with post-hoc snapshots', () => {
    const runs = smallAnnealedPlan(notebookPaths('small', root), '/teacher');
    assert.deepEqual(runs.map((r) => r.flags.seed), [...SMALL_ANNEALED.seeds]);
    assert.equal(new Set(runs.map((r) => r.flags.out)).size, runs.length);
    for (const { kind, flags } of runs) {
      assert.equal(kind, 'tune');
      assert.equal(flags.config, 'fmnist-ect-annealed');
      assert.equal(flags.init, '/teacher');
      const every = Number(/^ema\.posthoc\.snapshotEvery=(\d+)$/.exec(flags.set.find((s) => s.startsWith('ema.posthoc')) ?? '')?.[1]);
      assert.ok(every > 0 && flags.iters! % every === 0, 'the last iteration has a snapshot, which the selection needs');
    }
  });

  it('draws the teacher\'s reference line from its in-run quality at the shipped checkpoint, and refuses a teacher run that never evaluated', () => {
    const teacherRun = writeRun(path.join(root, 'teacher'), { ...defaultRunConfig('pretrain'), evalN: 50, evalSplit: 'test' },
      'iter,kimg,loss,lr,stage,img_per_s,wall_s,fd_fmnist_heun\n3,0.024,1,0.001,0,10,5,400\n6,0.048,1,0.001,0,10,9,300\n');
    const line = teacherReferenceLine({ teacher: path.join(root, 'not-shipped'), teacherRun, student: 'unused' }, 'fd_fmnist_heun');
    assert.equal(line.value, 300);
    assert.equal(line.label, 'teacher at 0.048 kimg: fd_fmnist_heun 300 (50 samples vs test)');
    assert.deepEqual([line.quality.n, line.quality.split, line.quality.iter], [50, 'test', 6]);
    const silent = writeRun(path.join(root, 'silent'), defaultRunConfig('pretrain'), 'iter,kimg,loss,lr,stage,img_per_s,wall_s\n6,0.048,1,0.001,0,10,5\n');
    assert.throws(() => teacherReferenceLine({ teacher: 'x', teacherRun: silent, student: 'x' }, 'fd_fmnist_heun'), /silent: its metrics\.csv has no fd_fmnist_heun/);
  });

  it('summarises a run folder the same way with no runs and with some: a note, then one table per Frechet column', () => {
    const dir = path.join(root, 'cifar10');
    const empty = runFolderSummary(dir, 'make them on a GPU machine.');
    assert.match(empty.note, /^No runs in `.*cifar10` yet: make them on a GPU machine\.$/);
    assert.deepEqual(empty.tables, []);
    writeRun(path.join(dir, 'ect'), defaultRunConfig('tune'), 'iter,kimg,loss,lr,stage,img_per_s,wall_s,fid_1step,fid_2step\n10,1,0.5,0.001,0,10,5,30,20\n20,2,0.4,0.001,0,10,9,25,\n');
    const some = runFolderSummary(dir, 'unused');
    assert.match(some.note, /^1 run in /);
    assert.deepEqual(some.tables.map((t) => t.column), ['fid_1step', 'fid_2step']);
    assert.deepEqual(some.tables.map((t) => t.table.array(t.column)[0]), [25, 20], 'the last evaluated row of each column');
  });

  it('labels a reference as `ect eval` does', () => {
    assert.equal(referenceLabel('fashion-mnist', 'test'), 'fashion-mnist-test');
    assert.equal(referenceLabel('fashion-mnist', 'train', 500), 'fashion-mnist-train-first500');
  });
});
