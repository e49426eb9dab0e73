/**
 * What stops a training command early and cleanly: Ctrl-C (SIGINT), SIGTERM, and the death of the npm / npx
 * process that started it (killed, it would leave this process training on its own). The loop finishes its
 * step, writes a checkpoint, and the command exits with 128 + the signal's number; a second signal quits at once.
 * A step is synchronous (up to ~15 s on the 55.7M network), and Node runs signal handlers only between steps, so a
 * small watchdog process counts the Ctrl-Cs of the terminal too and ends this one at the second, within a second.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Why a run is asked to stop, and the exit status it ends with. */
export interface StopReason {
  cause: string;
  exitCode: number;
}

/** The stop requests of one command, while it runs. */
export interface StopRequests {
  /** Why the run should stop; null to go on. */
  readonly reason: StopReason | null;
  /** Stops listening (the signals get their default actions back). */
  close(): void;
}

/** 128 + the signal's number, as a shell reports a process the signal ended. */
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
/** The process that started us is gone: ended as by a hang-up (128 + SIGHUP). */
const LAUNCHER_GONE_EXIT_CODE = 129;
/** How often the npm / npx launcher is checked (the check reads one /proc file). */
const LAUNCHER_POLL_MS = 1000;
/** Ancestors looked through for the launcher: npm -> sh -c -> node, a shell or two in between. */
const LAUNCHER_SEARCH_DEPTH = 4;
const SHELLS = ['sh', 'dash', 'bash', 'zsh', 'ash'];

/** The parent pid and the command line of a process, from /proc (Linux); null elsewhere or when it is gone. */
function processInfo(pid: number): { ppid: number; argv: string[]; zombie: boolean } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    return { ppid: Number(ppid), argv, zombie: state === 'Z' };
  } catch {
    return null;
  }
}

/**
 * The npm / npx process this one runs under, or null: only under npm (its environment says so), found by going
 * up through the shells npm starts commands with. An ancestor of another kind ends the search (a test runner
 * that spawned us, or the user's shell: nohup'd runs must outlive that).
 */
function npmLauncher(): number | null {
  if (process.env.npm_lifecycle_event === undefined) return null;
  let pid = process.ppid;
  for (let depth = 0; depth < LAUNCHER_SEARCH_DEPTH && pid > 1; depth++) {
    const info = processInfo(pid);
    if (info === null) return null;
    const [program = '', ...args] = info.argv;
    const name = path.basename(program.split(' ')[0]);  // npm sets its title, "npm exec ...", over its argv
    if (name === 'npm' || name === 'npx' || args.some((a) => /np[mx]-cli\.js$/.test(a))) return pid;
    if (!SHELLS.includes(name)) return null;
    pid = info.ppid;
  }
  return null;
}

/** Whether a process is still running (a zombie, killed but not yet reaped, is not). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !(processInfo(pid)?.zombie ?? false);
}

/**
 * The watchdog's program (plain JavaScript, run by `node -e`): Ctrl-C in a terminal signals the whole foreground
 * process group, so it sees the same SIGINTs as its parent. At the second it kills the parent, which may be
 * inside a step and unable to run its own handler; it ends when its stdin closes (the parent exited or is done).
 */
const WATCHDOG_SOURCE = `
const parent = Number(process.argv[1]);
let seen = 0;
process.on('SIGINT', () => {
  seen += 1;
  if (seen < 2) return;
  process.stderr.write('\\nSIGINT again: quitting at once, without a checkpoint\\n');
  try { process.kill(parent, 'SIGKILL'); } catch {}
  process.exit(0);
});
process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
`;

/** Starts the watchdog of the second Ctrl-C; null where it cannot start (it is a convenience, not a requirement). */
function startWatchdog(): ChildProcess | null {
  try {
    const child = spawn(process.execPath, ['-e', WATCHDOG_SOURCE, String(process.pid)], { stdio: ['pipe', 'ignore', 'inherit'] });
    child.on('error', () => {});
    child.unref();
    (child.stdin as unknown as { unref?(): void }).unref?.();
    return child;
  } catch {
    return null;
  }
}

/**
 * Listens for stop requests while a command trains: the first SIGINT / SIGTERM, or the launcher's death, asks the
 * run to stop after its step (`reason` says why); a further signal exits at once (the run lock is released at exit;
 * a second Ctrl-C during a step ends the process through the watchdog, and the next run takes over its lock).
 */
export function watchStopRequests(log: (line: string) => void): StopRequests {
  let reason: StopReason | null = null;
  const request = (next: StopReason) => {
    if (reason !== null) {
      log(`${next.cause} again: quitting at once, without a checkpoint`);
      process.exit(next.exitCode);
    }
    reason = next;
    log(`\n${next.cause}: stopping after this step and writing a checkpoint${next.exitCode === LAUNCHER_GONE_EXIT_CODE ? '' : ' (Ctrl-C again to quit at once)'}`);
  };
  const onSignal = (signal: keyof typeof SIGNAL_EXIT_CODES) => request({ cause: signal, exitCode: SIGNAL_EXIT_CODES[signal] });
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const watchdog = startWatchdog();
  const launcher = npmLauncher();
  const timer = launcher === null ? null : setInterval(() => {
    if (running(launcher)) return;
    clearInterval(timer!);
    if (reason === null) request({ cause: `the npm process that started this one (pid ${launcher}) is gone`, exitCode: LAUNCHER_GONE_EXIT_CODE });
  }, LAUNCHER_POLL_MS);
  timer?.unref();
  return {
    get reason() {
      return reason;
    },
    close() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (timer) clearInterval(timer);
      watchdog?.stdin?.end();
    },
  };
}
