#!/usr/bin/env node
/* Makes a fresh clone runnable before `npm start` and `npm test`: npm dependencies, the build, the dataset. */
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');

function run(command, args) {
  const result = spawnSync(command, args, { cwd: ROOT, stdio: 'inherit' });
  if (result.error || result.status !== 0) {
    console.error(`setup: '${command} ${args.join(' ')}' failed${result.error ? `: ${result.error.message}` : ` with status ${result.status}`}`);
    process.exit(result.status || 1);
  }
}

// dependencies: npm ci when node_modules is missing or older than the lockfile (ci also builds, via prepare)
const installed = path.join(ROOT, 'node_modules', '.package-lock.json');
const lock = path.join(ROOT, 'package-lock.json');
if (!fs.existsSync(installed) || fs.statSync(installed).mtimeMs < fs.statSync(lock).mtimeMs) {
  console.log('setup: installing npm dependencies (npm ci)');
  run('npm', ['ci']);
} else {
  run('npm', ['run', '--silent', 'build']);
}
run(process.execPath, [path.join(__dirname, 'ensure-data.js')]);
