/**
 * No machine's absolute path in the repository: no tracked file names a folder under a home, the work
 * area or a temp folder, and a tuning run records the checkpoint it started from (init)
 * relative to its own folder, so a run tree still resumes and finds its teacher after it is moved.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { trainCommand } from '../cli/ect';
import { REPOSITORY_ROOT } from '../lib/repository';
import { loadRunsTable, readRun, totalRunFlops } from '../lib/results';
import { disposeCheckpoint, latestCheckpoint, loadCheckpoint } from '../lib/train/checkpoint';
import { CHECKPOINT_DIR, recordedRunInit, resolveRunInit } from '../lib/runs/folder';

/** A root-anchored path from its parts, so this file does not itself contain the paths it looks for. */
const rooted = (...parts: string[]): string => `/${parts.join('/')}`;
/** A relative path from its parts (kept out of the file's text for the same reason). */
const relative = (...parts: string[]): string => parts.join('/');

/** Characters of a path name: a match must not start or end inside one (build/tmp is not the temp folder). */
const NAME_CHARS = 'A-Za-z0-9._~-';

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * The absolute paths no tracked file may name: a user's home folder, root's home, the work area and the
 * temp folders, plus this machine's own home and temp folders when they are not '/'.
 */
export function machinePathPattern(homedir = os.homedir(), tmpdir = os.tmpdir()): RegExp {
  const roots = [`${escapeRegExp(rooted('home'))}/[${NAME_CHARS}]+`, ...['root', 'work', 'tmp', 'var/tmp'].map((p) => escapeRegExp(rooted(p)))];
  for (const own of [homedir, tmpdir]) {
    const normalised = own.replace(/\/+$/, '');
    if (normalised !== '' && normalised.startsWith('/')) roots.push(escapeRegExp(normalised));
  }
  return new RegExp(`(?<![/${NAME_CHARS}])(?:${roots.join('|')})(?![${NAME_CHARS}])`, 'g');
}

/** Lines that look like machine paths but are not: each names its file, the exact line and why. */
const ALLOWED: Array<{ file: string; line: string; why: string }> = [
  { file: '.gitignore', line: `${rooted('tmp')}/`, why: 'a repository-relative ignore pattern (the checkout\'s own tmp folder)' },
];

/** Every machine path in `text` as `file:line: text` (the line clipped around the hit; checkpoints have long JSON lines). */
export function findMachinePaths(file: string, text: string, pattern = machinePathPattern()): string[] {
  const hits: string[] = [];
  const lines = text.split('\n');
  lines.forEach((line, index) => {
    pattern.lastIndex = 0;
    for (let match = pattern.exec(line); match !== null; match = pattern.exec(line)) {
      if (ALLOWED.some((a) => a.file === file && a.line === line.replace(/\r$/, ''))) continue;
      const from = Math.max(0, match.index - 60);
      const clipped = line.slice(from, match.index + match[0].length + 60).replace(/[^\x20-\x7e]/g, '.').trim();
      hits.push(`${file}:${index + 1}: ${from > 0 ? '...' : ''}${clipped}`);
    }
  });
  return hits;
}

/** Tracked files of the checkout at `root`, or null when it is not a git checkout (or git is missing). */
function trackedFiles(root: string): string[] | null {
  const listed = spawnSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (listed.error || listed.status !== 0) return null;
  return listed.stdout.split('\0').filter(Boolean);
}

