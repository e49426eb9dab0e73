#!/usr/bin/env node
/**
 * Registers the tslab (TypeScript) Jupyter kernel with this checkout's own tslab binary, then checks
 * that Jupyter lists it: `npm run kernel`. Options: --python <python with jupyter_client> (default
 * $ECT_PYTHON or /usr/bin/python3, Debian's Jupyter), --user (per-user registry instead of system).
 */
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const pythonFlag = args.indexOf('--python');
const python = pythonFlag >= 0 ? args[pythonFlag + 1] : (process.env.ECT_PYTHON || '/usr/bin/python3');
const tslabBinary = path.join(root, 'node_modules', '.bin', 'tslab');

function fail(message) {
  console.error(`register-kernel: ${message}`);
  process.exit(1);
}

if (!fs.existsSync(tslabBinary)) fail(`${tslabBinary} is missing; run \`npm install\` first`);
if (!fs.existsSync(python)) fail(`python ${python} not found; install Debian's jupyter-client (apt-get install -y jupyter-client python3-ipykernel) or pass --python`);

const installArgs = ['install', `--python=${python}`, `--binary=${tslabBinary}`];
if (args.includes('--user')) installArgs.push('--user');
try {
  // tslab's installer writes kernel.json for 'tslab' (TypeScript) and 'jslab' (JavaScript)
  execFileSync(tslabBinary, installArgs, { stdio: 'inherit' });
} catch (err) {
  fail(`\`tslab ${installArgs.join(' ')}\` failed (${err.message})`);
}

// Check with the same Python that Jupyter uses that the kernel is registered and points at our binary.
const listing = execFileSync(python, ['-m', 'jupyter_client.kernelspecapp', 'list', '--json'], { encoding: 'utf8' });
const spec = JSON.parse(listing).kernelspecs.tslab;
if (!spec) fail('jupyter does not list a tslab kernel after installing it');
if (spec.spec.argv[0] !== tslabBinary) fail(`the tslab kernel runs ${spec.spec.argv[0]}, not ${tslabBinary}`);
console.log(`tslab kernel registered in ${spec.resource_dir} (runs ${tslabBinary})`);
