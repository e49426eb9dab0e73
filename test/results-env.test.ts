/** Tests of the environment record (npm run env) and the notebook mode and paths. */
import { strict as assert } from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { collectEnvironment, environmentMarkdown, notebookMode, notebookPaths, workbenchCommit, writeEnvironment } from '../lib/env';
import { REPOSITORY_ROOT } from '../lib/repository';

describe('environment record', () => {
  it('collects this machine\'s facts', () => {
    const facts = collectEnvironment();
    assert.equal(facts.cores, os.cpus().length);
    assert.equal(facts.node, process.version);
    assert.ok(facts.memoryGiB > 0);
    assert.match(facts.packages['@tensorflow/tfjs-core'], /^\d+\.\d+\.\d+$/);
    assert.ok(facts.onednn.length > 0);
    // a short hash (maybe with local changes) in a git checkout, as in CI; said so outside one
    assert.match(facts.commit ?? '', /^([0-9a-f]{12}( \+ local changes)?|not a git checkout)$/);
    // on Linux x86 the record names the microarchitecture, and environment.md shows it
    if (/^(x64|ia32)$/.test(os.arch()) && fs.existsSync('/proc/cpuinfo')) assert.match(facts.cpuArch ?? '', /family 0x[0-9a-f]+.*model 0x[0-9a-f]+/);
    const markdown = environmentMarkdown(facts);
    if (facts.cpuArch) assert.ok(markdown.includes(`| CPU microarchitecture | ${facts.cpuArch} |`), markdown);
    for (const fact of ['| CPU |', '| logical cores |', '| memory |', '| OS |', '| Node |', '| oneDNN |', '| GPU |', '| CUDA |', '| workbench commit |']) {
      assert.ok(markdown.includes(fact), `missing ${fact}`);
    }
  });

  it('names the commit, and local changes only where code (not results/) differs from it', () => {
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-commit-'));
    const git = (...args: string[]) => {
      const run = spawnSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      return run.stdout.trim();
    };
    try {
      git('init', '-q');
      fs.mkdirSync(path.join(repo, 'results'));
      fs.mkdirSync(path.join(repo, 'lib'));
      fs.writeFileSync(path.join(repo, 'results', 'latest.md'), 'a');
      fs.writeFileSync(path.join(repo, 'lib', 'code.ts'), 'a');
      git('add', '-A');
      git('commit', '-q', '-m', 'x');
      const head = git('rev-parse', '--short=12', 'HEAD');
      assert.equal(workbenchCommit(repo), head);
      fs.writeFileSync(path.join(repo, 'results', 'latest.md'), 'b');  // a benchmark's report rewritten
      fs.writeFileSync(path.join(repo, 'results', 'new.md'), 'b');     // and a new one
      assert.equal(workbenchCommit(repo), head);
      fs.writeFileSync(path.join(repo, 'lib', 'code.ts'), 'b');
      assert.equal(workbenchCommit(repo), `${head} + local changes`);
      assert.equal(workbenchCommit(path.join(repo, 'missing')), 'not a git checkout');
    } finally {
      fs.rmSync(repo, { recursive: true, force: true });
    }
  });

  it('the script writes environment.md and environment.json into a folder', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-env-'));
    try {
      const run = spawnSync(process.execPath, [path.join(REPOSITORY_ROOT, 'scripts', 'write-environment.js'), dir], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      const json = JSON.parse(fs.readFileSync(path.join(dir, 'environment.json'), 'utf8'));
      assert.equal(json.cores, os.cpus().length);
      assert.match(fs.readFileSync(path.join(dir, 'environment.md'), 'utf8'), /^# Environment/);
      const again = writeEnvironment(path.join(dir, 'nested'));
      assert.ok(fs.existsSync(again.markdown));
      // a section written by hand under the facts survives a rewrite; the facts are renewed
      fs.writeFileSync(again.markdown, '# Environment\n\n| CPU | old |\n\n## Committed results\n\n| folder | made by |\n');
      writeEnvironment(path.join(dir, 'nested'));
      const rewritten = fs.readFileSync(again.markdown, 'utf8');
      assert.ok(rewritten.endsWith('## Committed results\n\n| folder | made by |\n'), rewritten);
      assert.ok(!rewritten.includes('| CPU | old |') && rewritten.includes('| logical cores |'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('notebook mode and paths', () => {
  it('reads ECT_NOTEBOOK_MODE, defaulting to full, and rejects other values', () => {
    assert.equal(notebookMode(undefined), 'full');
    assert.equal(notebookMode('small'), 'small');
    assert.throws(() => notebookMode('tiny'), /ECT_NOTEBOOK_MODE must be 'small' or 'full', got 'tiny'/);
  });

  it('keeps small-mode runs and figures out of results/', () => {
    const small = notebookPaths('small', '/repo');
    const full = notebookPaths('full', '/repo');
    assert.ok(!small.runs.startsWith('/repo/results') && !small.figures.startsWith('/repo/results'));
    assert.equal(full.figures, '/repo/results/figures');
  });
});
