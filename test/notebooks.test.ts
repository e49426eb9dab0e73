/**
 * Tests of the notebooks: that the committed ones carry full-mode outputs made from today's result files, how they
 * import the library under tslab, that every notebook runs headlessly
 * in small mode with the tslab kernel without a cell error, and that an executed notebook's HTML draws
 * its plotly figures in headless Chromium without page errors.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { launchChromium } from '../lib/plots';
import { committedNotebookProblems, digestInputs, type NotebookFile } from '../lib/results/manifest';
import { requireSystemPart } from './helpers';

const root = path.resolve(__dirname, '..', '..');
const notebookDir = path.join(root, 'notebooks');
const runner = path.join(root, 'scripts', 'run-notebooks.js');
const notebooks = fs.readdirSync(notebookDir).filter((f) => f.endsWith('.ipynb')).sort();

interface NotebookJson {
  cells: Array<{ cell_type: string; source: string[]; outputs?: unknown[] }>;
  metadata: { kernelspec?: { name: string } };
}
const readNotebook = (file: string): NotebookJson => JSON.parse(fs.readFileSync(file, 'utf8'));

/** Compiles one cell with tslab's own converter, run from `cwd` as the kernel would be; returns its diagnostics. */
function tslabDiagnostics(cwd: string, cell: string): Array<{ code: number; messageText: string }> {
  const script = `const c = require(${JSON.stringify(require.resolve('tslab/dist/converter.js'))}).createConverter();
    const out = c.convert('', ${JSON.stringify(cell)}); c.close();
    process.stdout.write(JSON.stringify(out.diagnostics));`;
  const run = spawnSync(process.execPath, ['-e', script], { cwd, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout);
}

describe('notebooks: sources', () => {
  it('use the tslab kernel and tell a story (markdown between code)', () => {
    assert.ok(notebooks.length >= 6, `only ${notebooks.length} notebooks`);
    for (const name of notebooks) {
      const nb = readNotebook(path.join(notebookDir, name));
      assert.equal(nb.metadata.kernelspec?.name, 'tslab', name);
      const markdown = nb.cells.filter((c) => c.cell_type === 'markdown').length;
      assert.ok(markdown >= 3, `${name}: ${markdown} markdown cells`);
      assert.equal(nb.cells[0].cell_type, 'markdown', `${name} starts with code`);
      // the library is imported compiled; '../lib/' sources cannot compile under tslab (next test)
      const code = nb.cells.filter((c) => c.cell_type === 'code').map((c) => c.source.join('')).join('\n');
      assert.ok(!/from '\.\.\/lib\//.test(code), `${name} imports ../lib sources`);
    }
  });

  it('have one path per cell: no code cell branches, on the mode or otherwise, or leaves a variable to be set in branches', () => {
    // small mode is a miniature of the same study: the mode picks inputs inside the library, never a program in a cell
    for (const name of notebooks) {
      readNotebook(path.join(notebookDir, name)).cells.filter((c) => c.cell_type === 'code').forEach((cell, i) => {
        const code = cell.source.join('');
        assert.ok(!/\bmode\s*[!=]==?|[!=]==?\s*mode\b|\bswitch\s*\(\s*mode\b/.test(code), `${name}, code cell ${i} branches on the mode:\n${code}`);
        assert.ok(!/\blet\s+[A-Za-z_$][\w$]*\s*(,\s*[A-Za-z_$][\w$]*\s*)*;/.test(code), `${name}, code cell ${i} declares an untyped, unset variable:\n${code}`);
        // nor on anything else: a choice (which fit, which title) is the library's, handed to the cell as data to loop over
        assert.ok(!/\b(if|switch)\s*\(|\belse\b|\s\?\s[^\n]*\s:\s/.test(code), `${name}, code cell ${i} branches (if, switch or a conditional expression):\n${code}`);
      });
    }
  });

  it('are committed with full-mode outputs made from the result files as they are now', () => {
    // `npm run notebooks -- --commit` makes them; this fails when one was never run, holds an error or reads changed files
    const problems = notebooks.flatMap((name) => committedNotebookProblems(name, readNotebook(path.join(notebookDir, name)) as unknown as NotebookFile)
      .map((problem) => `${name}: ${problem}`));
    assert.deepEqual(problems, [], `re-run \`npm run notebooks -- --commit\`:\n${problems.join('\n')}`);
    for (const name of notebooks) {
      const text = fs.readFileSync(path.join(notebookDir, name), 'utf8');
      assert.ok(!text.includes(root), `${name} names this machine's checkout path`);
      if (name !== '06-cifar10-gpu.ipynb') assert.match(text, /"image\/png"/, `${name} has no static PNG for viewers without scripts`);
    }
  });

  it('the check catches a notebook that was not run, one with an error and changed inputs', () => {
    const name = '02-training-dynamics.ipynb';
    const nb = readNotebook(path.join(notebookDir, name)) as unknown as NotebookFile;
    const cleared: NotebookFile = { ...nb, cells: nb.cells.map((c) => ({ ...c, execution_count: null, outputs: [] })) };
    assert.match(committedNotebookProblems(name, cleared).join('\n'), /code cells have no output/);
    const broken: NotebookFile = { ...nb, cells: nb.cells.map((c, i) => (i === 3 ? { ...c, outputs: [{ output_type: 'error', ename: 'Error', evalue: 'boom' }] } : c)) };
    assert.match(committedNotebookProblems(name, broken).join('\n'), /holds an error: Error: boom/);
    const stale: NotebookFile = { ...nb, metadata: { ...nb.metadata, ect: { ...nb.metadata.ect!, digest: '0'.repeat(64) } } };
    assert.match(committedNotebookProblems(name, stale).join('\n'), /inputs changed since/);
    // the digest moves with any byte of any file it covers
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-digest-'));
    try {
      fs.mkdirSync(path.join(dir, 'r', 'a'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'r', 'a', 'metrics.csv'), 'iter,loss\n1,0.5\n');
      const before = digestInputs(['r'], dir);
      fs.writeFileSync(path.join(dir, 'r', 'a', 'metrics.csv'), 'iter,loss\n1,0.6\n');
      assert.notEqual(digestInputs(['r'], dir).digest, before.digest);
      assert.equal(before.files, 1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('notebooks: importing the library under tslab', function () {
  // each spawns tslab's converter (TypeScript), about a minute for the six notebooks on two busy cores
  this.timeout(5 * 60 * 1000);

  it('tslab rejects TypeScript sources outside the notebook folder (TS6059, rootDir = the kernel cwd)', () => {
    const diagnostics = tslabDiagnostics(notebookDir, "import { notebookMode } from '../lib/env'; notebookMode();");
    assert.ok(diagnostics.some((d) => d.code === 6059), JSON.stringify(diagnostics));
  });

  it('the compiled library (../dist, declarations + CommonJS) compiles and type-checks from notebooks/', () => {
    assert.deepEqual(tslabDiagnostics(notebookDir, "import { notebookMode } from '../dist/lib/env'; const m: string = notebookMode('small');"), []);
    // and type errors against the library's declarations are still caught
    const wrong = tslabDiagnostics(notebookDir, "import { notebookMode } from '../dist/lib/env'; const m: number = notebookMode('small');");
    assert.ok(wrong.some((d) => d.code === 2322), JSON.stringify(wrong));
  });

  it('every notebook\'s code compiles cell after cell against the library, which it reaches through dist/lib only', () => {
    // tslab's own converter, fed each cell with the declarations of the cells before it, as the kernel does
    const script = `const fs = require('fs');
      const c = require(${JSON.stringify(require.resolve('tslab/dist/converter.js'))}).createConverter();
      const problems = {};
      for (const file of ${JSON.stringify(notebooks)}) {
        let declarations;
        problems[file] = [];
        for (const cell of JSON.parse(fs.readFileSync(file, 'utf8')).cells.filter((cell) => cell.cell_type === 'code')) {
          const out = c.convert(declarations, cell.source.join(''));
          problems[file].push(...out.diagnostics.map((d) => d.messageText));
          declarations = out.declOutput ?? declarations;
        }
      }
      c.close();
      process.stdout.write(JSON.stringify(problems));`;
    const run = spawnSync(process.execPath, ['-e', script], { cwd: notebookDir, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const problems = JSON.parse(run.stdout) as Record<string, string[]>;
    for (const name of notebooks) assert.deepEqual(problems[name], [], `${name} does not compile under tslab`);
    for (const name of notebooks) {
      const code = readNotebook(path.join(notebookDir, name)).cells.filter((c) => c.cell_type === 'code').map((c) => c.source.join('')).join('\n');
      assert.ok(!/from '\.\.\/dist\/cli\//.test(code), `${name} imports the command line; notebooks use the library (dist/lib)`);
    }
  });
});

describe('notebooks: headless execution with the tslab kernel', function () {
  // the whole suite in small mode: a few minutes on two cores
  this.timeout(30 * 60 * 1000);
  let outDir: string;
  before(function () {
    requireSystemPart(this, 'jupyter', 'chromium');
    // the project's own script registers the kernel when it is missing or another checkout's (npm test did already)
    const register = spawnSync(process.execPath, [path.join(root, 'scripts', 'register-kernel.js'), '--if-needed'], { encoding: 'utf8' });
    assert.equal(register.status, 0, `kernel registration failed:\n${register.stdout}\n${register.stderr}`);
    outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-notebooks-'));
  });
  after(() => { if (outDir) fs.rmSync(outDir, { recursive: true, force: true }); });

  it('reports a cell error as a failure, naming the notebook', () => {
    const brokenDir = path.join(outDir, 'broken');
    fs.mkdirSync(brokenDir);
    const nb = {
      cells: [{ cell_type: 'code', id: 'c1', metadata: {}, execution_count: null, outputs: [], source: ["throw new Error('deliberate failure');"] }],
      metadata: { kernelspec: { name: 'tslab', display_name: 'TypeScript', language: 'typescript' } },
      nbformat: 4, nbformat_minor: 5,
    };
    fs.writeFileSync(path.join(brokenDir, 'broken.ipynb'), JSON.stringify(nb));
    const run = spawnSync(process.execPath, [runner, '--dir', brokenDir, '--out', path.join(outDir, 'broken-out')], { encoding: 'utf8' });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /broken: failed/);
    assert.match(run.stderr, /deliberate failure/);
  });

  it('the committed notebooks show their figures and tables on a viewer that runs nothing and has no network', async () => {
    // what a notebook viewer does: convert the stored outputs to HTML, no kernel; plotly's CDN is unreachable here
    const viewerDir = path.join(outDir, 'viewer');
    fs.mkdirSync(viewerDir);
    const browser = await launchChromium();
    try {
      for (const name of notebooks) {
        const convert = spawnSync(process.env.ECT_NBCONVERT || 'jupyter-nbconvert', ['--to', 'html', '--output-dir', viewerDir, path.join(notebookDir, name)], { encoding: 'utf8' });
        assert.equal(convert.status, 0, convert.stderr);
        const html = path.join(viewerDir, name.replace(/\.ipynb$/, '.html'));
        const figures = (fs.readFileSync(html, 'utf8').match(/class="ect-plotly-figure"/g) ?? []).length;
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on('pageerror', (err) => errors.push(err.message));
        await page.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
        await page.goto(`file://${html}`, { waitUntil: 'load', timeout: 60000 });
        const shown = await page.evaluate(() => ({
          images: Array.from(document.querySelectorAll('img')).filter((img) => img.naturalWidth > 0).length,
          tables: document.querySelectorAll('table').length,
        }));
        await page.close();
        assert.deepEqual(errors, [], name);
        assert.ok(shown.images >= figures, `${name}: ${shown.images} images shown for ${figures} figures`);
        assert.ok(shown.tables >= 1, `${name}: no table`);
      }
    } finally {
      await browser.close();
    }
  });

  it('runs every notebook in small mode without a cell error, then draws one in Chromium', async () => {
    const run = spawnSync(process.execPath, [runner, '--html', '--out', outDir], { encoding: 'utf8' });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    for (const name of notebooks) assert.ok(fs.existsSync(path.join(outDir, name)), `${name} was not executed`);

    // the scaling-law notebook has several figures; its HTML export must draw each one
    const html = path.join(outDir, '03-scaling-law.html');
    const expected = (fs.readFileSync(html, 'utf8').match(/class="ect-plotly-figure"/g) ?? []).length;
    assert.ok(expected >= 2, `only ${expected} figure divs in ${html}`);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(err.message));
      await page.goto(`file://${html}`, { waitUntil: 'load', timeout: 60000 });
      await page.waitForFunction((n) => document.querySelectorAll('.ect-plotly-figure svg.main-svg').length >= n,
        expected, { timeout: 60000 });
      const drawnTraces = await page.evaluate(() => document.querySelectorAll('.ect-plotly-figure g.trace').length);
      assert.ok(drawnTraces >= expected, `${drawnTraces} traces drawn`);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});
