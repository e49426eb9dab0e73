/**
 * The manifest of committed results (results/manifest.json): per folder its study, what it is, the command that
 * makes it, the commit that carries it, the machine and backend, and the notebooks that read it in full mode. The
 * notebooks' committed runs, the READMEs and the stamps of the committed notebooks all come from it.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPOSITORY_ROOT } from '../repository';

/** The manifest, relative to the repository root. */
export const MANIFEST_FILE = 'results/manifest.json';

/** One committed result. Folders are relative to the repository root, '/'-separated. */
export interface ManifestEntry {
  id: string;                 // how code names it, e.g. 'student' for the headline ECT run
  study: string;              // the study it belongs to
  what: string;
  folder: string;             // a folder or a single file
  extraFolders?: string[];    // more folders of the same entry
  command: string;            // the command that makes it, from the repository root
  notebooks: string[];        // the notebooks that read it in full mode (file names without .ipynb)
  commit: string | null;      // the commit that carries it (null: not committed yet)
  machine: string | null;
  backend: string;
}

export interface ResultsManifest {
  description: string;
  entries: ManifestEntry[];
}

/** Reads and checks the manifest: ids unique, every entry with a folder, a command and a notebooks list. */
export function readManifest(root = REPOSITORY_ROOT): ResultsManifest {
  const manifest = JSON.parse(fs.readFileSync(path.join(root, MANIFEST_FILE), 'utf8')) as ResultsManifest;
  const ids = new Set<string>();
  for (const entry of manifest.entries) {
    if (ids.has(entry.id)) throw new Error(`${MANIFEST_FILE}: id '${entry.id}' appears twice`);
    ids.add(entry.id);
    if (!entry.folder || !entry.command || !Array.isArray(entry.notebooks)) throw new Error(`${MANIFEST_FILE}: entry '${entry.id}' lacks a folder, a command or its notebooks`);
  }
  return manifest;
}

/** The entry with this id; an error naming the known ids when there is none. */
export function manifestEntry(id: string, manifest = readManifest()): ManifestEntry {
  const entry = manifest.entries.find((e) => e.id === id);
  if (!entry) throw new Error(`${MANIFEST_FILE} has no entry '${id}' (known: ${manifest.entries.map((e) => e.id).join(', ')})`);
  return entry;
}

/** The folders and files a notebook reads in full mode, sorted. */
export function notebookInputs(notebook: string, manifest = readManifest()): string[] {
  const name = path.basename(notebook, '.ipynb');
  return manifest.entries.filter((e) => e.notebooks.includes(name)).flatMap((e) => [e.folder, ...(e.extraFolders ?? [])]).sort();
}

/** Every file under `relative` (itself when a file), repository-relative and sorted; none when it does not exist. */
function filesUnder(root: string, relative: string): string[] {
  const full = path.join(root, relative);
  if (!fs.existsSync(full)) return [];
  if (fs.statSync(full).isFile()) return [relative];
  return fs.readdirSync(full).sort().flatMap((name) => filesUnder(root, path.posix.join(relative, name)));
}

/**
 * The files git tracks under `root` (repository-relative, '/'-separated), or null when `root` is not a git checkout.
 * A run folder holds more than is committed (checkpoints kept on disk, post-hoc snapshots, locks); a fresh clone has
 * only what is tracked, so a digest made in one and checked in the other must look at those alone.
 */
function trackedFiles(root: string): Set<string> | null {
  try {
    const prefix = execFileSync('git', ['rev-parse', '--show-prefix'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const listed = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 * 2 ** 20 });
    return new Set(listed.split('\0').filter(Boolean).map((file) => (prefix && file.startsWith(prefix) ? file.slice(prefix.length) : file)));
  } catch {
    return null;
  }
}

/**
 * A digest of folders' contents: sha256 over each file's path and the sha256 of its bytes, in sorted order. In a git
 * checkout only the files git tracks count (what a clone has); elsewhere every file.
 */
