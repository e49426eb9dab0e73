#!/usr/bin/env node
/**
 * Registers the tslab (TypeScript) Jupyter kernel with this checkout's own tslab binary, then checks
 * that Jupyter lists it: `npm run kernel`. `--if-needed` registers only when the kernel is missing or
 * runs another checkout's binary (what `npm test`, `npm run notebooks` and `npm run jupyter` do first).
 * Options: --python <python with jupyter_client> (default $ECT_PYTHON or /usr/bin/python3, Debian's
 * Jupyter), --user (per-user registry instead of system).
 */
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tslabBinary = path.join(root, 'node_modules', '.bin', 'tslab');

/** The registered tslab kernel as Jupyter lists it ({ binary, dir }), or null when there is none. */
function registeredKernel(python) {
  const listing = spawnSync(python, ['-m', 'jupyter_client.kernelspecapp', 'list', '--json'], { encoding: 'utf8' });
  if (listing.error || listing.status !== 0) {
    throw new Error(`${python} cannot list Jupyter kernels (${listing.error ? listing.error.message : (listing.stderr || '').trim().split('\n').pop()}); ` +
      'install Debian\'s jupyter-client (apt-get install -y jupyter-client python3-ipykernel) or pass --python');
  }
  const spec = JSON.parse(listing.stdout).kernelspecs.tslab;
  return spec ? { binary: spec.spec.argv[0], dir: spec.resource_dir } : null;
}

/**
 * Makes sure Jupyter runs this checkout's tslab: registers it when `ifNeeded` is false, or when the kernel
 * is missing or points elsewhere. Returns a line saying what it did; throws with the reason when it cannot.
 */
function ensureKernel({ python = process.env.ECT_PYTHON || '/usr/bin/python3', user = false, ifNeeded = false } = {}) {
  if (!fs.existsSync(tslabBinary)) throw new Error(`${path.relative(root, tslabBinary)} is missing; run \`npm ci\` first`);
  if (!fs.existsSync(python)) throw new Error(`python ${python} not found; install Debian's jupyter-client (apt-get install -y jupyter-client python3-ipykernel) or pass --python`);
  const before = registeredKernel(python);
  if (ifNeeded && before && before.binary === tslabBinary) return `tslab kernel already registered (runs this checkout's tslab)`;
  const installArgs = ['install', `--python=${python}`, `--binary=${tslabBinary}`];
  if (user) installArgs.push('--user');
  // tslab's installer writes kernel.json for 'tslab' (TypeScript) and 'jslab' (JavaScript)
  execFileSync(tslabBinary, installArgs, { stdio: 'pipe' });
  const after = registeredKernel(python);
  if (!after) throw new Error('jupyter does not list a tslab kernel after installing it');
  if (after.binary !== tslabBinary) {
    throw new Error(`the tslab kernel runs ${after.binary}, not ${tslabBinary} (a per-user kernel shadows the system one? remove it or pass --user)`);
  }
  const why = !before ? 'it was missing' : before.binary !== tslabBinary ? `it ran ${before.binary}` : 'as asked';
  return `tslab kernel registered in ${after.dir} (runs this checkout's tslab; ${why})`;
}

module.exports = { ensureKernel, registeredKernel, tslabBinary };

if (require.main === module) {
  const args = process.argv.slice(2);
  const pythonFlag = args.indexOf('--python');
  try {
    console.log(ensureKernel({
      python: pythonFlag >= 0 ? args[pythonFlag + 1] : undefined,
      user: args.includes('--user'),
      ifNeeded: args.includes('--if-needed'),
    }));
  } catch (error) {
    console.error(`register-kernel: ${error.message}`);
    process.exit(1);
  }
}
