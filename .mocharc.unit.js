// The unit tier, `npm run test:unit`: pure-math and tiny-tensor tests that need no Debian part, no dataset, no
// browser and no child training process; about a minute on two cores. `npm test` runs these and every other file.
'use strict';
const path = require('node:path');

const UNIT_FILES = [
  'core-math', 'config', 'ema', 'eval-schedule', 'optim', 'posthoc-ema', 'checkpoint', 'plateau', 'sampler',
  'network', 'onednn', 'wasm-kernels', 'train', 'png', 'peak', 'class-accuracy', 'metrics-features',
  'metrics-frechet', 'metrics-kid', 'metrics-reference', 'import-pickle', 'import-safetensors', 'scaling',
  'scaling-compare', 'shipped-teachers', 'test-tiers', 'midt-study', 'bf16', 'notebook-studies', 'run-folder', 'non-finite', 'notebook-tables',
  'lean-gradients', 'measured-peak', 'buffer-pool', 'step-replay',
];

module.exports = {
  ...require('./.mocharc.js'),
  spec: UNIT_FILES.map((name) => path.join(__dirname, 'dist', 'test', `${name}.test.js`)),
  unitFiles: UNIT_FILES,
};