export function digestInputs(inputs: string[], root = REPOSITORY_ROOT): { digest: string; files: number } {
  const tracked = trackedFiles(root);
  const files = [...new Set(inputs.flatMap((input) => filesUnder(root, input)))].filter((file) => tracked === null || tracked.has(file)).sort();
  const all = createHash('sha256');
  for (const file of files) {
    const bytes = createHash('sha256').update(fs.readFileSync(path.join(root, file))).digest('hex');
    all.update(`${file}\0${bytes}\n`);
  }
  return { digest: all.digest('hex'), files: files.length };
}

/** What a committed notebook records of the run that made its outputs (its metadata.ect). */
export interface NotebookStamp {
  mode: 'full';
  commit: string;             // the commit the outputs were made at ('+ local changes' when the tree differed)
  executedAt: string;
  inputs: string[];           // the folders it read (notebookInputs)
  files: number;
  digest: string;             // digestInputs of those folders
}

/** The stamp of a notebook executed now at `commit`. */
export function notebookStamp(notebook: string, commit: string, root = REPOSITORY_ROOT, manifest = readManifest(root)): NotebookStamp {
  const inputs = notebookInputs(notebook, manifest);
  return { mode: 'full', commit, executedAt: new Date().toISOString(), inputs, ...digestInputs(inputs, root) };
}

/** The parts of a notebook file the checks read. */
export interface NotebookFile {
  cells: Array<{ cell_type: string; source: string[] | string; execution_count?: number | null; outputs?: Array<Record<string, unknown>> }>;
  metadata: { ect?: NotebookStamp } & Record<string, unknown>;
}

const sourceText = (source: string[] | string): string => (Array.isArray(source) ? source.join('') : source);

/**
 * Why a committed notebook's outputs cannot be trusted, or [] when they can: a code cell without output, an error
 * output, no figure or table at all, no stamp, a stamp from another mode, or inputs that changed since the stamp.
 */
export function committedNotebookProblems(notebook: string, nb: NotebookFile, root = REPOSITORY_ROOT, manifest = readManifest(root)): string[] {
  const problems: string[] = [];
  const code = nb.cells.filter((c) => c.cell_type === 'code');
  // tslab leaves execution_count empty, so a cell counts as run when it shows something; only closing the figure
  // renderer (each notebook's last cell) shows nothing
  const silent = code.filter((c) => !(c.outputs ?? []).length && sourceText(c.source).trim() !== 'await close();').length;
  if (silent) problems.push(`${silent} of ${code.length} code cells have no output (not executed?)`);
  code.forEach((cell, i) => {
    for (const output of cell.outputs ?? []) {
      if (output.output_type === 'error') problems.push(`code cell ${i} holds an error: ${String(output.ename)}: ${String(output.evalue)}`);
      if (output.output_type === 'stream' && output.name === 'stderr') problems.push(`code cell ${i} wrote to stderr`);
    }
  });
  const displays = code.flatMap((c) => c.outputs ?? []).filter((o) => o.output_type === 'display_data' || o.output_type === 'execute_result');
  if (!displays.length) problems.push('no displayed output (figure, table or markdown)');
  const stamp = nb.metadata.ect;
  if (!stamp) {
    problems.push('no metadata.ect stamp: outputs not made by `npm run notebooks -- --full --commit`');
    return problems;
  }
  if (stamp.mode !== 'full') problems.push(`outputs made in ${String(stamp.mode)} mode, not full`);
  const inputs = notebookInputs(notebook, manifest);
  if (JSON.stringify(inputs) !== JSON.stringify(stamp.inputs)) problems.push(`reads ${inputs.join(', ') || 'nothing'} now, but its outputs were made from ${stamp.inputs.join(', ') || 'nothing'}`);
  const now = digestInputs(inputs, root);
  if (now.digest !== stamp.digest) problems.push(`its inputs changed since its outputs were made at ${stamp.commit} (${stamp.files} files then, ${now.files} now)`);
  return problems;
}
