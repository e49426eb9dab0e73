/**
 * Sweeps (lib/sweep): specs expanded into runs with stable names, errors before anything runs, the notebooks'
 * studies as specs, the sbatch script and submission errors; then, on a one-node Slurm cluster started here
 * (scripts/slurm-test-cluster.js), a sweep submitted as arrays, a task cancelled and resumed, and the same
 * results table from the local executor.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultRunConfig } from '../lib/config/defaults';
import { statusLines } from '../cli/commands/sweep';
import { notebookPaths } from '../lib/env';
import {
  findRunDirs, loadRunsTable, notebookAblationPlan, notebookRecipePlan, notebookScalingPlan, notebookSweepOut, SCALING_WIDTHS,
} from '../lib/results';
import {
  arrayRanges, isActive, planSweep, readSubmissions, runCommand, runStatusOf, runSweepLocal, sbatchScript, slurmTaskStates, submitSweep, sweepStatus,
  writeManifest,
  type SweepPlan, type SweepSpec, type SweepStatus,
} from '../lib/sweep';
import type { RunOutcome, RunSpec } from '../lib/train/launch';
import { SHIPPED_TEACHERS_DIR, shippedTeachers } from '../lib/teachers/shipped';
import { requireSystemPart } from './helpers';

const root = path.resolve(__dirname, '..', '..');
const ect = path.join(root, 'bin', 'ect.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const testCluster = require(path.join(root, 'scripts', 'slurm-test-cluster.js')) as {
  unavailableReason(): string | null;
  startCluster(dir: string, opts?: { log?: (line: string) => void }): Promise<{ conf: string; stop(): Promise<number[]> }>;
  stopCluster(dir: string): Promise<number[]>;
};

/** Tiny presets on the synthetic data (28x28, 64 images): a 60-iteration teacher, 20-iteration ECT runs, checkpoints every 10. */
function writeTinyPresets(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tiny-edm.json'), JSON.stringify({
    name: 'tiny-edm',
    net: { resolution: 28, imageChannels: 1, modelChannels: 4, channelMult: [1, 2], numBlocks: 1, attnResolutions: [], dropout: 0.1, embedMult: 2 },
    data: { name: 'synthetic', flip: false, limit: 64 }, batch: 4, iters: 60, logEvery: 1, ckptEvery: 10, sampleEvery: 0, evalEvery: 0, evalN: 0,
    edm: { heunSteps: 2 }, optimizer: { lr: 0.002, rampupKimg: 0 }, ema: { halfLifeKimg: 0.05, rampupRatio: 0.5 },
  }));
  fs.writeFileSync(path.join(dir, 'tiny-ect.json'), JSON.stringify({
    extends: 'tiny-edm.json', name: 'tiny-ect', iters: 20, ect: { stageIters: 10 },
    optimizer: { lr: 0.001, rampupKimg: 0 }, ema: { beta: 0.9, halfLifeKimg: null, rampupRatio: null },
  }));
}

/** A teacher per width, and ECT runs of two seeds tuned from the teacher of their width. */
function tinySpec(overrides: Partial<SweepSpec> = {}): SweepSpec {
  return {
    name: 'tiny',
    resources: { cpusPerTask: 1, mem: '1G', time: '00:10:00' },
    stages: [
      { name: 'teachers', kind: 'pretrain', config: 'tiny-edm.json', axes: [{ key: 'net.modelChannels', label: 'ch', values: [4, 8] }] },
      { name: 'students', kind: 'tune', config: 'tiny-ect.json', init: '{teachers}', seeds: [1, 2], axes: [{ key: 'net.modelChannels', label: 'ch', values: [4, 8] }] },
    ],
    ...overrides,
  };
}

/** Writes presets and a spec into `dir`; returns the spec file. */
function writeSpec(dir: string, spec: SweepSpec = tinySpec(), file = 'tiny.json'): string {
  writeTinyPresets(dir);
  fs.writeFileSync(path.join(dir, file), JSON.stringify(spec, null, 2));
  return path.join(dir, file);
}

/** An executable stand-in for a Slurm command. */
function fakeCommand(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
  return file;
}

