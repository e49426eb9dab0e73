#!/usr/bin/env node
// Builds the oneDNN addon (native/) with node-gyp. With --if-possible (the npm install hook) a missing
// libdnnl-dev, compiler or header never fails the install: it prints why and the backend falls back.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const optional = process.argv.includes('--if-possible');
const root = path.resolve(__dirname, '..');
const nativeDir = path.join(root, 'native');
const ONEDNN_HEADER_DIRS = ['/usr/include/oneapi/dnnl', '/usr/local/include/oneapi/dnnl', process.env.DNNL_INCLUDE_DIR || ''];

function giveUp(reason) {
  const message = `onednn addon not built: ${reason}. TensorFlow.js will use the wasm/cpu backends instead.`;
  if (optional) {
    console.warn(message);
    process.exit(0);
  }
  console.error(message);
  process.exit(1);
}

if (process.env.ECT_SKIP_NATIVE) giveUp('ECT_SKIP_NATIVE is set');
if (process.platform !== 'linux') giveUp(`only Linux builds are set up (this is ${process.platform})`);
if (!ONEDNN_HEADER_DIRS.some((dir) => dir && fs.existsSync(path.join(dir, 'dnnl.hpp')))) {
  giveUp('oneDNN headers not found (install them with `apt-get install libdnnl-dev`)');
}
let nodeGyp;
try {
  nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  giveUp('node-gyp is not installed');
}
const args = [nodeGyp, 'rebuild', '--directory', nativeDir];
// Offline machines cannot download Node's headers: use the installed ones when npm did not say where they are.
const localHeaders = path.resolve(path.dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && fs.existsSync(path.join(localHeaders, 'include', 'node', 'node_api.h'))) {
  args.push(`--nodedir=${localHeaders}`);
}
const result = spawnSync(process.execPath, args, { stdio: optional ? 'pipe' : 'inherit', encoding: 'utf8' });
if (result.status !== 0) {
  const output = `${result.stdout || ''}${result.stderr || ''}`.split('\n').filter((l) => /error|Error|not found/.test(l)).slice(0, 8).join('\n');
  giveUp(`node-gyp failed (exit ${result.status})${output ? `:\n${output}` : ''}`);
}
const addon = path.join(nativeDir, 'build', 'Release', 'ect_onednn.node');
try {
  const loaded = require(addon);
  console.log(`onednn addon built: ${path.relative(root, addon)} (oneDNN ${loaded.version()}, ${loaded.threads()} threads)`);
} catch (error) {
  giveUp(`the built addon does not load: ${error.message}`);
}
