/** Checks of an output path before any work starts, so a bad --out fails at once with the flag named, not with a raw EEXIST or EACCES later. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Throws with `label` unless the folder `target` exists or can be created, and this process may write in it. */
function assertFolderUsable(target: string, label: string): void {
  let existing = target;  // the folder itself, else its nearest existing parent
  while (!fs.existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  const where = existing === target ? 'the folder is' : `cannot create it, ${existing} is`;
  if (!fs.statSync(existing).isDirectory()) throw new Error(`${label}: ${existing === target ? `${target} is a file, not a folder` : `cannot create it, ${existing} is a file`}`);
  try {
    fs.accessSync(existing, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw new Error(`${label}: ${where} not writable by this user (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Throws an error naming `flag` unless `dir` is a folder this process can write, or can create. */
export function checkOutputFolder(dir: string, flag: string): void {
  assertFolderUsable(path.resolve(dir), `${flag} ${dir}`);
}

/** Throws an error naming `flag` unless `file` can be written: not a folder, writable if it exists, in a folder this process can write or create. */
export function checkOutputFile(file: string, flag: string): void {
  const target = path.resolve(file);
  const label = `${flag} ${file}`;
  if (fs.existsSync(target)) {
    if (fs.statSync(target).isDirectory()) throw new Error(`${label}: ${target} is a folder; name a file`);
    try {
      fs.accessSync(target, fs.constants.W_OK);
    } catch (err) {
      throw new Error(`${label}: the file is not writable by this user (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  assertFolderUsable(path.dirname(target), label);
}
