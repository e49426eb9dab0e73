/**
 * Where the repository's own files are: its root (the folder holding package.json, found once from this compiled
 * file) and the paths under it (configs/, data/teachers/, ...), for the library, the CLI and the notebooks alike.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The repository root: the nearest folder above this file that holds package.json (lib/ in source, dist/lib/ compiled). */
function findRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`no package.json above ${__dirname}: the workbench's files are not where it was built`);
}

/** The repository root, absolute. */
export const REPOSITORY_ROOT = findRoot();

/** A path under the repository root, from its parts ('data', 'teachers'). */
export function repositoryPath(...parts: string[]): string {
  return path.join(REPOSITORY_ROOT, ...parts);
}
