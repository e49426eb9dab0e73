/**
 * Writes that name their file when they fail (Node's ENOSPC says only "write"), and leave either the old
 * content or the new one: whole files through a temporary file and a rename, appended lines whole or not at all.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** What went wrong, in words, for the usual errors of a write. */
const WRITE_PROBLEMS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EFBIG: 'file too large for this file system',
  EIO: 'input/output error',
  ENOENT: 'its folder does not exist',
  EISDIR: 'it is a folder',
};

/** An error saying which file could not be written and why; the original error is its cause. */
export function writeError(file: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const problem = (code !== undefined && WRITE_PROBLEMS[code]) || (err as Error).message;
  const error = new Error(`cannot write ${file}: ${problem}${code ? ` (${code})` : ''}`, { cause: err });
  (error as NodeJS.ErrnoException).code = code;
  return error;
}

/** Runs a write of `file`, rethrowing its error as writeError(file, ...) (errors that already name it pass). */
export function namingFile<T>(file: string, write: () => T): T {
  try {
    return write();
  } catch (err) {
    if (err instanceof Error && err.message.startsWith(`cannot write ${file}:`)) throw err;
    throw writeError(file, err);
  }
}

/** The temporary file of an atomic write of `file` by this process (run-folder.ts removes orphaned ones). */
export function temporaryPath(file: string): string {
  return `${file}.tmp-${process.pid}`;
}

/**
 * Writes `file` atomically: its temporary file, then a rename over it, so a crash or a full disk leaves the
 * old file (the temporary one is removed when the write fails). Errors name `file`.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = temporaryPath(file);
  namingFile(file, () => {
    try {
      fs.writeFileSync(tmp, data);
      fs.renameSync(tmp, file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
  });
}

/** Writes `file` in place (images, reports: a partial one is harmless); errors name it. */
export function writeFileNamed(file: string, data: string | Uint8Array): void {
  namingFile(file, () => fs.writeFileSync(file, data));
}

/**
 * Appends `text` (whole lines) to `file`, whole or not at all: when the write fails part way (a full disk),
 * the file is cut back to its length before, so no torn line is left. Errors name `file`.
 */
export function appendWhole(file: string, text: string): void {
  namingFile(file, () => {
    const fd = fs.openSync(file, 'a');
    const before = fs.fstatSync(fd).size;
    try {
      const bytes = Buffer.from(text, 'utf8');
      let written = 0;
      while (written < bytes.length) written += fs.writeSync(fd, bytes, written, bytes.length - written);
    } catch (err) {
      try { fs.ftruncateSync(fd, before); } catch { /* the reader drops a torn last line anyway */ }
      throw err;
    } finally {
      fs.closeSync(fd);
    }
  });
}

/**
 * Throws writeError(file, ...) unless `file` can be written now: it is writable when it exists, else its folder
 * exists and is writable. For commands that check their outputs before long work rather than after it.
 */
export function assertWritable(file: string): void {
  try {
    if (fs.existsSync(file)) {
      if (fs.statSync(file).isDirectory()) throw Object.assign(new Error('it is a folder'), { code: 'EISDIR' });
      fs.accessSync(file, fs.constants.W_OK);
    } else {
      fs.accessSync(path.dirname(file), fs.constants.W_OK);
    }
  } catch (err) {
    throw writeError(file, err);
  }
}
