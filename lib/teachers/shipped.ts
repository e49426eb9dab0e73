/**
 * The teachers shipped with the workbench (data/teachers/<name>/: config.json, metrics.csv, an EMA checkpoint,
 * teacher.json): their folder, their names, and what `--init <name>` finds by name.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repositoryPath } from '../repository';

/** The shipped teachers' folder, data/teachers under the repository root. */
export const SHIPPED_TEACHERS_DIR = repositoryPath('data', 'teachers');

/** Names of the shipped teachers (folders of SHIPPED_TEACHERS_DIR, or of `dir`; hidden ones, such as a teacher being shipped, left out). */
export function shippedTeachers(dir = SHIPPED_TEACHERS_DIR): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => !name.startsWith('.') && fs.statSync(path.join(dir, name)).isDirectory()).sort() : [];
}

/**
 * What `--init <target>` names: a checkpoint file or run folder (from the current directory), else a shipped
 * teacher by name. An absolute path, or a target that is neither, comes back as a path (the load then says
 * what is missing, and lists the shipped teachers).
 */
export function resolveInitTarget(target: string, shippedDir = SHIPPED_TEACHERS_DIR): string {
  if (fs.existsSync(target) || path.isAbsolute(target)) return path.resolve(target);
  const shipped = path.join(shippedDir, target);
  if (!target.includes('/') && fs.existsSync(shipped)) return shipped;
  return path.resolve(target);
}
