/**
 * Exports that load strictly where they came from: an imported EDM network keeps what our network leaves out
 * (map_augment.weight), and `ect export` writes it back, of the import itself and of a run tuned from it, so EDM's
 * own load_state_dict(strict=True) takes the file (test/fixtures/make_edm_pickles.py load-strict, with PyTorch).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { launchRun } from '../lib/train/launch';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { requireSystemPart, tinyRunSpec, useTestBackend } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'ect.js');
const PYTHON = process.env.ECT_PYTHON || '/usr/bin/python3';
const SCRIPT = path.join(ROOT, 'test', 'fixtures', 'make_edm_pickles.py');
const ENV = { ...process.env, ECT_BACKEND: process.env.ECT_TEST_BACKEND ?? '' };

function ect(...args: string[]): { status: number; out: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: ENV, timeout: 240000 });
  return { status: result.status ?? -1, out: `${result.stdout}${result.stderr}` };
}

/** EDM's strict load of `file` into the network of `pickle`: which tensors equal the pickle's. */
function loadStrict(pickle: string, file: string): { equal: string[]; different: string[] } {
  const loaded = spawnSync(PYTHON, [SCRIPT, 'load-strict', pickle, file], { encoding: 'utf8', timeout: 240000, maxBuffer: 16 << 20 });
  assert.equal(loaded.status, 0, `EDM's load_state_dict(strict=True) refused ${path.basename(file)}: ${loaded.stderr}`);
  return JSON.parse(loaded.stdout) as { equal: string[]; different: string[] };
}

describe('export: loads strictly into the EDM network it came from', function () {
  let dir = '';

  before(async function () {
    requireSystemPart(this, 'torch');
    await useTestBackend();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-export-strict-'));
    const made = spawnSync(PYTHON, [SCRIPT, 'hostile', dir], { encoding: 'utf8', timeout: 300000 });
    if (made.status !== 0) throw new Error(`make_edm_pickles.py hostile failed (${made.status}): ${made.stderr}`);
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('import, export: every tensor back bit for bit, map_augment.weight included', () => {
    const pickle = path.join(dir, 'budget-small.pkl');  // an EDMPrecond around a SongUNet with augment_dim 9
    const imported = ect('import-edm', pickle, '--out', path.join(dir, 'imported'));
    assert.equal(imported.status, 0, imported.out);
    assert.match(imported.out, /dropped model\.map_augment\.weight: .*kept in the checkpoint, so `ect export` writes it back/);
    const file = path.join(dir, 'export.safetensors');
    const exported = ect('export', '--checkpoint', path.join(dir, 'imported'), '--out', file);
    assert.equal(exported.status, 0, exported.out);
    assert.match(exported.out, /with map_augment\.weight as imported/);
    const { equal, different } = loadStrict(pickle, file);
    assert.deepEqual(different, []);
    assert.ok(equal.includes('model.map_augment.weight'));
  });

  it('a run tuned from the import exports map_augment.weight as imported, and loads strictly', async () => {
    const pickle = path.join(dir, 'budget-small.pkl');
    const importedDir = path.join(dir, 'imported-for-tuning');
    assert.equal(ect('import-edm', pickle, '--out', importedDir).status, 0);
    const tuned = path.join(dir, 'tuned');
    const data = makeSyntheticDataset('train', { count: 32, height: 8, width: 8, channels: 1, seed: 1 });
    const run = await launchRun(tinyRunSpec('tune', tuned, { net: undefined, data: { name: 'synthetic', flip: false }, init: importedDir, iters: 2, ckptEvery: 2 }), { dataset: data });
    try {
      await run.trainer.run();
    } finally {
      run.dispose();
    }
    const file = path.join(dir, 'tuned.safetensors');
    const exported = ect('export', '--checkpoint', tuned, '--out', file);
    assert.equal(exported.status, 0, exported.out);
    const { equal, different } = loadStrict(pickle, file);
    assert.ok(equal.includes('model.map_augment.weight'), 'carried from the import');
    assert.ok(different.length > 0, 'the tuned weights differ from the pickle\'s');
  });
});
