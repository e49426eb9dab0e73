/**
 * How the addon's OpenMP worker threads wait between parallel regions, chosen before the addon (and with it libgomp,
 * which reads its environment once, when it loads) is loaded.
 *
 * A sleeping worker is woken for every region: on the 2-vCPU virtual machines this project is measured on, a wake-up
 * of an idle vCPU takes 50-85 us, and a training step runs a region or more in each of its ~800 native calls. A worker
 * that spins a little before sleeping catches the next region at once: on an otherwise idle machine, steps measured
 * 7-10% (fp32) and 10-15% (bf16) faster (docs/benchmarks.md). But on a machine whose cores another process needs, a
 * spinning worker takes the core from it and from its own team: steps measured about twice as slow. So the addon spins
 * only when, at load, no other process was using the cores its team will run on; the environment's own
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins.
 */
import * as fs from 'fs';
import * as os from 'os';

/** Spins before a worker sleeps when it spins at all: libgomp counts about 100000 spins to a millisecond. */
export const SPIN_COUNT = 30000;
/** How long the cores are watched at load. */
export const SAMPLE_MS = 100;
/** Other processes' use of the cores (in cores) above which the team sleeps, beyond the cores it leaves free. */
export const BUSY_CORES = 0.5;
/** Marks the setting this module made, so that a child process (which inherits it) decides afresh. */
export const CHOSEN_MARK = 'ECT_THREAD_WAIT_CHOSEN';

/** The choice: spin or sleep, the variable set and why (shown in the backend's details and run records). */
export interface ThreadWait {
  mode: 'spin' | 'sleep' | 'environment';
  /** The assignment in effect, e.g. 'GOMP_SPINCOUNT=30000'. */
  setting: string;
  why: string;
}

/** What chooseThreadWait looks at. */
export interface ThreadWaitFacts {
  env: NodeJS.ProcessEnv;
  cpus: number;       // logical CPUs this process may run on
  threads: number;    // the OpenMP team's size
  otherBusyCores: number | null;  // other processes' CPU use at load, in cores; null where it cannot be read
}

/** The user's own setting, if the environment has one this module did not make. */
function userSetting(env: NodeJS.ProcessEnv): string | null {
  const inherited = env[CHOSEN_MARK];
  for (const name of ['OMP_WAIT_POLICY', 'GOMP_SPINCOUNT']) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (inherited === `${name}=${value}`) continue;  // a parent process's choice, passed down
    return `${name}=${value}`;
  }
  return null;
}

/** Whether other processes' use of the cores crowds a team of `threads` on `cpus`: more than BUSY_CORES beyond those it leaves free. */
function crowded(otherBusyCores: number, cpus: number, threads: number): boolean {
  return otherBusyCores > Math.max(0, cpus - threads) + BUSY_CORES;
}

/** The wait to use, from the environment and the machine's load (pure; see applyThreadWait). */
export function chooseThreadWait(facts: ThreadWaitFacts): ThreadWait {
  const own = userSetting(facts.env);
  if (own) return { mode: 'environment', setting: own, why: 'set by the environment' };
  if (facts.otherBusyCores === null) {
    return { mode: 'sleep', setting: 'OMP_WAIT_POLICY=PASSIVE', why: 'the load of the cores could not be read' };
  }
  const used = `other processes used ${facts.otherBusyCores.toFixed(2)} of ${facts.cpus} CPUs at load`;
  if (crowded(facts.otherBusyCores, facts.cpus, facts.threads)) return { mode: 'sleep', setting: 'OMP_WAIT_POLICY=PASSIVE', why: used };
  return { mode: 'spin', setting: `GOMP_SPINCOUNT=${SPIN_COUNT}`, why: used };
}

/** The cpu line of /proc/stat: [busy, all] jiffies over every CPU, and the number of CPUs listed. */
export function parseProcStat(text: string): { busy: number; all: number; cpus: number } {
  const lines = text.split('\n');
  const total = lines.find((line) => /^cpu\s/.test(line));
  if (!total) throw new Error('/proc/stat has no cpu line');
  // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user already)
  const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = total.trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq;
  return { busy, all: busy + idle + iowait + steal, cpus: lines.filter((line) => /^cpu\d+\s/.test(line)).length };
}

