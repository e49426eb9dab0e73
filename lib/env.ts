/**
 * Facts about the machine and software a result came from (the machine's facts of lib/machine/facts.ts, in the
 * vocabulary a run's config.json uses, with tfjs and backend versions, oneDNN, GPU and CUDA), as data and as
 * environment.md / environment.json.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadAddon } from './backend/onednn/addon';
import { nodeBindingProblem } from './backend/select';
import { machineFacts, type MachineFacts } from './machine/facts';
import { REPOSITORY_ROOT } from './repository';

export interface EnvironmentFacts extends MachineFacts {
  writtenAt: string;
  packages: Record<string, string>;    // tfjs and backend package versions, 'not installed' if absent
  onednn: string;                      // the native addon's oneDNN version, or why it cannot be used
  gpus: string[];                      // from nvidia-smi; empty when none
  cuda: string;                        // CUDA toolkit (nvcc) and driver versions, or 'none'
  simd?: string;                       // the CPU's widest vector extensions (from /proc/cpuinfo), where known
  commit?: string;                     // the workbench's git commit, '+ local changes' when the tree differs
}

const NODE_BINDING_PACKAGES = ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'];

/** Packages whose versions decide numerical behaviour and speed. */
export const RECORDED_PACKAGES = [
  '@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm',
  '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'tslab', 'plotly.js-dist', 'arquero',
];

