#!/usr/bin/env node
/**
 * Executes the notebooks headlessly with the tslab kernel (Debian's Jupyter nbconvert) and fails on any
 * cell error: `npm run notebooks [-- --full] [--html] [names...]`. Small mode (ECT_NOTEBOOK_MODE=small,
 * the default) is the CI check; --full runs them on results/. Executed copies go to build/notebooks/
 * (and .html with --html). --dir runs another folder's notebooks.
 *
 * --commit (implies --full) writes the executed notebooks back into notebooks/, outputs included, with light
 * embedding (plotly from its CDN, a PNG beside each figure) and a stamp in metadata.ect: the commit, and a digest
 * of the result files the notebook read (results/manifest.json, lib/results/manifest.ts), which the tests compare
 * with the files as they are now. Run it after committing new results: `npm run notebooks -- --commit`.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
// this checkout's own kernel (scripts/register-kernel.js): its build/jupyter first on JUPYTER_PATH, so the notebooks'
// `tslab` runs this checkout's tslab and library, whatever other clones registered
const { jupyterEnv, writeCheckoutKernels, NOTEBOOK_KERNEL } = require('./register-kernel');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const notebookDir = path.resolve(valueOf('--dir') ?? path.join(root, 'notebooks'));
const commitOutputs = args.includes('--commit');
const mode = args.includes('--full') || commitOutputs ? 'full' : 'small';
const exportHtml = args.includes('--html');
const outDir = path.resolve(valueOf('--out') ?? path.join(root, 'build', 'notebooks'));
const timeoutSeconds = Number(valueOf('--cell-timeout') ?? (mode === 'small' ? 600 : 86400));
const nbconvert = process.env.ECT_NBCONVERT || 'jupyter-nbconvert';

function valueOf(flag) {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

const flagsWithValues = new Set(['--out', '--cell-timeout', '--dir']);
const named = args.filter((a, i) => !a.startsWith('--') && !flagsWithValues.has(args[i - 1]));
const notebooks = (named.length ? named.map((n) => (n.endsWith('.ipynb') ? n : `${n}.ipynb`)) :
  fs.readdirSync(notebookDir).filter((f) => f.endsWith('.ipynb')).sort())
  .map((f) => path.resolve(notebookDir, path.basename(f)));

function fail(message) {
  console.error(`run-notebooks: ${message}`);
  process.exit(1);
}

for (const nb of notebooks) if (!fs.existsSync(nb)) fail(`${nb}: no such notebook`);
if (!fs.existsSync(path.join(root, 'dist', 'lib', 'index.js'))) fail('dist/lib is missing: the notebooks import the compiled library; run `npm run build` first');
fs.mkdirSync(outDir, { recursive: true });
writeCheckoutKernels();

/** Cells whose outputs contain an error (nbconvert stops at the first, but tslab may report one as a stream). */
function cellErrors(executedFile) {
  const nb = JSON.parse(fs.readFileSync(executedFile, 'utf8'));
  const errors = [];
  nb.cells.forEach((cell, index) => {
    for (const output of cell.outputs ?? []) {
      if (output.output_type === 'error') errors.push(`cell ${index}: ${output.ename}: ${output.evalue}`);
    }
  });
  return errors;
}

/** The commit the outputs are made at: HEAD, with '+ local changes' when tracked files differ from it. */
function currentCommit() {
  const head = spawnSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, encoding: 'utf8' });
  if (head.status !== 0) return 'unknown (not a git checkout)';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' });
  return head.stdout.trim() + (dirty.stdout.trim() ? ' + local changes' : '');
}

/**
 * Writes an executed notebook over its source with the stamp of the files it read; machine paths in its outputs
 * become repository-relative, and nbconvert's per-cell timings are dropped (they change on every run).
 */
function commitNotebook(executedFile, sourceFile, commit) {
  const { notebookStamp } = require(path.join(root, 'dist', 'lib', 'results', 'manifest.js'));
  const text = fs.readFileSync(executedFile, 'utf8').split(`${root}${path.sep}`).join('').split(root).join('.');
  const notebook = JSON.parse(text);
  for (const cell of notebook.cells) if (cell.metadata) delete cell.metadata.execution;
  notebook.metadata.ect = notebookStamp(path.basename(sourceFile, '.ipynb'), commit, root);
  fs.writeFileSync(sourceFile, JSON.stringify(notebook, null, 1) + '\n');
  return sourceFile;
}

// the commit is read once, before any run: a notebook written back by this run would otherwise count as a local change
// in the stamp of the next one
const startCommit = commitOutputs ? currentCommit() : undefined;
const failures = [];
for (const nb of notebooks) {
  const name = path.basename(nb, '.ipynb');
  const started = Date.now();
  const execute = () => spawnSync(nbconvert, [
    '--to', 'notebook', '--execute',
    `--ExecutePreprocessor.kernel_name=${NOTEBOOK_KERNEL}`,
    `--ExecutePreprocessor.timeout=${timeoutSeconds}`,
    '--output-dir', outDir, '--output', `${name}.ipynb`, nb,
  ], {
    cwd: notebookDir,
    encoding: 'utf8',
    env: { ...jupyterEnv(), ECT_NOTEBOOK_MODE: mode, PYDEVD_DISABLE_FILE_VALIDATION: '1', ...(commitOutputs ? { ECT_NOTEBOOK_EMBED: 'light' } : {}) },
  });
  let run = execute();
  // --commit runs once more after a failure: on a loaded machine the kernel has died mid-cell with an empty error
  if (commitOutputs && run.status !== 0 && !run.error) {
    console.log(`retrying ${name} once (first attempt: status ${run.status})`);
    run = execute();
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const executed = path.join(outDir, `${name}.ipynb`);
  const errors = run.status === 0 && fs.existsSync(executed) ? cellErrors(executed) : [];
  if (run.error) {
    failures.push(`${name}: cannot run ${nbconvert} (${run.error.message}); install Debian's jupyter-nbconvert`);
  } else if (run.status !== 0 || errors.length) {
    const stderr = (run.stderr || '').split('\n').filter((l) => !/Debugger warning|frozen modules|PYDEVD|Debugging will proceed|-Xfrozen/.test(l));
    failures.push(`${name}: failed after ${seconds} s\n${errors.join('\n')}\n${stderr.slice(-40).join('\n')}`);
  } else {
    console.log(`ok ${name} (${mode} mode, ${seconds} s) -> ${path.relative(root, executed)}`);
    if (commitOutputs) console.log(`   outputs -> ${path.relative(root, commitNotebook(executed, nb, startCommit))}`);
    if (exportHtml) {
      const html = spawnSync(nbconvert, ['--to', 'html', '--output-dir', outDir, executed], { encoding: 'utf8' });
      if (html.status !== 0) failures.push(`${name}: HTML export failed\n${html.stderr}`);
      else console.log(`   html -> ${path.relative(root, path.join(outDir, `${name}.html`))}`);
    }
  }
}
if (failures.length) fail(`${failures.length} of ${notebooks.length} notebooks failed:\n${failures.join('\n\n')}`);
console.log(`all ${notebooks.length} notebooks ran without cell errors (${mode} mode)`);