/** Runs `ect` as a command. */
function runEct(args: string[], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(process.execPath, [ect, ...args], { encoding: 'utf8', env, timeout: 600000 });
}

/** The runs table of a sweep's folder without what depends on the clock (times, speeds, when config.json was written). */
function comparableTable(dir: string): Array<Record<string, unknown>> {
  const rows = loadRunsTable(findRunDirs(dir)).objects() as Array<Record<string, unknown>>;
  return rows.map((row) => Object.fromEntries(Object.entries(row).filter(([key]) => !/^(wall_s|img_per_s|writtenAt)$/.test(key))))
    .sort((a, b) => String(a.run_id).localeCompare(String(b.run_id)) || Number(a.iter) - Number(b.iter));
}

describe('sweep: specs and plans', () => {
  let dir: string;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-sweep-plan-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('names runs from their axis values and seeds, the same whatever order the values come in', () => {
    const plan = planSweep(writeSpec(dir), { out: path.join(dir, 'out') });
    assert.deepEqual(plan.runs.map((r) => `${r.stage}/${r.name}`),
      ['teachers/ch4', 'teachers/ch8', 'students/ch4-s1', 'students/ch4-s2', 'students/ch8-s1', 'students/ch8-s2']);
    const student = plan.runs.find((r) => r.name === 'ch8-s2')!;
    assert.equal(student.flags.out, path.join(dir, 'out', 'students', 'ch8-s2'));
    assert.equal(student.flags.init, path.join(dir, 'out', 'teachers', 'ch8'));
    assert.deepEqual(student.after, [student.flags.init]);
    assert.equal(student.iters, 20);
    assert.equal(runCommand(student, dir), `ect tune --config tiny-ect.json --out out/students/ch8-s2 --init out/teachers/ch8 --seed 2 --set net.modelChannels=8`);
    // the values reversed: other positions, the same name for the same run
    const reversed = tinySpec();
    for (const stage of reversed.stages) { stage.axes![0].values.reverse(); stage.seeds?.reverse(); }
    const again = planSweep(writeSpec(dir, reversed, 'reversed.json'), { out: path.join(dir, 'out') });
    assert.notDeepEqual(again.runs.map((r) => r.name), plan.runs.map((r) => r.name));
    const byName = (p: SweepPlan) => Object.fromEntries(p.runs.map((r) => [`${r.stage}/${r.name}`, runCommand(r, null)]));
    assert.deepEqual(byName(again), byName(plan));
  });

  it('zips axes, names variants, takes run-name templates and a value\'s own init', () => {
    const spec = tinySpec({ stages: [
      tinySpec().stages[0],
      { name: 'other', kind: 'pretrain', config: 'tiny-edm.json', runName: 'scratch', flags: { iters: 1 } },
      { name: 'grid', kind: 'tune', config: 'tiny-ect.json', init: '{teachers}', combine: 'zip', axes: [
        { key: 'net.modelChannels', label: 'ch', values: [4, 8] }, { key: 'optimizer.lr', label: 'lr', values: [0.001, 0.002] }] },
      { name: 'variants', kind: 'tune', config: 'tiny-ect.json', init: 'teachers/ch4', runName: 'v-{variant}', axes: [{ name: 'variant', values: [
        { name: 'base' }, { name: 'constant', set: ['ect.mapping="constant"'] }, { name: 'scratch', init: '{other}' }] }] },
    ] });
    const plan = planSweep(writeSpec(dir, spec, 'zip.json'), { out: path.join(dir, 'zip') });
    const grid = plan.runs.filter((r) => r.stage === 'grid');
    assert.deepEqual(grid.map((r) => r.name), ['ch4-lr0.001', 'ch8-lr0.002']);
    assert.deepEqual(grid[1].flags.set, ['net.modelChannels=8', 'optimizer.lr=0.002']);
    assert.equal(grid[1].flags.init, path.join(dir, 'zip', 'teachers', 'ch8'));
    const variants = plan.runs.filter((r) => r.stage === 'variants');
    assert.deepEqual(variants.map((r) => r.name), ['v-base', 'v-constant', 'v-scratch']);
    assert.deepEqual(variants.map((r) => path.relative(path.join(dir, 'zip'), r.flags.init!)), ['teachers/ch4', 'teachers/ch4', 'other/scratch']);
    assert.deepEqual(variants[2].after, [path.join(dir, 'zip', 'other', 'scratch')]);
    assert.deepEqual(variants[1].flags.set, ['ect.mapping="constant"']);
    const uneven = tinySpec();
    uneven.stages[1] = { ...uneven.stages[1], combine: 'zip', axes: [...uneven.stages[1].axes!, { key: 'optimizer.lr', values: [0.1] }] };
    assert.throws(() => planSweep(writeSpec(dir, uneven, 'uneven.json')), /combine 'zip' needs axes of one length, got net.modelChannels: 2, optimizer.lr: 1/);
  });

  it('tunes from a shipped teacher named teacher:<name>, and names the shipped ones when it is not there', () => {
    const shippedName = shippedTeachers()[0];
    const stage = (init: string): SweepSpec => tinySpec({ stages: [{ name: 'students', kind: 'tune', config: 'tiny-ect.json', init, flags: { iters: 1 } }] });
    assert.throws(() => planSweep(writeSpec(dir, stage('teacher:no-such-teacher'), 'no-teacher.json'), { out: path.join(dir, 'nt'), check: false }),
      /init 'teacher:no-such-teacher': no teacher 'no-such-teacher' is shipped in .*data\/teachers \(shipped: /);
    if (shippedName === undefined) return;
    const plan = planSweep(writeSpec(dir, stage(`teacher:${shippedName}`), 'shipped.json'), { out: path.join(dir, 'st'), check: false });
    assert.equal(plan.runs[0].flags.init, path.join(SHIPPED_TEACHERS_DIR, shippedName));
    assert.deepEqual(plan.runs[0].after, []);
  });

  it('rejects an unknown key naming the closest one, and a value the config rejects at plan time, before anything is written', () => {
    const out = path.join(dir, 'rejected');
    const misspelt = JSON.parse(JSON.stringify(tinySpec())) as Record<string, any>;
    misspelt.stages[1].axis = misspelt.stages[1].axes;
    delete misspelt.stages[1].axes;
    assert.throws(() => planSweep(writeSpec(dir, misspelt as SweepSpec, 'misspelt.json'), { out }), /misspelt\.json: stages\[1\]: unknown key 'axis'; did you mean 'axes'\?/);
    const flag = tinySpec();
    (flag.stages[0] as unknown as Record<string, unknown>).flags = { iter: 5 };
    assert.throws(() => planSweep(writeSpec(dir, flag, 'flag.json'), { out }), /stages\[0\]\.flags: unknown key 'iter'; did you mean 'iters'\?/);
    const badValue = tinySpec();
    badValue.stages[1].axes!.push({ key: 'ect.mapping', label: 'map', values: ['sigmoid', 'bogus'] });
    assert.throws(() => planSweep(writeSpec(dir, badValue, 'bad-value.json'), { out }), (err: Error) =>
      /4 of 10 runs rejected \(nothing was started\)/.test(err.message) && /students\/ch4-mapbogus-s1: .*--set ect\.mapping="bogus"/.test(err.message)
      && !/mapsigmoid/.test(err.message));
    const clash = tinySpec();
    clash.stages[1].runName = 'ect-ch{net.modelChannels}';
    assert.throws(() => planSweep(writeSpec(dir, clash, 'clash.json'), { out }), /run 'ect-ch4': its folder .* is also run 'ect-ch4' of stage 'students'; names must differ/);
    const later = tinySpec();
    later.stages[0] = { ...later.stages[0], kind: 'tune', init: '{students}' } as never;
    assert.throws(() => planSweep(writeSpec(dir, later, 'later.json'), { out }), /'\{students\}' is not an axis of this stage nor an earlier stage/);
    assert.ok(!fs.existsSync(out), 'a rejected sweep writes nothing');
  });

  it('notebook 03\'s study is configs/sweeps/scaling-relative.json and 04\'s the recipe study; the earlier sweeps name committed runs', () => {
    const paths = notebookPaths('full', root);
    const scaling = planSweep('scaling-relative', { out: path.join(paths.runs, 'long') });
    // every run the spec names is committed and finished: the notebook finds them without retraining
    for (const run of scaling.runs) assert.equal(runStatusOf(run).state, 'finished', `scaling-relative: ${run.flags.out}`);
    assert.deepEqual(notebookScalingPlan(paths).map(({ kind, flags }) => ({ kind, flags })), scaling.runs.map(({ kind, flags }) => ({ kind, flags })));
    assert.deepEqual(scaling.runs.filter((r) => r.flags.iters === 63).map((r) => path.relative(paths.runs, r.flags.out).split(path.sep).join('/')),
      SCALING_WIDTHS.map((w) => `long/scaling-relative/ch${w}-4kimg`));
    assert.deepEqual([...new Set(scaling.runs.map((r) => r.values['net.modelChannels']))], [...SCALING_WIDTHS]);
    // a sweep trained elsewhere (--out on a cluster) is where ECT_SWEEP_OUT points the notebooks
    assert.equal(notebookSweepOut(paths, 'scaling-relative', path.join(dir, 'cluster-sweep')), path.join(dir, 'cluster-sweep'));
    assert.equal(notebookSweepOut(paths, 'scaling-relative', ''), path.join(paths.runs, 'long'));
    // the earlier study (schedules counted in iterations, one run per width) stays committed and finished
    for (const run of planSweep('scaling-long', { out: path.join(paths.runs, 'long') }).runs) assert.equal(runStatusOf(run).state, 'finished', `scaling-long: ${run.flags.out}`);
    // the minute-scale scaling study stays committed and finished, in the archive
    const archive = path.join(paths.runs, 'archive');
    for (const run of planSweep('scaling', { out: archive }).runs) assert.equal(runStatusOf(run).state, 'finished', `scaling: ${run.flags.out}`);
    // the minute-scale ablations, no longer a notebook's study, stay committed and finished
    const ablations = planSweep('ablations', { out: archive });
    for (const run of ablations.runs) assert.equal(runStatusOf(run).state, 'finished', `ablations: ${run.flags.out}`);
    assert.deepEqual(ablations.runs.filter((r) => r.kind === 'tune').map((r) => r.name),
      ['baseline', 'mapping-constant', 'weighting-snr_k', 'dropout-0', 'huber-c-0.03', 'from-scratch']);
    const teacher = path.join(archive, 'demo', 'teacher');
    assert.deepEqual(notebookAblationPlan('full', paths, teacher).map((v) => path.relative(paths.runs, v.run.flags.out)),
      notebookRecipePlan(paths).map((v) => path.join('long', 'recipe', v.name)));
  });

  it('writes the sbatch array script: resources from the spec, partition and account from the flags, one task per run', () => {
    assert.equal(arrayRanges([8, 0, 1, 2, 5, 7]), '0-2,5,7-8');
    const plan = planSweep(writeSpec(dir), { out: path.join(dir, 'script') });
    const stage = plan.stages[1];
    const runs = [plan.runs[2], plan.runs[3], plan.runs[5]];
    const script = sbatchScript(plan, stage, runs, '/m/manifest-abc.json', { partition: 'gpu', account: 'lab', maxParallel: 2 });
    for (const line of ['#SBATCH --job-name=tiny-students', '#SBATCH --array=2-3,5%2', '#SBATCH --cpus-per-task=1', '#SBATCH --mem=1G',
      '#SBATCH --time=00:10:00', '#SBATCH --partition=gpu', '#SBATCH --account=lab', '#SBATCH --requeue', '#SBATCH --open-mode=append',
      `#SBATCH --output=${path.join(plan.folder, 'logs', 'students-%A_%a.log')}`]) {
      assert.ok(script.split('\n').includes(line), `${line} in\n${script}`);
    }
    assert.match(script, /#   5: students\/ch8-s2: ect tune --config \S+tiny-ect\.json --out \S+\/students\/ch8-s2 --init \S+\/teachers\/ch8 --seed 2/);
    assert.match(script, new RegExp(`^exec '${process.execPath}' '${ect}' 'sweep' 'task' '/m/manifest-abc.json' "\\$SLURM_ARRAY_TASK_ID"$`, 'm'));
  });

  it('says when sbatch is missing or rejects a submission, and records only what was submitted', () => {
    const out = path.join(dir, 'submit');
    const plan = planSweep(writeSpec(dir), { out });
    assert.throws(() => submitSweep(plan, { sbatch: path.join(dir, 'no-such-sbatch') }), /no-such-sbatch not found on PATH: submit from a Slurm login node, or run the sweep here with --executor local/);
    assert.ok(!fs.existsSync(plan.folder), 'nothing written when sbatch is missing');
    const rejecting = fakeCommand(dir, 'sbatch-rejecting', '[ "$1" = --version ] && exit 0\necho "sbatch: error: Invalid account or account/partition combination specified" >&2\nexit 1');
    assert.throws(() => submitSweep(plan, { sbatch: rejecting }), /sbatch rejected stage teachers of sweep tiny \(ch4, ch8\): sbatch: error: Invalid account.* Nothing was submitted\./);
    assert.deepEqual(readSubmissions(plan), []);
    // the first array is accepted, the second rejected: the first is recorded and named
    const calls = path.join(dir, 'calls');
    const second = fakeCommand(dir, 'sbatch-second', `[ "$1" = --version ] && exit 0\necho "$@" >> ${calls}\n[ $(wc -l < ${calls}) -le 1 ] && { echo 41; exit 0; }\necho "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2\nexit 1`);
    const squeue = fakeCommand(dir, 'squeue-empty', 'exit 0');
    assert.throws(() => submitSweep(plan, { sbatch: second, squeue }), /rejected stage students .*QOSMaxSubmitJobPerUserLimit\. Submitted before it: teachers as job 41 \(recorded in .*submissions\.json\)/);
    assert.deepEqual(readSubmissions(plan).map((s) => [s.stage, s.jobId, s.indices]), [['teachers', '41', [0, 1]]]);
    assert.match(fs.readFileSync(calls, 'utf8').split('\n')[1], /--dependency=afterok:41_0 --kill-on-invalid-dep=yes .*students-1\.sbatch/);
  });

  it('reads task states from squeue, and from sacct for tasks squeue has forgotten; status goes on without them', () => {
    const plan = planSweep(writeSpec(dir), { out: path.join(dir, 'queue') });
    const manifest = writeManifest(plan);
    fs.writeFileSync(path.join(plan.folder, 'submissions.json'), JSON.stringify([
      { stage: 'teachers', jobId: '7', indices: [0, 1], manifest, script: 'teachers.sbatch', submittedAt: '2026-01-01T00:00:00Z' },
      { stage: 'students', jobId: '9', indices: [2, 3, 4, 5], manifest, script: 'students.sbatch', dependency: 'afterok:7_0:7_1', submittedAt: '2026-01-01T00:00:01Z' },
    ]));
    // squeue knows the running teacher and two waiting students (and another sweep's job); sacct the finished teacher
    const squeue = fakeCommand(dir, 'squeue-some', 'echo "7|1|RUNNING|None"; echo "9|2|PENDING|Dependency"; echo "9|4|PENDING|Dependency"; echo "3|0|RUNNING|None"');
    const sacct = fakeCommand(dir, 'sacct-some', 'echo "7_0|COMPLETED"; echo "9_[3,5]|PENDING"');
    const states = slurmTaskStates(plan, { squeue, sacct })!;
    const byName = (name: string) => states.get(plan.runs.find((r) => `${r.stage}/${r.name}` === name)!.flags.out);
    assert.deepEqual([byName('teachers/ch4')?.state, byName('teachers/ch8')?.state, byName('students/ch4-s1')?.reason], ['COMPLETED', 'RUNNING', 'Dependency']);
    assert.equal(byName('teachers/ch8')!.log, path.join(plan.folder, 'logs', 'teachers-7_1.log'));
    assert.equal(byName('students/ch4-s2'), undefined);
    const failing = fakeCommand(dir, 'squeue-down', 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1');
    const status = sweepStatus(plan, { squeue: failing });
    assert.match(status.slurm, /squeue failed: slurm_load_jobs error: Unable to contact slurm controller/);
    assert.deepEqual(status.runs.map((r) => r.state), Array(6).fill('new'));
  });

  it('says which runs are training now (a live lock on their folder), and from which iteration they logged last', () => {
    const plan = planSweep(writeSpec(dir), { out: path.join(dir, 'training-now') });
    const [live, dead] = [plan.runs[0].flags.out, plan.runs[1].flags.out];
    for (const out of [live, dead]) {
      fs.mkdirSync(out, { recursive: true });
      fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...defaultRunConfig('pretrain'), iters: 10 }));
      // the last row is an evaluation's, without a loss
      fs.writeFileSync(path.join(out, 'metrics.csv'), 'iter,kimg,loss,lr,stage,img_per_s,wall_s,fd_fmnist_heun\n2,0.008,1.5,0.001,0,10,5,\n3,0.012,,,,,,42\n');
    }
    const lock = (pid: number) => JSON.stringify({ pid, host: os.hostname(), started: '2026-01-01T00:00:00Z', command: 'ect pretrain' });
    fs.writeFileSync(path.join(live, '.lock'), lock(process.pid));
    fs.writeFileSync(path.join(dead, '.lock'), lock(2 ** 22 + 7));  // above Linux's pid_max: no such process
    const status = sweepStatus(plan, { squeue: path.join(dir, 'no-squeue') });
    assert.deepEqual(status.runs.slice(0, 2).map((r) => [r.training, r.iteration, r.loss]), [[`pid ${process.pid}`, 3, 1.5], [undefined, 0, 1.5]]);
    const lines = statusLines(plan, status.runs, status.slurm);
    assert.match(lines[0], /: 1 training, 0 finished, 0 interrupted, 5 new/);
    assert.match(lines[2], new RegExp(`^teachers +ch4 +training \\(pid ${process.pid}\\) +3/`));
    assert.match(lines[3], /^teachers +ch8 +new +0\//);
  });

  it('the local executor runs stages in order, reuses finished runs, and skips the runs whose teacher failed', async () => {
    const plan = planSweep(writeSpec(dir), { out: path.join(dir, 'local') });
    const trained: string[] = [];
    // a stand-in for the launcher's trainRun: writes a finished run folder, or fails for the ch8 teacher
    const train = async ({ kind, flags }: RunSpec): Promise<RunOutcome> => {
      const out = flags.out as string;
      trained.push(path.relative(plan.out, out));
      if (out.endsWith(path.join('teachers', 'ch8'))) throw new Error('out of memory');
      fs.mkdirSync(out, { recursive: true });
      fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...defaultRunConfig(kind), iters: 2 }));
      fs.writeFileSync(path.join(out, 'metrics.csv'), 'iter,kimg,loss,lr,stage,img_per_s,wall_s\n2,0.008,1,0.001,0,10,5\n');
      return { runDir: out, iteration: 2, stopped: false, reused: false };
    };
    const results = await runSweepLocal(plan, { train });
    assert.deepEqual(trained, ['teachers/ch4', 'teachers/ch8', 'students/ch4-s1', 'students/ch4-s2']);
    assert.deepEqual(results.map((r) => `${r.run.name}:${r.outcome}`), ['ch4:trained', 'ch8:failed', 'ch4-s1:trained', 'ch4-s2:trained', 'ch8-s1:skipped', 'ch8-s2:skipped']);
    assert.match(results[4].reason!, /its init did not finish: teachers\/ch8 \(failed\)/);
    trained.length = 0;
    await runSweepLocal(plan, { train });
    assert.deepEqual(trained, ['teachers/ch8'], 'finished runs are reused');
  });
});

