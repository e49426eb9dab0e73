/** `ect presets` and `ect --version`: every preset listed with its purpose, data, network and parameter count. */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { networkPreset } from '../lib/config/network-presets';
import { presetSummaries, purposeOf } from '../lib/train/preset-list';
import { PRESET_DIR } from '../lib/config/resolve';
import { UNet } from '../lib/nn/unet';
import { useTestBackend } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const ect = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'ect.js'), ...args], { encoding: 'utf8' });

describe('ect presets and --version', () => {
  before(useTestBackend);

  it('counts a network\'s parameters from its plan, as many as the built network has', () => {
    for (const name of ['fmnist-tiny', 'fmnist-base']) {
      const cfg = { ...networkPreset(name), labelDim: 10 };
      const net = new UNet(cfg, 0);
      assert.equal(UNet.parameterCount(cfg), net.paramCount(), name);
      net.dispose();
    }
  });

  it('lists every preset of configs/ with its kind, data, network, parameters and purpose', () => {
    const files = fs.readdirSync(PRESET_DIR).filter((f) => f.endsWith('.json'));
    const summaries = presetSummaries();
    assert.deepEqual(summaries.map((p) => `${p.name}.json`).sort(), files.sort());
    const tiny = summaries.find((p) => p.name === 'fmnist-edm-tiny');
    assert.ok(tiny);
    assert.equal(tiny.kind, 'pretrain');
    assert.equal(tiny.data, 'fashion-mnist');
    assert.equal(tiny.network, 'fmnist-tiny');
    assert.equal(tiny.purpose, 'CPU-sized EDM teacher on Fashion-MNIST for the demo');
    assert.equal(summaries.find((p) => p.name === 'fmnist-ect-base-cond')?.network, 'fmnist-base, 10 classes');
    const out = ect('presets');
    assert.equal(out.status, 0, out.stderr);
    for (const file of files) assert.match(out.stdout, new RegExp(`^${path.basename(file, '.json')}\\s`, 'm'));
    assert.match(out.stdout, /cifar10-ect\s+tune\s+cifar10\s+cifar10-ddpmpp\s+55\.7M\s+ECT on CIFAR-10/);
  });

  it('a description\'s purpose is its first clause; "et al." does not end it', () => {
    assert.equal(purposeOf('Tiny teacher: details'), 'Tiny teacher');
    assert.equal(purposeOf('ECT (Geng et al. 2024). More.'), 'ECT (Geng et al. 2024)');
  });

  it('--version prints package.json\'s version', () => {
    const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(ect('--version').stdout.trim(), version);
  });
});
