/**
 * The Slurm executor: each stage of a sweep as sbatch array jobs, one task per run, a later stage's tasks
 * waiting (afterok) for the tasks of the runs they tune from (one array per set of such tasks). A task runs `ect sweep task <manifest> <index>`,
 * which is ensureRun of that run: a requeued, preempted or resubmitted task resumes from the newest checkpoint.
 * The sweep's own folder (<out>/sweep-<name>/) keeps the manifests, the scripts, the logs and the job ids.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repositoryPath } from '../repository';
import type { RunKind } from '../config/types';
import { runCommand, runStatusOf, type SweepPlan, type SweepRun, type SweepRunFlags, type SweepStage } from './plan';

/** A run as a task reads it: what to train and which runs must have finished first. */
export interface ManifestRun { index: number; stage: string; name: string; kind: RunKind; flags: SweepRunFlags; after: string[]; command: string }

/** The runs of one submission, written once and never changed (named by its content), so a queued task reads what was submitted. */
export interface SweepManifest { sweep: string; spec?: string; out: string; runs: ManifestRun[] }

/** One sbatch call: a stage's array job. */
export interface Submission {
  stage: string;
  jobId: string;             // the array's job id
  indices: number[];         // its tasks: indices into the manifest's runs
  manifest: string;          // the manifest file its tasks read
  script: string;
  dependency?: string;       // the --dependency it was submitted with
  submittedAt: string;
}

/** Options of the Slurm executor. */
export interface SlurmOptions {
  partition?: string;        // --partition
  account?: string;          // --account
  maxParallel?: number;      // at most this many tasks of an array at once (--array=...%N)
  dryRun?: boolean;          // write the scripts and say what would be submitted, submit nothing
  log?: (line: string) => void;
  sbatch?: string;           // the sbatch command (default: sbatch on PATH)
  squeue?: string;
  sacct?: string;
}

/** A Slurm array task's state, as squeue or sacct report it. */
export interface TaskState { jobId: string; task: string; state: string; reason?: string; log: string; submission: Submission }

/** Job states in which a task will still run (or runs now): its run is not submitted again. */
const ACTIVE_STATES = ['PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING', 'SUSPENDED', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'SIGNALING', 'STAGE_OUT', 'STOPPED'];

/** Errors of the Slurm executor (missing commands, rejected submissions). */
export class SlurmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SlurmError';
  }
}

const submissionsFile = (plan: SweepPlan) => path.join(plan.folder, 'submissions.json');

/** The job name of a stage's array. */
export function jobName(plan: SweepPlan, stage: string): string {
  return `${plan.name}-${stage}`;
}

/** The log file of a task (the script's --output with %A and %a filled in). */
export function taskLogFile(plan: SweepPlan, stage: string, jobId: string, index: number | string): string {
  return path.join(plan.folder, 'logs', `${stage}-${jobId}_${index}.log`);
}

/** The manifest of a plan: every run with its flags, its command and the runs it waits for. */
export function sweepManifest(plan: SweepPlan): SweepManifest {
  return {
    sweep: plan.name, spec: plan.spec.file, out: plan.out,
    runs: plan.runs.map((run) => ({ index: run.index, stage: run.stage, name: run.name, kind: run.kind, flags: run.flags, after: run.after, command: runCommand(run, null) })),
  };
}

/** Writes the manifest under the sweep's folder, named by its content (so it is never rewritten); returns its path. */
export function writeManifest(plan: SweepPlan): string {
  const text = JSON.stringify(sweepManifest(plan), null, 2) + '\n';
  const file = path.join(plan.folder, `manifest-${createHash('sha256').update(text).digest('hex').slice(0, 12)}.json`);
  fs.mkdirSync(plan.folder, { recursive: true });
  if (!fs.existsSync(file)) fs.writeFileSync(file, text);
  return file;
}

/** Reads a manifest, with errors naming it. */
export function readManifest(file: string): SweepManifest {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as SweepManifest;
  } catch (err) {
    throw new SlurmError(`${file}: cannot read the sweep manifest (${(err as Error).message})`);
  }
}

/** The submissions recorded in the sweep's folder, oldest first. */
export function readSubmissions(plan: SweepPlan): Submission[] {
  const file = submissionsFile(plan);
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) as Submission[] : [];
}

function recordSubmission(plan: SweepPlan, submission: Submission): void {
  const file = submissionsFile(plan);
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify([...readSubmissions(plan), submission], null, 2) + '\n');
  fs.renameSync(tmp, file);
}

/** Array indices as sbatch takes them, consecutive ones as ranges: 0-3,7. */
export function arrayRanges(indices: number[]): string {
  const sorted = [...indices].sort((a, b) => a - b);
  const ranges: string[] = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    ranges.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j;
  }
  return ranges.join(',');
}

