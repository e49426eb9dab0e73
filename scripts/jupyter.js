#!/usr/bin/env node
/**
 * `npm run jupyter`: Jupyter Notebook on notebooks/, with this checkout's own kernel first on JUPYTER_PATH
 * (scripts/register-kernel.js), so the notebooks run this checkout's code. As root (setup runs as root in containers)
 * it adds --allow-root, which Jupyter refuses to start without, and says so. Arguments after `--` go to Jupyter.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { checkoutKernelName, jupyterEnv, writeCheckoutKernels } = require('./register-kernel');

const root = path.resolve(__dirname, '..');

/** Jupyter's arguments: notebook, no browser, --allow-root when running as root, then the user's. */
function jupyterArgs(isRoot, extra = []) {
  return ['notebook', '--no-browser', ...(isRoot && !extra.includes('--allow-root') ? ['--allow-root'] : []), ...extra];
}

module.exports = { jupyterArgs };

if (require.main === module) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const args = jupyterArgs(isRoot, process.argv.slice(2));
  writeCheckoutKernels();
  if (isRoot) console.log('jupyter: running as root, so with --allow-root (Jupyter refuses root without it)');
  console.log(`jupyter: notebooks run on this checkout's kernel (tslab -> ${path.join(root, 'node_modules', '.bin', 'tslab')}; also listed as ${checkoutKernelName()})`);
  const run = spawnSync(process.env.ECT_JUPYTER || 'jupyter', args, { cwd: path.join(root, 'notebooks'), stdio: 'inherit', env: jupyterEnv() });
  if (run.error) {
    console.error(`jupyter: cannot run ${process.env.ECT_JUPYTER || 'jupyter'} (${run.error.message}); install Debian's jupyter-notebook`);
    process.exit(1);
  }
  process.exit(run.status ?? 1);
}
