#!/usr/bin/env node
/** Writes environment.md (and environment.json) describing this machine: `npm run env [-- <folder>]`. */
'use strict';
const path = require('node:path');

let env;
try {
  env = require('../dist/lib/env');
} catch (err) {
  console.error(`cannot load the compiled library (dist/lib/env.js): ${err.message}\nrun \`npm run build\` first`);
  process.exit(1);
}
// default: the repository root; a results folder records its own copy for its runs
const folder = path.resolve(process.argv[2] ?? path.join(__dirname, '..'));
const written = env.writeEnvironment(folder);
console.log(`wrote ${written.markdown} and ${written.json}`);