/** The sbatch array script of a stage's runs: resources from the spec, partition and account from the options. */
export function sbatchScript(plan: SweepPlan, stage: SweepStage, runs: SweepRun[], manifest: string, opts: SlurmOptions = {}): string {
  const { resources } = stage;
  const array = arrayRanges(runs.map((r) => r.index)) + (opts.maxParallel ? `%${opts.maxParallel}` : '');
  const directives = [
    `--job-name=${jobName(plan, stage.name)}`,
    `--array=${array}`,
    `--output=${taskLogFile(plan, stage.name, '%A', '%a')}`,
    '--open-mode=append',          // a requeued task appends to its log
    '--requeue',                   // preempted or failed nodes put the task back in the queue; it resumes
    '--ntasks=1',
    ...(resources.cpusPerTask ? [`--cpus-per-task=${resources.cpusPerTask}`] : []),
    ...(resources.mem ? [`--mem=${resources.mem}`] : []),
    ...(resources.time ? [`--time=${resources.time}`] : []),
    ...(resources.gres ? [`--gres=${resources.gres}`] : []),
    ...(opts.partition ? [`--partition=${opts.partition}`] : []),
    ...(opts.account ? [`--account=${opts.account}`] : []),
  ];
  const ect = [process.execPath, repositoryPath('bin', 'ect.js')];
  return [
    '#!/bin/bash',
    `# ect sweep ${plan.name}, stage ${stage.name}: one array task per run (written by \`ect sweep run --executor slurm\`)`,
    ...directives.map((d) => `#SBATCH ${d}`),
    '#',
    '# task: run and the command it is (ect sweep task adds --resume when the run was interrupted, skips it when finished):',
    ...runs.map((run) => `#   ${run.index}: ${run.stage}/${run.name}: ${runCommand(run, null)}`),
    'set -eu',
    `exec ${[...ect, 'sweep', 'task', manifest].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')} "$SLURM_ARRAY_TASK_ID"`,
    '',
  ].join('\n');
}

