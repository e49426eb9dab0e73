#!/usr/bin/env node
/**
 * The prebuilt generator site. `npm run build:web [-- --checkpoint <run>] [--dtype float16]` exports a checkpoint
 * (default: SHIPPED_WEB_CHECKPOINT in lib/web/site.ts) into build/web/ with `ect export-web`; `npm run web
 * [-- --port N] [--host H]` builds it when missing, serves it (sirv, lib/web/server.ts) and prints the URL.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const [command, ...args] = process.argv.slice(2);
const DEFAULT_PORT = 8080;

function valueOf(flag) {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

function fail(message) {
  console.error(`web: ${message}`);
  process.exit(1);
}

/** The compiled library (runs `npm run build` when dist/ lacks it). */
function library(file) {
  const compiled = path.join(root, 'dist', 'lib', 'web', file);
  if (!fs.existsSync(compiled)) {
    console.log('dist/ lacks the web module: npm run build');
    const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
    if (build.status !== 0) fail('npm run build failed');
  }
  return require(compiled);
}

/** Exports the site into build/web with the `ect` command line. */
function build() {
  const { SHIPPED_WEB_CHECKPOINT, WEB_SITE_DIR } = library('site.js');
  const checkpoint = valueOf('--checkpoint') ?? SHIPPED_WEB_CHECKPOINT;
  const dtype = valueOf('--dtype');
  const run = spawnSync(process.execPath, [
    path.join(root, 'bin', 'ect.js'), 'export-web', '--checkpoint', checkpoint, '--out', WEB_SITE_DIR, '--force',  // build/web is rebuilt
    ...(dtype ? ['--dtype', dtype] : []),
  ], { cwd: root, stdio: 'inherit' });
  if (run.status !== 0) fail(`ect export-web --checkpoint ${checkpoint} failed`);
  return path.join(root, WEB_SITE_DIR);
}

/** Serves build/web (built first when missing) until interrupted. */
async function serve() {
  const { WEB_SITE_DIR } = library('site.js');
  const { serveSite } = library('server.js');
  const dir = path.join(root, WEB_SITE_DIR);
  if (!fs.existsSync(path.join(dir, 'index.html'))) {
    console.log(`${WEB_SITE_DIR} is missing: building it (npm run build:web)`);
    build();
  }
  const asked = valueOf('--port');
  const host = valueOf('--host') ?? '127.0.0.1';
  let server;
  try {
    server = await serveSite(dir, { port: asked === undefined ? DEFAULT_PORT : Number(asked), host });
  } catch (err) {
    if (err.code !== 'EADDRINUSE' || asked !== undefined) fail(`cannot listen: ${err.message}`);
    server = await serveSite(dir, { port: 0, host });  // the default port is taken: any free one
  }
  console.log(`serving ${WEB_SITE_DIR} at ${server.url}  (Ctrl-C stops; npm run build:web rebuilds it)`);
  const stop = () => server.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (command === 'build') build();
else if (command === 'serve') serve().catch((err) => fail(err.message));
else fail(`usage: node scripts/web.js build [--checkpoint <run>] [--dtype float16] | serve [--port N] [--host H]`);