/** This process's own CPU time in jiffies (utime + stime of /proc/self/stat). */
export function parseOwnJiffies(text: string): number {
  // the command name (field 2) may hold spaces and parentheses: the fields after it start past the last ')'
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Other processes' CPU use over `ms` milliseconds, in cores (this process sleeps meanwhile); null off Linux. */
export function sampleOtherBusyCores(ms = SAMPLE_MS): number | null {
  const watch = new CoreLoadWatch();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  return watch.sample();
}

/** The OpenMP team's size as libgomp will make it: OMP_NUM_THREADS's first number, else every CPU. */
export function teamSize(env: NodeJS.ProcessEnv, cpus: number): number {
  const asked = Number.parseInt((env.OMP_NUM_THREADS ?? '').split(',')[0], 10);
  return Number.isInteger(asked) && asked > 0 ? asked : cpus;
}

let applied: ThreadWait | undefined;

/** Chooses the wait and sets it in `env` (process.env: libgomp reads it when the addon loads). Once per process. */
export function applyThreadWait(env: NodeJS.ProcessEnv = process.env): ThreadWait {
  if (applied) return applied;
  const cpus = os.availableParallelism();
  const own = userSetting(env);
  const wait = chooseThreadWait({ env, cpus, threads: teamSize(env, cpus), otherBusyCores: own ? 0 : sampleOtherBusyCores() });
  // drop what a parent process chose (it would otherwise bend the user's own setting: GOMP_SPINCOUNT outranks
  // OMP_WAIT_POLICY in libgomp), then set this process's choice and mark it as ours
  for (const name of ['OMP_WAIT_POLICY', 'GOMP_SPINCOUNT']) {
    if (env[CHOSEN_MARK] === `${name}=${env[name]}`) delete env[name];
  }
  delete env[CHOSEN_MARK];
  if (wait.mode !== 'environment') {
    const [name, value] = wait.setting.split('=');
    env[name] = value;
    env[CHOSEN_MARK] = wait.setting;
  }
  applied = wait;
  return wait;
}

/** The choice applyThreadWait made in this process, if it ran. */
export function appliedThreadWait(): ThreadWait | undefined {
  return applied;
}

/** One short line: 'spin (GOMP_SPINCOUNT=30000; other processes used 0.02 of 2 CPUs at load)'. */
export function describeThreadWait(wait: ThreadWait): string {
  return `${wait.mode} (${wait.setting}; ${wait.why})`;
}

/**
 * `env` without the wait applyThreadWait set in it (and its mark): the environment the process started with, for a
 * program that should wait its own way (the PyTorch peer's OpenMP spins by default). The user's own settings stay.
 */
export function withoutChosenWait(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  const chosen = out[CHOSEN_MARK];
  if (chosen) {
    const [name, value] = chosen.split('=');
    if (out[name] === value) delete out[name];
    delete out[CHOSEN_MARK];
  }
  return out;
}

/**
 * Other processes' CPU use between one call of `sample()` and the next, for a long run to notice a job that started
 * after it chose to spin (the one case the choice at load cannot see).
 */
export class CoreLoadWatch {
  private last: { busy: number; all: number; cpus: number; own: number } | null;

  constructor(private readonly read: () => { stat: string; self: string } | null = readProcFiles) {
    this.last = this.snapshot();
  }

  private snapshot(): { busy: number; all: number; cpus: number; own: number } | null {
    try {
      const files = this.read();
      return files ? { ...parseProcStat(files.stat), own: parseOwnJiffies(files.self) } : null;
    } catch {
      return null;
    }
  }

  /** Other processes' use since the last sample, in cores; null where it cannot be read or no time passed. */
  sample(): number | null {
    const now = this.snapshot();
    const before = this.last;
    this.last = now;
    if (!now || !before) return null;
    const perCpu = (now.all - before.all) / Math.max(1, now.cpus);
    if (!(perCpu > 0)) return null;
    return Math.max(0, now.busy - before.busy - (now.own - before.own)) / perCpu;
  }
}

function readProcFiles(): { stat: string; self: string } | null {
  if (!fs.existsSync('/proc/stat')) return null;
  return { stat: fs.readFileSync('/proc/stat', 'utf8'), self: fs.readFileSync('/proc/self/stat', 'utf8') };
}

/**
 * What to tell the user when a spinning team finds other processes on its cores (`otherBusyCores` over a stretch of
 * the run), or null: only a choice this module made to spin is warned about (the environment's own setting is the
 * user's).
 */
export function contentionWarning(wait: ThreadWait | undefined, otherBusyCores: number | null, cpus: number, threads: number): string | null {
  if (!wait || wait.mode !== 'spin' || otherBusyCores === null || !crowded(otherBusyCores, cpus, threads)) return null;
  return `other processes are using ${otherBusyCores.toFixed(1)} of ${cpus} CPUs; this run's OpenMP workers spin between kernels ` +
    `(chosen when the cores were idle at its start), which slows this run and theirs, up to twice. On a machine that runs ` +
    'jobs side by side, start runs with OMP_WAIT_POLICY=PASSIVE (a run resumes from its last checkpoint).';
}
