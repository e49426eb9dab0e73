#!/usr/bin/env node
/**
 * Makes a fresh clone ready for one npm script: `node scripts/setup.js <start|test|notebooks|jupyter|bench>`.
 *  1. the system parts that script needs (scripts/system-parts.js): installed with apt-get when this is root
 *     on Debian/Ubuntu (`apt-get update` only when apt has no candidate); otherwise the exact command to run
 *     and what is slower or skipped without them;
 *  2. npm dependencies (`npm ci` when node_modules is missing or older than the lockfile; it also builds);
 *  3. the oneDNN addon, rebuilt when it is missing or older than its sources and the headers are here;
 *  4. the TypeScript build;
 *  5. this checkout's own tslab Jupyter kernel (scripts/register-kernel.js), registered when missing (test, notebooks, jupyter).
 * ECT_SETUP_NO_INSTALL=1 never installs system packages (it only says what is missing).
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const parts = require('./system-parts');

const ROOT = path.resolve(__dirname, '..');
const COMMANDS = ['start', 'test', 'notebooks', 'jupyter', 'bench'];
const ADDON = path.join(ROOT, 'native', 'build', 'Release', 'ect_onednn.node');

const log = (line) => console.log(`setup: ${line}`);

/** Runs a command with its output shown; exits on failure unless `optional`. Returns true on success. */
function run(command, args, { optional = false, env } = {}) {
  const result = spawnSync(command, args, { cwd: ROOT, stdio: 'inherit', env: env ? { ...process.env, ...env } : process.env });
  if (!result.error && result.status === 0) return true;
  const why = result.error ? result.error.message : `status ${result.status}`;
  if (optional) {
    log(`'${command} ${args.join(' ')}' failed (${why})`);
    return false;
  }
  console.error(`setup: '${command} ${args.join(' ')}' failed (${why})`);
  process.exit(result.status || 1);
}

/** True when apt knows an installable version of every package (otherwise its lists need an update). */
function aptHasCandidates(packages) {
  const result = spawnSync('apt-cache', ['policy', ...packages], { encoding: 'utf8' });
  const candidates = [...(result.stdout || '').matchAll(/Candidate:\s*(\S+)/g)].map((m) => m[1]);
  return candidates.length === packages.length && candidates.every((c) => c !== '(none)');
}

/** Installs what is missing of the command's parts when it can; says what is lost when it cannot. Returns the parts still missing. */
function systemParts(command) {
  const needed = parts.partsFor(command);
  let missing = needed.filter((p) => !parts.isPresent(p.name));
  if (!missing.length) return [];
  const simulated = (process.env.ECT_MISSING_PARTS || '').split(',');
  const installable = missing.filter((p) => !simulated.includes(p.name));
  if (installable.length && parts.canUseApt() && process.env.ECT_SETUP_NO_INSTALL !== '1') {
    const packages = installable.flatMap((p) => p.packages);
    log(`installing ${installable.map((p) => p.name).join(', ')}: apt-get install -y --no-install-recommends ${packages.join(' ')}`);
    const env = { DEBIAN_FRONTEND: 'noninteractive' };
    if (!aptHasCandidates(packages)) run('apt-get', ['update', '-qq'], { optional: true, env });
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], { optional: true, env });
    missing = needed.filter((p) => !parts.isPresent(p.name));
  }
  for (const p of missing) {
    log(`${p.name} is missing: ${p.what}.\n       Without it ${p.without}.\n       Install it with: ${parts.installCommand([p])}`);
  }
  return missing;
}

/** Newest modification time among the addon's sources. */
function nativeSourcesTime() {
  const dir = path.join(ROOT, 'native', 'src');
  const files = [path.join(ROOT, 'native', 'binding.gyp'), ...fs.readdirSync(dir).map((f) => path.join(dir, f))];
  return Math.max(...files.map((f) => fs.statSync(f).mtimeMs));
}

function main() {
  const command = process.argv[2];
  if (!COMMANDS.includes(command)) {
    console.error(`setup: say which npm script to prepare for: node scripts/setup.js <${COMMANDS.join('|')}>`);
    process.exit(2);
  }
  const missing = systemParts(command).map((p) => p.name);
  if (command === 'start' && missing.includes('dataset')) {
    console.error('setup: the demo trains on Fashion-MNIST; install it as above, then run npm start again');
    process.exit(1);
  }

  // npm dependencies: npm ci when node_modules is missing or older than the lockfile (ci also builds, via prepare).
  // A node_modules that is a link (a checkout sharing another's packages) is never reinstalled from here: npm ci
  // empties the folder the link points to before it removes the link, which would break the other checkout.
  const nodeModules = path.join(ROOT, 'node_modules');
  const installed = path.join(nodeModules, '.package-lock.json');
  const lock = path.join(ROOT, 'package-lock.json');
  const linked = fs.existsSync(nodeModules) && fs.lstatSync(nodeModules).isSymbolicLink();
  const stale = !fs.existsSync(installed) || fs.statSync(installed).mtimeMs < fs.statSync(lock).mtimeMs;
  const freshInstall = stale && !linked;
  if (freshInstall) {
    log('installing npm dependencies (npm ci)');
    run('npm', ['ci', '--no-audit', '--no-fund']);
  } else if (stale) {
    log(`node_modules links to ${fs.realpathSync(nodeModules)}, whose install looks older than this lockfile; not running npm ci `
      + 'through the link (it would empty the linked folder): run npm ci in the checkout that owns it if its packages changed');
  }

  // the oneDNN addon: npm ci builds it when the headers are there; rebuild it when it is missing or stale, but never
  // through a linked native/build (another checkout's addon, which its running processes may have loaded)
  const nativeBuild = path.join(ROOT, 'native', 'build');
  const nativeLinked = fs.existsSync(nativeBuild) && fs.lstatSync(nativeBuild).isSymbolicLink();
  if (!missing.includes('native') && parts.isPresent('native') && !nativeLinked &&
      (!fs.existsSync(ADDON) || fs.statSync(ADDON).mtimeMs < nativeSourcesTime())) {
    log(`building the oneDNN addon (${fs.existsSync(ADDON) ? 'older than its sources' : 'not built yet'})`);
    run(process.execPath, [path.join(__dirname, 'build-native.js')], { optional: true });
  }

  if (!freshInstall) run('npm', ['run', '--silent', 'build']);

  if (['test', 'notebooks', 'jupyter'].includes(command) && parts.isPresent('jupyter')) {
    try {
      log(require('./register-kernel').ensureKernel({ ifNeeded: true }));
    } catch (error) {
      log(`could not register this checkout's kernel: ${error.message}`);
    }
  }
}

main();
