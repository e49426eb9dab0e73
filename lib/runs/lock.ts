/**
 * Who writes a run folder: a lock file (<run>/.lock, lib/runs/folder.ts LOCK_FILE: pid, host, start time, command) held while a process
 * trains in it, so a second writer is refused; and the temporary files (name.tmp-<pid>) that writers killed
 * mid-write left behind, removed when a run starts or resumes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { temporaryPath, writeError, writeFileNamed } from '../write-file';
import { runPaths } from './folder';

/** What a lock file records about the process that holds it. */
export interface LockHolder {
  pid: number;
  host: string;
  started: string;    // ISO time the lock was taken
  command: string;    // the command line, to recognise the run
}

/** A lock this process holds; release() removes it (it is also removed when the process exits). */
export interface RunLock {
  file: string;
  release(): void;
}

/** Whether a process of this machine is alive (a process of another user counts: kill(pid, 0) says EPERM). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The holder recorded in a lock file, or null when it is unreadable. */
function readHolder(file: string): LockHolder | null {
  try {
    const holder = JSON.parse(fs.readFileSync(file, 'utf8')) as LockHolder;
    return Number.isInteger(holder.pid) && typeof holder.host === 'string' ? holder : null;
  } catch {
    return null;
  }
}

/**
 * Creates the lock file with `holder`'s record unless it exists; true when this call created it. The record is
 * written to a temporary file first and linked to the lock's name (which fails if it exists), so a lock is
 * never seen empty or half written, and a full disk leaves no lock behind.
 */
function createLock(file: string, holder: LockHolder): boolean {
  const tmp = temporaryPath(file);
  try {
    writeFileNamed(tmp, JSON.stringify(holder, null, 2) + '\n');
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw writeError(file, err instanceof Error && err.message.startsWith('cannot write ') ? err.cause : err);  // name the lock, not its temporary file
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Removes the lock of a dead holder (or an unreadable one: null). It is first renamed aside, so that of two
 * processes taking over the same stale lock at once only one removes it: the other finds the first one's new
 * lock aside and puts it back.
 */
function removeStaleLock(file: string, stale: LockHolder | null): void {
  const aside = `${file}.stale-${process.pid}`;
  try {
    fs.renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;  // gone already
    throw err;
  }
  const moved = readHolder(aside);
  if (moved && (stale === null || moved.pid !== stale.pid || moved.started !== stale.started)) {
    try { fs.linkSync(aside, file); } catch { /* a third process holds it now */ }
  }
  fs.rmSync(aside, { force: true });
}

function describe(holder: LockHolder): string {
  return `pid ${holder.pid} on ${holder.host} (${holder.command}, since ${holder.started})`;
}

/**
 * The process training in a run folder now: the holder of its lock when that process is alive on this machine, or
 * the holder of a lock taken on another machine (whose process this one cannot check); null when no lock is held.
 */
export function runLockHolder(runDir: string): (LockHolder & { otherHost: boolean }) | null {
  const holder = readHolder(runPaths(runDir).lock);
  if (holder === null) return null;
  if (holder.host !== os.hostname()) return { ...holder, otherHost: true };
  return processAlive(holder.pid) ? { ...holder, otherHost: false } : null;
}

/**
 * Locks a run folder (creating it) for this process, or throws an error naming the holder. A lock whose process
 * is gone (this host, pid not running) is taken over, said through `log`. A lock of another host cannot be checked:
 * the error says how to remove it.
 */
export function acquireRunLock(runDir: string, command: string, log: (line: string) => void = () => {}): RunLock {
  const file = runPaths(runDir).lock;
  fs.mkdirSync(runDir, { recursive: true });
  const mine: LockHolder = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), command };
  const attempts = 3;  // create; after a stale lock, create again; once more if another process took it over meanwhile
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (createLock(file, mine)) return holdLock(file, mine);
    const holder = readHolder(file);
    if (holder === null && !fs.existsSync(file)) continue;  // released meanwhile
    if (holder === null) {
      // locks are linked into place whole, so an unreadable one was left by something else (an older version on a full disk)
      removeStaleLock(file, null);
      log(`${runDir}: taking over its lock ${file}, which could not be read (empty or damaged): no process of this version holds it`);
      continue;
    }
    if (holder.host !== os.hostname()) {
      throw new Error(`${runDir} is in use by ${describe(holder)}; this machine cannot tell whether that process still runs. ` +
        `If you are sure it does not, delete ${file}`);
    }
    if (holder.pid === process.pid || processAlive(holder.pid)) {
      throw new Error(`${runDir} is in use by ${describe(holder)}: two runs cannot write one folder. ` +
        `Wait for it to finish, stop it (kill -INT ${holder.pid}: it checkpoints and exits), or choose another --out`);
    }
    removeStaleLock(file, holder);
    log(`${runDir}: taking over the lock of ${describe(holder)}: that process is gone`);
  }
  throw new Error(`${runDir}: could not take its lock ${file}: other processes keep taking it`);
}

/** The held lock: released on release() or at process exit, and only while it is still this process's. */
function holdLock(file: string, mine: LockHolder): RunLock {
  const release = () => {
    process.off('exit', release);
    const holder = readHolder(file);
    if (holder && holder.pid === mine.pid && holder.started === mine.started) fs.rmSync(file, { force: true });
  };
  process.on('exit', release);
  return { file, release };
}

/** A temporary file of an atomic write: <name>.tmp-<pid of the writer> (checkpoints, config.json, metrics.csv). */
const TEMPORARY_FILE = /\.tmp-(\d+)$/;

/**
 * Removes the temporary files in a run folder and its checkpoints/ whose writer is gone (killed mid-write:
 * a CIFAR-10 checkpoint's is about 0.9 GB). Call it holding the folder's lock. Returns what it removed.
 */
export function removeOrphanedTemporaryFiles(runDir: string): { files: string[]; bytes: number } {
  const removed = { files: [] as string[], bytes: 0 };
  for (const dir of [runDir, runPaths(runDir).checkpoints]) {
    if (!fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir)) {
      const match = TEMPORARY_FILE.exec(name);
      if (!match) continue;
      const writer = Number(match[1]);
      if (writer !== process.pid && processAlive(writer)) continue;  // a live writer (say, a run of an older version without a lock)
      const file = path.join(dir, name);
      removed.bytes += fs.statSync(file).size;
      fs.rmSync(file, { force: true });
      removed.files.push(path.relative(runDir, file));
    }
  }
  return removed;
}