function packageVersion(name: string): string {
  let version: string;
  try {
    const file = require.resolve(`${name}/package.json`);
    version = (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
  // tfjs-node's package installs without its addon when its install script could not download libtensorflow
  if (NODE_BINDING_PACKAGES.includes(name) && nodeBindingProblem(name)) return `${version}, without its native addon (not usable)`;
  return version;
}

/** Runs a command briefly; undefined when it is missing or fails (no GPU, no toolkit). */
function tryCommand(command: string, args: string[]): string | undefined {
  try {
    return execFileSync(command, args, { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function onednnVersion(): string {
  const { addon, reason } = loadAddon();
  if (!addon) return `not in use: ${reason}`;
  return `oneDNN ${addon.version()} available (native addon, ${addon.threads()} threads; used when the backend is 'onednn')`;
}

function gpuFacts(): { gpus: string[]; cuda: string } {
  const smi = tryCommand('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader']);
  const gpus = smi ? smi.split('\n').map((l) => l.trim()).filter(Boolean) : [];
  const nvcc = tryCommand('nvcc', ['--version']);
  const toolkit = nvcc ? /release ([0-9.]+)/.exec(nvcc)?.[1] : undefined;
  const parts = [];
  if (toolkit) parts.push(`CUDA toolkit ${toolkit} (nvcc)`);
  if (gpus.length) parts.push(`driver ${gpus[0].split(',').pop()?.trim()}`);
  return { gpus, cuda: parts.length ? parts.join(', ') : 'none' };
}

/** The widest x86 vector extensions the CPU reports (they decide the native kernels' speed), or 'unknown'. */
function simdExtensions(): string {
  try {
    const flags = new Set((/^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/));
    const known = ['avx512f', 'avx512_bf16', 'amx_bf16', 'avx2', 'fma', 'avx', 'sse4_2', 'neon', 'asimd'].filter((f) => flags.has(f));
    return known.length ? known.join(' ') : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * The workbench's git commit (short hash), with '+ local changes' when tracked files outside results/ differ from it
 * (what a run or benchmark writes into results/, such as the benchmark's train-step-latest.md, is not code).
 */
export function workbenchCommit(root = REPOSITORY_ROOT): string {
  const head = tryCommand('git', ['-C', root, 'rev-parse', '--short=12', 'HEAD']);
  if (!head) return 'not a git checkout';
  const changed = tryCommand('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)results']);
  return changed ? `${head} + local changes` : head;
}

/** Collects the facts about this machine and the installed packages. */
export function collectEnvironment(): EnvironmentFacts {
  return {
    writtenAt: new Date().toISOString(),
    ...machineFacts(),
    packages: Object.fromEntries(RECORDED_PACKAGES.map((name) => [name, packageVersion(name)])),
    onednn: onednnVersion(),
    ...gpuFacts(),
    simd: simdExtensions(),
    commit: workbenchCommit(),
  };
}

/** The facts as a short markdown document. */
export function environmentMarkdown(facts: EnvironmentFacts, title = 'Environment'): string {
  const lines = [
    `# ${title}`,
    '',
    `Written ${facts.writtenAt} by \`npm run env\` (lib/env.ts).`,
    '',
    '| fact | value |',
    '| --- | --- |',
    `| CPU | ${facts.cpu}${facts.simd ? ` (${facts.simd})` : ''} |`,
    ...(facts.cpuArch ? [`| CPU microarchitecture | ${facts.cpuArch} |`] : []),
    `| logical cores | ${facts.cores} |`,
    `| memory | ${facts.memoryGiB} GiB |`,
    `| OS | ${facts.os} |`,
    `| Node | ${facts.node} |`,
    ...Object.entries(facts.packages).map(([name, version]) => `| ${name} | ${version} |`),
    `| oneDNN | ${facts.onednn} |`,
    `| GPU | ${facts.gpus.length ? facts.gpus.join('; ') : 'none'} |`,
    `| CUDA | ${facts.cuda} |`,
    ...(facts.commit ? [`| workbench commit | ${facts.commit} |`] : []),
    '',
  ];
  return lines.join('\n');
}

/**
 * Writes environment.md and environment.json into a folder (e.g. a results folder); returns their paths.
 * Sections written by hand below the facts (from the first `## ` heading of an existing environment.md on,
 * such as which results came from where) are kept.
 */
export function writeEnvironment(folder: string, facts: EnvironmentFacts = collectEnvironment()): { markdown: string; json: string } {
  fs.mkdirSync(folder, { recursive: true });
  const markdown = path.join(folder, 'environment.md');
  const json = path.join(folder, 'environment.json');
  const previous = fs.existsSync(markdown) ? fs.readFileSync(markdown, 'utf8') : '';
  const handWritten = /^## /m.exec(previous);
  fs.writeFileSync(markdown, environmentMarkdown(facts) + (handWritten ? `\n${previous.slice(handWritten.index)}` : ''));
  fs.writeFileSync(json, JSON.stringify(facts, null, 2) + '\n');
  return { markdown, json };
}

export type NotebookMode = 'small' | 'full';

/**
 * The notebooks' mode from ECT_NOTEBOOK_MODE: 'small' (CI: tiny runs in seconds, outputs labelled as
 * such) or 'full' (read results/). Unset means 'full' in Jupyter; the headless runner sets 'small'.
 */
export function notebookMode(value = process.env.ECT_NOTEBOOK_MODE): NotebookMode {
  if (value === undefined || value === '' || value === 'full') return 'full';
  if (value === 'small') return 'small';
  throw new Error(`ECT_NOTEBOOK_MODE must be 'small' or 'full', got '${value}'`);
}


/**
 * How a record names a folder without a machine's absolute path: relative to the repository root with POSIX
 * separators (results/long/headline/fmnist-ect-base), else, outside the repository, by its name alone.
 */
export function repositoryRelativePath(target: string): string {
  const resolved = path.resolve(target);
  const relative = path.relative(REPOSITORY_ROOT, resolved);
  return relative.startsWith('..') || path.isAbsolute(relative) ? path.basename(resolved) : relative.split(path.sep).join('/') || '.';
}

/** Where a notebook reads runs and writes figures in each mode. */
export interface NotebookPaths {
  root: string;      // the repository root: commands and recorded paths are relative to it
  runs: string;      // small: build/notebook-runs (scratch, tiny runs); full: results/
  figures: string;   // small: build/notebooks/figures; full: results/figures (committed images)
}

/** Small mode keeps its scratch runs and images out of results/, so CI never overwrites real figures. */
export function notebookPaths(mode: NotebookMode, root = REPOSITORY_ROOT): NotebookPaths {
  return mode === 'small'
    ? { root, runs: path.join(root, 'build', 'notebook-runs'), figures: path.join(root, 'build', 'notebooks', 'figures') }
    : { root, runs: path.join(root, 'results'), figures: path.join(root, 'results', 'figures') };
}

