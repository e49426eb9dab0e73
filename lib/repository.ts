/**
 * Where the repository's own files are: its root (the folder holding package.json, found once from this compiled
 * file) and the paths under it (configs/, data/teachers/, ...), for the library, the CLI and the notebooks alike.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The repository root: the nearest folder above this file that holds package.json (from lib/ in source, dist/lib/
 * compiled); the current directory when none does (the compiled files copied elsewhere).
 */
function findRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}

/** The repository root, absolute. */
export const REPOSITORY_ROOT = findRoot();

/** A path under the repository root, from its parts ('data', 'teachers'). */
export function repositoryPath(...parts: string[]): string {
  return path.join(REPOSITORY_ROOT, ...parts);
}