describe('no machine paths in tracked files', () => {
  it('finds home, root, work and temp paths but not relative ones, URLs or the allowed ignore pattern', () => {
    const pattern = machinePathPattern('/Users/alice', '/var/folders/xy/T');
    const found = (text: string, file = 'f.txt') => findMachinePaths(file, text, pattern);
    for (const bad of [rooted('home', 'bob', 'ect'), rooted('root', '.cache'), rooted('work', 'main', 'runs'), `"${rooted('tmp')}"`,
      `'${rooted('tmp', 'x.png')}'`, rooted('var', 'tmp', 'a'), rooted('Users', 'alice', 'repo'), rooted('var', 'folders', 'xy', 'T', 'run')]) {
      assert.equal(found(`x ${bad} y`).length, 1, bad);
    }
    for (const fine of [relative('build', 'tmp', 'x'), relative('.', 'tmp', 'y'), relative('..', 'work', 'z'), `https://example.org${rooted('work', 'a')}`, 'a/home/b', `${rooted('tmpfs')}`,
      rooted('homework'), rooted('Users', 'alicia'), rooted('nonexistent', 'run')]) {
      assert.deepEqual(found(`x ${fine} y`), [], fine);
    }
    assert.deepEqual(found(`${rooted('tmp')}/`, '.gitignore'), []);
    assert.equal(found(`${rooted('tmp')}/x`, '.gitignore').length, 1, 'the allowance is for that one line only');
    assert.deepEqual(found(`a\nb ${rooted('work', 'x')}\n`, 'c.json'), [`c.json:2: b ${rooted('work', 'x')}`]);
  });

  it('no tracked file, text or binary, names an absolute path under a home, work or temp folder', function () {
    const root = REPOSITORY_ROOT;
    const files = trackedFiles(root);
    if (files === null) {
      const reason = `${root} is not a git checkout (or git is missing), so there are no tracked files to check`;
      if (process.env.CI === 'true') throw new Error(`CI=true: ${reason}`);
      console.log(`    skipped: ${reason}`);
      this.skip();
    }
    const hits: string[] = [];
    for (const file of files!) {
      const absolute = path.join(root, file);
      if (!fs.existsSync(absolute) || !fs.statSync(absolute).isFile()) continue;  // deleted in the work tree, or a submodule
      // latin1 maps every byte to one character: binary files (checkpoints embed their config as JSON) are searched too
      hits.push(...findMachinePaths(file, fs.readFileSync(absolute, 'latin1')));
    }
    if (hits.length) assert.fail(`${hits.length} machine path(s) in tracked files (make them relative, or build them from os.tmpdir()):\n${hits.join('\n')}`);
  });
});

describe('a tuning run records its init relative to its folder', () => {
  const quiet = () => {};
  const tiny = { data: 'synthetic' as const, batch: 4, evalEvery: 0, progress: false, backend: process.env.ECT_TEST_BACKEND,
    set: ['net.modelChannels=8', 'edm.heunSteps=2'] };
  let root: string;

  before(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-paths-')); });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('resolves and records init paths', () => {
    const run = path.join(root, 'x', 'study', 'ect');
    assert.equal(recordedRunInit(path.join(root, 'x', 'teachers', 't'), run), '../../teachers/t');
    assert.equal(recordedRunInit('some/where', null), 'some/where');
    assert.equal(resolveRunInit('../../teachers/t', run), path.join(root, 'x', 'teachers', 't'));
    assert.equal(resolveRunInit(path.join(root, 'elsewhere'), run), path.join(root, 'elsewhere'));
  });

  it('stores --init relative to the run, and a moved run pair resumes and finds its teacher', async () => {
    const before = path.join(root, 'before');
    const teacher = path.join(before, 'teachers', 't');
    const tuned = path.join(before, 'study', 'ect');
    await trainCommand('pretrain', { ...tiny, config: 'fmnist-edm-tiny', iters: 1, out: teacher }, quiet);
    // --init as a user types it: relative to the current directory
    await trainCommand('tune', { ...tiny, config: 'fmnist-ect-tiny', iters: 1, init: path.relative(process.cwd(), teacher), out: tuned }, quiet);
    const recorded = (dir: string) => {
      const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { init?: string };
      const ckpt = loadCheckpoint(latestCheckpoint(path.join(dir, CHECKPOINT_DIR))!);
      disposeCheckpoint(ckpt);
      return { config: config.init, checkpoint: (ckpt.meta.config as { init?: string }).init, iteration: ckpt.meta.iteration };
    };
    assert.deepEqual(recorded(tuned), { config: '../../teachers/t', checkpoint: '../../teachers/t', iteration: 1 });

    // move the whole tree: nothing may still point into the old place
    const after = path.join(root, 'after');
    fs.cpSync(before, after, { recursive: true });
    fs.rmSync(before, { recursive: true });
    const moved = path.join(after, 'study', 'ect');
    await trainCommand('tune', { set: [], progress: false, backend: process.env.ECT_TEST_BACKEND, resume: true, iters: 2, out: moved }, quiet);
    assert.deepEqual(recorded(moved), { config: '../../teachers/t', checkpoint: '../../teachers/t', iteration: 2 });
    assert.equal(resolveRunInit(readRun(moved).config.init!, moved), path.join(after, 'teachers', 't'));
    const table = loadRunsTable([moved], { includePretraining: true });
    const pretrain = totalRunFlops(readRun(path.join(after, 'teachers', 't')));
    assert.ok(pretrain > 0);
    assert.ok((table.array('pretrain_flops') as number[]).every((f) => f === pretrain), 'the moved teacher\'s compute is counted');
  });
});
