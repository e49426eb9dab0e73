#!/usr/bin/env node
// Entry point of the `ect` command: runs the compiled CLI (npm run build writes dist/).
require('../dist/cli/ect.js').main(process.argv).catch((err) => {
  console.error(`ect: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