describe('sweep: Slurm arrays on a one-node test cluster', function () {
  this.timeout(600000);
  let work: string;
  let specFile: string;
  let savedConf: string | undefined;
  let started = false;
  const sweepOut = (name: string) => path.join(work, name);
  const plan = (name: string) => planSweep(specFile, { out: sweepOut(name) });

  /** Polls until no task of the sweep is queued or running; returns its status. */
  async function waitForSweep(sweep: SweepPlan, timeoutMs = 300000): Promise<SweepStatus> {
    for (const start = Date.now(); ; await new Promise((resolve) => setTimeout(resolve, 1000))) {
      const status = sweepStatus(sweep);
      const active = status.runs.filter((r) => isActive(r.slurm));
      if (active.length === 0) return status;
      if (Date.now() - start > timeoutMs) throw new Error(`still queued after ${timeoutMs / 1000} s: ${active.map((r) => `${r.run.name} ${r.slurm!.state}`).join(', ')}`);
    }
  }

  before(async function () {
    requireSystemPart(this, 'slurm');
    const reason = testCluster.unavailableReason();
    if (reason) {
      if (process.env.CI === 'true') throw new Error(`CI=true and the Slurm test cluster cannot start: ${reason}`);
      console.log(`    skipped: cannot start a Slurm test cluster here: ${reason}`);
      this.skip();
    }
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-sweep-slurm-'));
    specFile = writeSpec(path.join(work, 'spec'));
    const cluster = await testCluster.startCluster(path.join(work, 'cluster'));
    started = true;
    savedConf = process.env.SLURM_CONF;
    process.env.SLURM_CONF = cluster.conf;   // for sbatch, squeue and scancel, here and in the ect commands started here
  });

  after(async () => {
    if (!work) return;
    const survivors = started ? await testCluster.stopCluster(path.join(work, 'cluster')) : [];
    if (savedConf === undefined) delete process.env.SLURM_CONF; else process.env.SLURM_CONF = savedConf;
    fs.rmSync(work, { recursive: true, force: true });
    assert.deepEqual(survivors, [], 'the test cluster left processes behind');
  });

  it('submits a sweep as array jobs; every run finishes, and sweep status and the results table see them', async () => {
    const submitted = runEct(['sweep', 'run', specFile, '--executor', 'slurm', '--out', sweepOut('A')]);
    assert.equal(submitted.status, 0, submitted.stdout + submitted.stderr);
    assert.match(submitted.stdout, /stage teachers: submitted job (\d+), tasks 0-1 \(ch4, ch8\)/);
    const teachersJob = /stage teachers: submitted job (\d+)/.exec(submitted.stdout)![1];
    // each teacher's students wait for that teacher's task only
    assert.match(submitted.stdout, new RegExp(`stage students: submitted job \\d+, tasks 2-3 \\(ch4-s1, ch4-s2\\), after ${teachersJob}_0`));
    assert.match(submitted.stdout, new RegExp(`stage students: submitted job \\d+, tasks 4-5 \\(ch8-s1, ch8-s2\\), after ${teachersJob}_1`));
    const status = await waitForSweep(plan('A'));
    for (const run of status.runs) {
      assert.equal(run.state, 'finished', `${run.run.name}: ${run.state}; log ${run.slurm?.log}:\n${run.slurm && fs.existsSync(run.slurm.log) ? fs.readFileSync(run.slurm.log, 'utf8').slice(-2000) : ''}`);
      assert.equal(run.slurm?.state, 'COMPLETED', run.run.name);
      assert.equal(run.iteration, run.iters);
    }
    const shown = runEct(['sweep', 'status', specFile, '--out', sweepOut('A'), '--json']);
    assert.equal(shown.status, 0, shown.stderr);
    const rows = JSON.parse(shown.stdout) as Array<{ name: string; state: string; loss: number; slurm: { state: string } }>;
    assert.deepEqual(rows.map((r) => `${r.name} ${r.state} ${r.slurm.state}`), status.runs.map((r) => `${r.run.name} finished COMPLETED`));
    assert.ok(rows.every((r) => Number.isFinite(r.loss)));
    const table = loadRunsTable(findRunDirs(sweepOut('A')));
    assert.deepEqual([...new Set(table.array('run_id') as string[])].sort(), ['ch4', 'ch4-s1', 'ch4-s2', 'ch8', 'ch8-s1', 'ch8-s2']);
    assert.equal(table.numRows(), 2 * 60 + 4 * 20);
    const again = runEct(['sweep', 'run', specFile, '--executor', 'slurm', '--out', sweepOut('A')]);
    assert.match(again.stdout, /nothing to submit/);
  });

  it('a task cancelled mid-run (scancel) resumes from its checkpoint when the sweep is submitted again', async () => {
    const sweep = plan('B');
    const first = submitSweep(sweep);
    const teachers = first.submissions.find((s) => s.stage === 'teachers')!;
    const target = sweep.runs.find((r) => r.stage === 'teachers' && r.name === 'ch8')!;
    // wait for its second checkpoint, then cancel its task (Slurm sends SIGTERM: the run checkpoints and stops)
    for (const start = Date.now(); !fs.existsSync(path.join(target.flags.out, 'checkpoints', 'ckpt-000000020.ckpt')); await new Promise((r) => setTimeout(r, 250))) {
      if (Date.now() - start > 180000) throw new Error('the ch8 teacher wrote no checkpoint at iteration 20');
    }
    const cancel = spawnSync('scancel', [`${teachers.jobId}_${target.index}`], { encoding: 'utf8' });
    assert.equal(cancel.status, 0, cancel.stderr);
    const cancelled = await waitForSweep(sweep);
    const byName = Object.fromEntries(cancelled.runs.map((r) => [`${r.run.stage}/${r.run.name}`, r]));
    const interrupted = byName['teachers/ch8'];
    assert.equal(interrupted.state, 'interrupted');
    assert.equal(interrupted.slurm?.state, 'CANCELLED');
    assert.ok(interrupted.iteration >= 20 && interrupted.iteration < 60, `interrupted at ${interrupted.iteration}`);
    for (const name of ['students/ch8-s1', 'students/ch8-s2']) {
      assert.equal(byName[name].state, 'new', name);
      assert.equal(byName[name].slurm?.state, 'CANCELLED', name);
      assert.equal(byName[name].slurm?.reason, 'DependencyNeverSatisfied', name);
    }
    for (const name of ['teachers/ch4', 'students/ch4-s1', 'students/ch4-s2']) assert.equal(byName[name].state, 'finished', name);

    const second = submitSweep(plan('B'));
    assert.deepEqual(second.submissions.map((s) => [s.stage, s.indices]), [['teachers', [target.index]], ['students', [4, 5]]]);
    assert.equal(second.submissions[1].dependency, `afterok:${second.submissions[0].jobId}_${target.index}`);
    assert.deepEqual(second.skipped.map((s) => s.run.name).sort(), ['ch4', 'ch4-s1', 'ch4-s2']);
    const done = await waitForSweep(sweep);
    for (const run of done.runs) assert.equal(run.state, 'finished', run.run.name);
    const resumedLog = fs.readFileSync(done.runs.find((r) => r.run.flags.out === target.flags.out)!.slurm!.log, 'utf8');
    assert.match(resumedLog, new RegExp(`resuming at ${interrupted.iteration} `));
    const iters = fs.readFileSync(path.join(target.flags.out, 'metrics.csv'), 'utf8').trim().split('\n').slice(1).map((line) => Number(line.split(',')[0]));
    assert.deepEqual(iters, Array.from({ length: 60 }, (_, i) => i + 1), 'each iteration logged once');
  });

  it('the local executor trains the same results table as the Slurm arrays, the cancelled-and-resumed sweep included', () => {
    const local = runEct(['sweep', 'run', specFile, '--executor', 'local', '--out', sweepOut('C'), '--no-progress']);
    assert.equal(local.status, 0, local.stdout.slice(-3000) + local.stderr);
    assert.match(local.stdout, /sweep tiny: 6 of 6 runs finished/);
    const expected = comparableTable(sweepOut('C'));
    assert.equal(expected.length, 2 * 60 + 4 * 20);
    assert.deepEqual(comparableTable(sweepOut('A')), expected);
    assert.deepEqual(comparableTable(sweepOut('B')), expected);
  });
});
