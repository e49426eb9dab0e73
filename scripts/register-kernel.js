#!/usr/bin/env node
/**
 * This checkout's own TypeScript (tslab) Jupyter kernel: `npm run kernel`. Clones on one machine never share one:
 *  - build/jupyter/kernels/ holds kernel specs that run this checkout's node_modules/.bin/tslab: `tslab` (the name the
 *    notebooks' metadata gives) and this checkout's own name (checkoutKernelName). `npm run notebooks` and
 *    `npm run jupyter` put that folder first on JUPYTER_PATH (jupyterEnv), so a notebook runs on the kernel of the
 *    checkout it was opened from, without editing the .ipynb files;
 *  - the own name is also registered with Jupyter (system-wide, or --user), so that a Jupyter started elsewhere lists
 *    "TypeScript (ect-workbench <folder>)" beside the other clones' kernels. The system-wide `tslab` kernel is left alone.
 * `--if-needed` (what `npm test`, `npm run notebooks` and `npm run jupyter` do first) registers only when the own name is
 * missing or runs another binary. Options: --python <python with jupyter_client> (default $ECT_PYTHON or
 * /usr/bin/python3, Debian's Jupyter), --user (per-user registry instead of system).
 */
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tslabBinary = path.join(root, 'node_modules', '.bin', 'tslab');
/** The kernel name the notebooks' metadata gives: resolved to this checkout's through JUPYTER_PATH. */
const NOTEBOOK_KERNEL = 'tslab';

/** This checkout's kernel name: its folder's name and a digest of its full path (two clones named alike differ). */
function checkoutKernelName(checkout = root) {
  const real = fs.existsSync(checkout) ? fs.realpathSync(checkout) : path.resolve(checkout);
  const slug = path.basename(real).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'checkout';
  return `ect-tslab-${slug}-${crypto.createHash('sha256').update(real).digest('hex').slice(0, 8)}`;
}

/** The folder put first on JUPYTER_PATH for this checkout's notebooks: its kernels/ holds the checkout's specs. */
function checkoutJupyterDir(checkout = root) {
  return path.join(checkout, 'build', 'jupyter');
}

/** tslab's kernel.json (as its own installer writes it) for a binary, under a display name. */
function kernelSpec(binary, displayName) {
  return { argv: [binary, 'kernel', '--config-path', '{connection_file}'], display_name: displayName, language: 'typescript' };
}

/**
 * Writes the checkout's kernel specs into <checkout>/build/jupyter/kernels/: `tslab` and the checkout's own name, both
 * running its tslab. Returns { dir, names }.
 */
function writeCheckoutKernels(checkout = root) {
  const binary = path.join(checkout, 'node_modules', '.bin', 'tslab');
  const own = checkoutKernelName(checkout);
  const specs = {
    [NOTEBOOK_KERNEL]: kernelSpec(binary, 'TypeScript'),   // the notebooks' display name, so that saving one changes nothing
    [own]: kernelSpec(binary, `TypeScript (ect-workbench ${path.basename(checkout)})`),
  };
  const dir = checkoutJupyterDir(checkout);
  for (const [name, spec] of Object.entries(specs)) {
    fs.mkdirSync(path.join(dir, 'kernels', name), { recursive: true });
    fs.writeFileSync(path.join(dir, 'kernels', name, 'kernel.json'), JSON.stringify(spec, null, 1) + '\n');
  }
  return { dir, names: Object.keys(specs) };
}

/** The environment under which Jupyter finds this checkout's kernels before any other (JUPYTER_PATH first). */
function jupyterEnv(env = process.env, checkout = root) {
  const mine = checkoutJupyterDir(checkout);
  const rest = (env.JUPYTER_PATH || '').split(path.delimiter).filter((p) => p && path.resolve(p) !== mine);
  return { ...env, JUPYTER_PATH: [mine, ...rest].join(path.delimiter) };
}

/** The kernels Jupyter lists under `env`, by name: { binary, dir }. */
function listedKernels(python, env = process.env) {
  const listing = spawnSync(python, ['-m', 'jupyter_client.kernelspecapp', 'list', '--json'], { encoding: 'utf8', env });
  if (listing.error || listing.status !== 0) {
    throw new Error(`${python} cannot list Jupyter kernels (${listing.error ? listing.error.message : (listing.stderr || '').trim().split('\n').pop()}); ` +
      'install Debian\'s jupyter-client (apt-get install -y jupyter-client python3-ipykernel) or pass --python');
  }
  const specs = JSON.parse(listing.stdout).kernelspecs;
  return Object.fromEntries(Object.entries(specs).map(([name, spec]) => [name, { binary: spec.spec.argv[0], dir: spec.resource_dir }]));
}

/**
 * Writes this checkout's kernel specs and registers its own kernel name with Jupyter: always, or with `ifNeeded` only
 * when that name is missing or runs another binary. Returns a line saying what it did; throws with the reason.
 */
function ensureKernel({ python = process.env.ECT_PYTHON || '/usr/bin/python3', user = false, ifNeeded = false } = {}) {
  if (!fs.existsSync(tslabBinary)) throw new Error(`${path.relative(root, tslabBinary)} is missing; run \`npm ci\` first`);
  if (!fs.existsSync(python)) throw new Error(`python ${python} not found; install Debian's jupyter-client (apt-get install -y jupyter-client python3-ipykernel) or pass --python`);
  const { dir } = writeCheckoutKernels();
  const own = checkoutKernelName();
  const before = listedKernels(python)[own];
  if (ifNeeded && before && before.binary === tslabBinary) return `kernel ${own} already registered (runs this checkout's tslab)`;
  const args = ['-m', 'jupyter_client.kernelspecapp', 'install', path.join(dir, 'kernels', own), '--name', own, '--replace'];
  if (user) args.push('--user');
  execFileSync(python, args, { stdio: 'pipe' });
  const after = listedKernels(python)[own];
  if (!after) throw new Error(`jupyter does not list the kernel ${own} after installing it`);
  if (after.binary !== tslabBinary) throw new Error(`the kernel ${own} runs ${after.binary}, not ${tslabBinary} (a per-user kernel shadows the system one? remove it or pass --user)`);
  const why = !before ? 'it was missing' : before.binary !== tslabBinary ? `it ran ${before.binary}` : 'as asked';
  return `kernel ${own} registered in ${after.dir} (runs this checkout's tslab; ${why}); this checkout's notebooks run on it through ${path.relative(root, dir)}`;
}

module.exports = { checkoutJupyterDir, checkoutKernelName, ensureKernel, jupyterEnv, listedKernels, tslabBinary, writeCheckoutKernels, NOTEBOOK_KERNEL };

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
