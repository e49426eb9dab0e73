/**
 * Benchmark of an imported EDM teacher on this machine: import the pickle (or read an imported run), then sample
 * with Heun (2 x edm.heunSteps - 1 network evaluations, the network's own preconditioning) and with 1 step, and
 * report images per second. The CIFAR-10 DDPM++ network (55.7M parameters) with random trained-like weights comes
 * from the fixture script: /usr/bin/python3 test/fixtures/make_edm_pickles.py cifar10-ddpmpp edm-cifar10.pkl
 * Run: npm run build && node dist/bench/edm-import.js edm-cifar10.pkl [--heun-n 8] [--one-step-n 64] [--batch 8]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, initBackend, type BackendChoice } from '../lib/backend/select';
import { importEdmFile } from '../lib/import/edm-import';
import { writeImportedRun } from '../lib/import/edm-run';
import { generateImages, type SampleSteps } from '../lib/sample';
import { disposeModel, loadRunModel, samplerModelOf } from '../lib/runs/model';

function flag(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] ? process.argv[index + 1] : fallback;
}

async function main(): Promise<void> {
  const source = process.argv[2];
  if (!source) throw new Error('usage: node dist/bench/edm-import.js <EDM pickle or imported run> [--heun-n 8] [--one-step-n 64] [--batch 8]');
  const backend = await initBackend(flag('backend', process.env.ECT_BACKEND ?? 'auto') as BackendChoice);
  console.log(`backend: ${describeBackend(backend)}`);
  let runDir = source;
  if (fs.statSync(source).isFile()) {
    runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-edm-bench-'));
    const started = process.hrtime.bigint();
    const imported = importEdmFile(source);
    writeImportedRun(runDir, imported, backend);
    console.log(`import: ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(1)} s (${source} -> ${runDir})`);
  }
  const model = await loadRunModel(runDir);
  try {
    console.log(`network: ${(model.net.paramCount() / 1e6).toFixed(2)}M parameters, ${JSON.stringify(model.config.net)}, preconditioning ${model.config.edm.precond ?? 'edm'}`);
    const batch = Number(flag('batch', '8'));
    const runs: Array<[SampleSteps, number]> = [['heun', Number(flag('heun-n', '8'))], [1, Number(flag('one-step-n', '64'))]];
    for (const [steps, n] of runs) {
      if (n <= 0) continue;
      const started = process.hrtime.bigint();
      const images = generateImages(samplerModelOf(model), steps, n, { batch });
      const finite = (images.dataSync() as Float32Array).every(Number.isFinite);
      images.dispose();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const evaluations = steps === 'heun' ? 2 * model.config.edm.heunSteps - 1 : 1;
      console.log(`${steps === 'heun' ? `Heun-${evaluations}` : '1-step'}: ${n} images in ${seconds.toFixed(1)} s = ${(n / seconds).toFixed(3)} img/s ` +
        `(${(n * evaluations / seconds).toFixed(2)} network evaluations/s; batch ${batch}; ${finite ? 'finite' : 'NOT finite'})`);
    }
  } finally {
    disposeModel(model);
    tf.disposeVariables();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
