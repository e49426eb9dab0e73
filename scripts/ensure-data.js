#!/usr/bin/env node
/* Makes sure Fashion-MNIST is on this machine (installing the Debian package when we can); runs before any build. */
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const PACKAGE = 'dataset-fashion-mnist';
const REPO_ROOT = path.resolve(__dirname, '..');
const DIRS = [path.join(REPO_ROOT, 'data', 'fashion-mnist'), '/usr/share/datasets/fashion-mnist'];
const STEMS = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];

/** True when every Fashion-MNIST file (plain or .gz) is in `dir`. */
function hasAllFiles(dir) {
  return STEMS.every((stem) => fs.existsSync(path.join(dir, stem)) || fs.existsSync(path.join(dir, stem + '.gz')));
}

function found() {
  return DIRS.find(hasAllFiles);
}

/** Runs a command with the output shown; returns its exit status. */
function run(command, args) {
  console.log(`ensure-data: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return result.error ? 1 : result.status;
}

/** True when apt knows an installable version of the package (otherwise the lists need an update). */
function aptHasCandidate() {
  const result = spawnSync('apt-cache', ['policy', PACKAGE], { encoding: 'utf8' });
  const match = /Candidate:\s*(\S+)/.exec(result.stdout || '');
  return Boolean(match && match[1] !== '(none)');
}

function canUseApt() {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0;
  return isRoot && fs.existsSync('/etc/debian_version') && hasApt;
}

function main() {
  if (process.env.ECT_SKIP_DATA_CHECK === '1' || found()) return 0;
  if (canUseApt()) {
    console.log(`ensure-data: Fashion-MNIST not found in ${DIRS.join(' or ')}; installing the Debian package ${PACKAGE}`);
    if (!aptHasCandidate() && run('apt-get', ['update']) !== 0) {
      console.error('ensure-data: apt-get update failed');
    }
    if (run('apt-get', ['install', '-y', PACKAGE]) === 0 && found()) return 0;
    console.error(`ensure-data: installing ${PACKAGE} did not provide the files in ${DIRS[1]}`);
  }
  console.error([
    `ensure-data: Fashion-MNIST not found (looked in ${DIRS.join(' and ')} for ${STEMS.join(', ')}, plain or .gz).`,
    `  On Debian or Ubuntu, as root: apt-get install -y ${PACKAGE}`,
    '  Elsewhere: download the four .gz files from https://github.com/zalandoresearch/fashion-mnist',
    `  (data/fashion/) into ${DIRS[0]}`,
    '  To skip this check (synthetic data only): ECT_SKIP_DATA_CHECK=1',
  ].join('\n'));
  return 1;
}

process.exitCode = main();