/** Runs a Slurm command; null when it is not installed. */
function slurmCommand(command: string, args: string[]): { status: number | null; stdout: string; stderr: string } | null {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 60000 });
  if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT') return null;
  if (result.error) throw new SlurmError(`${command} ${args.join(' ')}: ${result.error.message}`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * The Slurm state of each run's newest task among the sweep's recorded submissions (squeue, then sacct for
 * tasks squeue no longer shows), keyed by run folder; null when squeue is not installed here.
 */
export function slurmTaskStates(plan: SweepPlan, opts: SlurmOptions = {}): Map<string, TaskState> | null {
  const submissions = readSubmissions(plan);
  const states = new Map<string, TaskState>();
  if (submissions.length === 0) return states;
  const byJob = new Map(submissions.map((s) => [s.jobId, s]));
  const found = new Map<string, { state: string; reason?: string }>();   // `${job}_${task}` -> state
  const names = [...new Set(submissions.map((s) => jobName(plan, s.stage)))];
  const squeue = slurmCommand(opts.squeue ?? 'squeue', ['-h', '-r', '-t', 'all', `--name=${names.join(',')}`, '-o', '%F|%K|%T|%r']);
  if (squeue === null) return null;
  if (squeue.status !== 0) throw new SlurmError(`squeue failed: ${squeue.stderr.trim() || `exit ${squeue.status}`}`);
  for (const line of squeue.stdout.split('\n')) {
    const [job, task, state, reason] = line.trim().split('|');
    if (job && byJob.has(job)) found.set(`${job}_${task}`, { state, reason: reason && reason !== 'None' ? reason : undefined });
  }
  const unseen = submissions.filter((s) => s.indices.some((i) => !found.has(`${s.jobId}_${i}`)));
  if (unseen.length) {
    // tasks the controller has forgotten: accounting knows them where it is set up (else sacct fails; they stay unknown)
    const sacct = slurmCommand(opts.sacct ?? 'sacct', ['-n', '-P', '-X', '-j', unseen.map((s) => s.jobId).join(','), '--format=JobID,State']);
    for (const line of sacct?.status === 0 ? sacct.stdout.split('\n') : []) {
      const [id, state] = line.trim().split('|');
      if (/^\d+_\d+$/.test(id ?? '') && !found.has(id)) found.set(id, { state: state.split(' ')[0] });
    }
  }
  for (const submission of submissions) {    // oldest first: a newer task of a run replaces an older one
    const manifest = fs.existsSync(submission.manifest) ? readManifest(submission.manifest) : null;
    for (const index of submission.indices) {
      const seen = found.get(`${submission.jobId}_${index}`);
      const dir = manifest?.runs[index]?.flags.out;
      if (!seen || !dir) continue;
      states.set(dir, { jobId: submission.jobId, task: `${submission.jobId}_${index}`, ...seen, log: taskLogFile(plan, submission.stage, submission.jobId, index), submission });
    }
  }
  return states;
}

/** True when a task state will still run. */
export function isActive(state: TaskState | undefined): boolean {
  return state !== undefined && ACTIVE_STATES.includes(state.state);
}

/** What a submission did: the arrays submitted, and the runs left out and why. */
export interface SubmitResult { submissions: Submission[]; skipped: Array<{ run: SweepRun; reason: string }>; manifest: string | null }

/**
 * Submits a planned sweep: per stage, its runs that are neither finished nor queued, as one array per set of
 * tasks they wait for (the tasks of the runs they tune from). Checks for sbatch first; a rejected submission throws with
 * sbatch's message, after recording the arrays already submitted (running the command again submits the rest).
 */
export function submitSweep(plan: SweepPlan, opts: SlurmOptions = {}): SubmitResult {
  const log = opts.log ?? (() => {});
  const sbatch = opts.sbatch ?? 'sbatch';
  if (!opts.dryRun) {
    const probe = slurmCommand(sbatch, ['--version']);
    if (probe === null) throw new SlurmError(`${sbatch} not found on PATH: submit from a Slurm login node, or run the sweep here with --executor local`);
  }
  const queued = opts.dryRun ? new Map<string, TaskState>() : slurmTaskStates(plan, opts) ?? new Map<string, TaskState>();
  const skipped: SubmitResult['skipped'] = [];
  const toSubmit = plan.runs.filter((run) => {
    const state = runStatusOf(run).state;
    const task = queued.get(run.flags.out);
    if (state === 'finished') skipped.push({ run, reason: 'finished' });
    else if (isActive(task)) skipped.push({ run, reason: `already queued as task ${task!.task} (${task!.state})` });
    else return true;
    return false;
  });
  for (const { run, reason } of skipped) log(`${run.stage}/${run.name}: not submitted, ${reason}`);
  if (toSubmit.length === 0) {
    log('nothing to submit');
    return { submissions: [], skipped, manifest: null };
  }
  const manifest = writeManifest(plan);
  fs.mkdirSync(path.join(plan.folder, 'logs'), { recursive: true });
  const taskOf = new Map<string, string>();     // run folder -> its task (`job_index`) submitted now or still queued
  for (const [dir, task] of queued) if (isActive(task)) taskOf.set(dir, task.task);
  const submissions: Submission[] = [];
  for (const stage of plan.stages) {
    const stageRuns = toSubmit.filter((run) => run.stage === stage.name);
    // one array per set of tasks to wait for, so a teacher that fails holds back only the runs tuned from it
    const groups = new Map<string, { runs: SweepRun[]; waitFor: string[] }>();
    for (const run of stageRuns) {
      const waitFor = [...new Set(run.after.map((dir) => taskOf.get(dir)).filter((t): t is string => t !== undefined))].sort();
      const group = groups.get(waitFor.join(':')) ?? { runs: [], waitFor };
      group.runs.push(run);
      groups.set(waitFor.join(':'), group);
    }
    [...groups.values()].forEach(({ runs, waitFor }, g) => {
      const script = path.join(plan.folder, `${stage.name}${groups.size > 1 ? `-${g + 1}` : ''}.sbatch`);
      fs.writeFileSync(script, sbatchScript(plan, stage, runs, manifest, opts), { mode: 0o755 });
      const dependency = waitFor.length ? `afterok:${waitFor.join(':')}` : undefined;
      const args = ['--parsable', ...(dependency ? [`--dependency=${dependency}`, '--kill-on-invalid-dep=yes'] : []), script];
      const names = runs.map((r) => r.name).join(', ');
      if (opts.dryRun) {
        log(`would submit: ${sbatch} ${args.join(' ')}   (${runs.length} task${runs.length > 1 ? 's' : ''}: ${names})`);
        for (const run of runs) taskOf.set(run.flags.out, `<${stage.name}>_${run.index}`);
        return;
      }
      const result = slurmCommand(sbatch, args);
      if (result === null || result.status !== 0) {
        const before = submissions.length ? ` Submitted before it: ${submissions.map((s) => `${s.stage} as job ${s.jobId}`).join(', ')} (recorded in ${submissionsFile(plan)}).` : ' Nothing was submitted.';
        throw new SlurmError(`sbatch rejected stage ${stage.name} of sweep ${plan.name} (${names}): ${result?.stderr.trim() || (result ? `exit ${result.status}` : 'sbatch disappeared')}.${before} `
          + 'Fix it and run the same command again: finished and queued runs are not submitted twice.');
      }
      const jobId = result.stdout.trim().split(';')[0];
      if (!/^\d+$/.test(jobId)) throw new SlurmError(`sbatch answered '${result.stdout.trim()}' for stage ${stage.name}; expected a job id`);
      const submission: Submission = { stage: stage.name, jobId, indices: runs.map((r) => r.index), manifest, script, dependency, submittedAt: new Date().toISOString() };
      recordSubmission(plan, submission);
      submissions.push(submission);
      for (const run of runs) taskOf.set(run.flags.out, `${jobId}_${run.index}`);
      log(`stage ${stage.name}: submitted job ${jobId}, tasks ${arrayRanges(submission.indices)} (${names})${dependency ? `, after ${waitFor.join(', ')}` : ''}`);
    });
  }
  return { submissions, skipped, manifest };
}
