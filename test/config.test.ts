/** Config resolution: every preset resolves and validates; overrides apply; bad values get errors naming key and file. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PRESET_DIR, parseOverride, resolveRunConfig } from '../lib/config/resolve';
import { UNet } from '../lib/nn/unet';
import { useTestBackend } from './helpers';

function writePreset(content: unknown): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ect-cfg-')), 'preset.json');
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

describe('run configs', () => {
  before(useTestBackend);

  it('resolves every shipped preset to a valid config of its kind', () => {
    const presets = fs.readdirSync(PRESET_DIR).filter((f) => f.endsWith('.json'));
    assert.ok(presets.length >= 7);
    for (const file of presets) {
      const kind = JSON.parse(fs.readFileSync(path.join(PRESET_DIR, file), 'utf8')).kind ?? (file.includes('edm') ? 'pretrain' : 'tune');
      const cfg = resolveRunConfig(kind, file);
      assert.equal(cfg.kind, kind, file);
      assert.ok(cfg.description && cfg.description.length > 20, `${file} says what it reproduces`);
    }
  });

  it('gives the paper\'s CIFAR-10 settings for cifar10-ect and the 1-hour variant', () => {
    const ect = resolveRunConfig('tune', 'cifar10-ect');
    assert.equal(ect.batch, 128);
    assert.equal(ect.iters, 200000);
    assert.equal(ect.ect.q, 2);
    assert.equal(ect.ect.stageIters, 25000);
    assert.equal(ect.optimizer.name, 'radam');
    assert.equal(ect.optimizer.lr, 1e-4);
    assert.equal(ect.ema.beta, 0.9999);
    assert.equal(ect.net.dropout, 0.2);
    const net = new UNet(ect.net, 0);
    assert.equal(net.paramCount(), 55732739);
    net.dispose();
    const hour = resolveRunConfig('tune', 'cifar10-ect-1hour');
    assert.equal(hour.ect.q, 256);
    assert.ok(hour.ect.stageIters > hour.iters, 'the 1-hour run never changes stage');
    assert.equal(hour.ema.beta, 0.9993);
    const edm = resolveRunConfig('pretrain', 'cifar10-edm');
    assert.equal(edm.net.dropout, 0.13);
    assert.equal(edm.optimizer.name, 'adam');
    assert.equal(edm.ema.halfLifeKimg, 500);
  });

  it('applies overrides in order, parsing values as JSON', () => {
    assert.deepEqual(parseOverride('ect.midT=[0.5,1]'), { ect: { midT: [0.5, 1] } });
    assert.deepEqual(parseOverride('ect.mapping=constant'), { ect: { mapping: 'constant' } });
    const cfg = resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride('ect.mapping=constant'), { batch: 8 }, parseOverride('net.dropout=0')]);
    assert.equal(cfg.ect.mapping, 'constant');
    assert.equal(cfg.batch, 8);
    assert.equal(cfg.net.dropout, 0);
    assert.equal(cfg.net.modelChannels, 16, 'the rest of the network preset stays');
  });

  it('rejects bad values with the key, the value and the file', () => {
    const bad = writePreset({ kind: 'tune', ect: { mapping: 'cosine' } });
    assert.throws(() => resolveRunConfig('tune', bad), (e: Error) => e.message.includes(bad) && /ect\.mapping.*cosine/.test(e.message));
    assert.throws(() => resolveRunConfig('tune', writePreset({ batch: 0 })), /batch must be a positive integer, got 0/);
    assert.throws(() => resolveRunConfig('tune', writePreset({ ect: { q: 1 } })), /ect\.q must be a number above 1/);
    assert.throws(() => resolveRunConfig('tune', writePreset({ net: { resolution: 30, channelMult: [1, 2, 2] } })), /cannot be halved/);
    assert.throws(() => resolveRunConfig('tune', writePreset('{ not json')), /not valid JSON/);
    assert.throws(() => resolveRunConfig('pretrain', 'cifar10-ect'), /is a 'tune' preset, not 'pretrain'/);
    assert.throws(() => resolveRunConfig('tune', 'no-such-preset'), /no such file.*known: /);
    assert.throws(() => resolveRunConfig('tune', undefined, [parseOverride('net=nope')]), /unknown network preset 'nope'/);
    assert.throws(() => parseOverride('justtext'), /key\.path=value/);
  });
});
