#!/usr/bin/env node
/**
 * Executes the notebooks headlessly with the tslab kernel (Debian's Jupyter nbconvert) and fails on any
 * cell error: `npm run notebooks [-- --full] [--html] [names...]`. Small mode (ECT_NOTEBOOK_MODE=small,
 * the default) is the CI check; --full runs them on results/. Executed copies go to build/notebooks/
 * (and .html with --html), so notebooks/ keeps clean sources. --dir runs another folder's notebooks.
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
const mode = args.includes('--full') ? 'full' : 'small';
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

const failures = [];
for (const nb of notebooks) {
  const name = path.basename(nb, '.ipynb');
  const started = Date.now();
  const run = spawnSync(nbconvert, [
    '--to', 'notebook', '--execute',
    `--ExecutePreprocessor.kernel_name=${NOTEBOOK_KERNEL}`,
    `--ExecutePreprocessor.timeout=${timeoutSeconds}`,
    '--output-dir', outDir, '--output', `${name}.ipynb`, nb,
  ], {
    cwd: notebookDir,
    encoding: 'utf8',
    env: { ...jupyterEnv(), ECT_NOTEBOOK_MODE: mode, PYDEVD_DISABLE_FILE_VALIDATION: '1' },
  });
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
    if (exportHtml) {
      const html = spawnSync(nbconvert, ['--to', 'html', '--output-dir', outDir, executed], { encoding: 'utf8' });
      if (html.status !== 0) failures.push(`${name}: HTML export failed\n${html.stderr}`);
      else console.log(`   html -> ${path.relative(root, path.join(outDir, `${name}.html`))}`);
    }
  }
}
if (failures.length) fail(`${failures.length} of ${notebooks.length} notebooks failed:\n${failures.join('\n\n')}`);
console.log(`all ${notebooks.length} notebooks ran without cell errors (${mode} mode)`);
