/**
 * Tests of the notebooks: how they import the library under tslab, that every notebook runs headlessly
 * in small mode with the tslab kernel without a cell error, and that an executed notebook's HTML draws
 * its plotly figures in headless Chromium without page errors.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { launchChromium } from '../lib/plots';
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
  it('are stored without outputs, use the tslab kernel and tell a story (markdown between code)', () => {
    assert.ok(notebooks.length >= 6, `only ${notebooks.length} notebooks`);
    for (const name of notebooks) {
      const nb = readNotebook(path.join(notebookDir, name));
      assert.equal(nb.metadata.kernelspec?.name, 'tslab', name);
      for (const cell of nb.cells) if (cell.cell_type === 'code') assert.deepEqual(cell.outputs, [], `${name} has stored outputs`);
      const markdown = nb.cells.filter((c) => c.cell_type === 'markdown').length;
      assert.ok(markdown >= 3, `${name}: ${markdown} markdown cells`);
      assert.equal(nb.cells[0].cell_type, 'markdown', `${name} starts with code`);
      // the library is imported compiled; '../lib/' sources cannot compile under tslab (next test)
      const code = nb.cells.filter((c) => c.cell_type === 'code').map((c) => c.source.join('')).join('\n');
      assert.ok(!/from '\.\.\/lib\//.test(code), `${name} imports ../lib sources`);
    }
  });
});

describe('notebooks: importing the library under tslab', function () {
  this.timeout(60000);

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
