#!/usr/bin/env node
/**
 * Writes environment.md (and environment.json) describing this machine: `npm run env [-- <folder>]`. For the
 * repository root (no folder given) environment.md also lists every committed result folder from
 * results/manifest.json, with the command, commit, machine and backend of each; a folder of results/ or results/long/
 * that the manifest does not cover is listed as such. Run it from a clean checkout so the commit it records is exact.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

let env;
let manifestLib;
try {
  env = require('../dist/lib/env');
  manifestLib = require('../dist/lib/results/manifest');
} catch (err) {
  console.error(`cannot load the compiled library (dist/lib): ${err.message}\nrun \`npm run build\` first`);
  process.exit(1);
}

const root = path.resolve(__dirname, '..');
const folder = path.resolve(process.argv[2] ?? root);
const written = env.writeEnvironment(folder);

/** The committed results as a markdown section, from the manifest. */
function committedResults() {
  const manifest = manifestLib.readManifest(root);
  const covered = manifest.entries.flatMap((e) => [e.folder, ...(e.extraFolders ?? [])]);
  const cell = (text) => String(text ?? '-').replace(/\|/g, '\\|');
  const rows = manifest.entries.map((e) => `| \`${[e.folder, ...(e.extraFolders ?? [])].join('`, `')}\` | ${cell(e.study)} | ${cell(e.what)} | `
    + `\`${cell(e.command)}\` | ${cell(e.commit)} | ${cell(e.machine)} | ${cell(e.backend)} |`);
  // every folder of results/ and results/long/ should be an entry or inside one
  const folders = ['results', 'results/long'].flatMap((dir) => fs.readdirSync(path.join(root, dir), { withFileTypes: true })
    .filter((d) => d.isDirectory() && !(dir === 'results' && d.name === 'long')).map((d) => `${dir}/${d.name}`));
  const inside = (f) => covered.some((c) => f === c || f.startsWith(`${c}/`) || c.startsWith(`${f}/`));
  const missing = folders.filter((f) => !inside(f));
  return [
    '## Committed results',
    '',
    `Every committed result folder, from \`${manifestLib.MANIFEST_FILE}\` (what each is, the command that makes it from the`,
    'repository root, the commit that carries it, the machine and backend it ran on). Each folder also holds its own',
    '`environment.md`, and every run\'s `config.json` records its backend and machine.',
    '',
    '| folder | study | what | command | commit | machine | backend |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    ...(missing.length ? ['', `Not in the manifest yet: ${missing.map((f) => `\`${f}\``).join(', ')}.`] : []),
    '',
  ].join('\n');
}

if (folder === root) {
  const facts = JSON.parse(fs.readFileSync(written.json, 'utf8'));
  fs.writeFileSync(written.markdown, `${env.environmentMarkdown(facts)}\n${committedResults()}`);
}
console.log(`wrote ${written.markdown} and ${written.json}`);
