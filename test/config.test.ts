/** Config resolution: every preset and committed run resolves; overrides apply; unknown keys and bad values get errors naming key and source. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { PRESET_DIR, parseOverride, resolveRecordedConfig, resolveRunConfig } from '../lib/config/resolve';
import { UNCONDITIONAL } from '../lib/config/network-presets';
import { defaultRunConfig } from '../lib/config/defaults';
import type { RunConfig, RunKind } from '../lib/config/types';
import { UNet } from '../lib/nn/unet';
import { Ema } from '../lib/train/ema';
import { createOptimizer } from '../lib/train/optim';
import { useTestBackend } from './helpers';

const REPO = path.dirname(PRESET_DIR);

function writePreset(content: unknown): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ect-cfg-')), 'preset.json');
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

describe('run configs', () => {
  before(useTestBackend);

  it('resolves every shipped preset to a valid config of its kind', () => {
    const presets = shippedPresets();
    assert.ok(presets.length >= 7);
    for (const [kind, file] of presets) {
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
    assert.throws(() => resolveRunConfig('pretrain', 'cifar10-ect'), /cifar10-ect\.json: it is a 'tune' config, not 'pretrain'/);
    assert.throws(() => resolveRunConfig('tune', 'no-such-preset'), /no such file.*known: /);
    assert.throws(() => resolveRunConfig('tune', undefined, [parseOverride('net=nope')]), /unknown network preset 'nope'/);
    assert.throws(() => parseOverride('justtext'), /key\.path=value/);
  });

  it('rejects a misspelt key, naming the right one and the --set it came from', () => {
    assert.throws(() => resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride('ect.maping=constant')]),
      (e: Error) => e.message === "--set ect.maping=constant: unknown key 'ect.maping'; did you mean 'ect.mapping'?");
  });

  it('rejects unknown keys at the top level and in every section, naming the preset file', () => {
    const cases: Array<[unknown, string, string]> = [
      [{ iter: 10 }, 'iter', 'iters'],
      [{ edm: { sigmaMaxx: 80 } }, 'edm.sigmaMaxx', 'edm.sigmaMax'],
      [{ net: { preset: 'fmnist-tiny', dropuot: 0 } }, 'net.dropuot', 'net.dropout'],
      [{ optimizer: { beta_1: 0.9 } }, 'optimizer.beta_1', 'optimizer.beta1'],
      [{ ema: { Beta: 0.9 } }, 'ema.Beta', 'ema.beta'],
      [{ data: { flips: true } }, 'data.flips', 'data.flip'],
      [{ ect: { q: 2, stageiters: 10 } }, 'ect.stageiters', 'ect.stageIters'],
    ];
    for (const [content, key, meant] of cases) {
      const file = writePreset(content);
      assert.throws(() => resolveRunConfig('tune', file), (e: Error) =>
        e.message.startsWith(`${file}: unknown key '${key}'; did you mean '${meant}'?`), key);
    }
    // a key of another section is pointed to; a key like nothing lists the valid ones
    assert.throws(() => resolveRunConfig('tune', undefined, [parseOverride('lr=0.1')]), /--set lr=0\.1: unknown key 'lr'; did you mean 'optimizer\.lr'\?/);
    assert.throws(() => resolveRunConfig('tune', undefined, [parseOverride('ect.zzz=1')]), /unknown key 'ect\.zzz'; valid keys: ect\.pMean, .*ect\.midT/);
    // a run's bookkeeping is not config (the resume path deletes it first); 'extends' belongs to preset files only
    assert.throws(() => resolveRunConfig('tune', writePreset({ backend: { name: 'cpu' } })), /unknown key 'backend'/);
    assert.throws(() => resolveRunConfig('tune', undefined, [parseOverride('extends=cifar10-ect')]), /unknown key 'extends'/);
  });

  it('extends a preset by name from a user file outside configs/, unless a file of that name is beside it', () => {
    const own = writePreset({ extends: 'fmnist-ect-tiny', iters: 7 });
    const cfg = resolveRunConfig('tune', own);
    const preset = resolveRunConfig('tune', path.join(PRESET_DIR, 'fmnist-ect-tiny.json'));
    assert.equal(cfg.iters, 7);
    assert.deepEqual(cfg.net, preset.net);
    assert.deepEqual(cfg.data, preset.data);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-extends-'));
    try {
      fs.writeFileSync(path.join(dir, 'fmnist-ect-tiny.json'), JSON.stringify({ kind: 'tune', batch: 3 }));  // beside the user file: it wins
      const child = path.join(dir, 'mine.json');
      fs.writeFileSync(child, JSON.stringify({ extends: 'fmnist-ect-tiny' }));
      assert.equal(resolveRunConfig('tune', child).batch, 3);
      fs.writeFileSync(child, JSON.stringify({ extends: 'no-such-preset' }));
      assert.throws(() => resolveRunConfig('tune', child),
        new RegExp(`^Error: config ${child}: 'extends' "no-such-preset": no ${path.join(dir, 'no-such-preset.json')}, and no preset of that name in configs/ \\(known: .*fmnist-ect-tiny`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a fixed EMA beta on a half-life preset until the half-life keys are deleted with null', () => {
    const beta = parseOverride('ema.beta=0.999');
    assert.throws(() => resolveRunConfig('pretrain', 'fmnist-edm-base', [beta]), (e: Error) =>
      e.message.startsWith('--set ema.beta=0.999: ema must set exactly one of beta, halfLifeKimg and sigmaRel') &&
      e.message.includes('ema.halfLifeKimg') && e.message.includes('--set ema.halfLifeKimg=null') &&
      e.message.includes(path.join(PRESET_DIR, 'fmnist-edm-base.json')));
    const switched = resolveRunConfig('pretrain', 'fmnist-edm-base',
      [beta, parseOverride('ema.halfLifeKimg=null'), parseOverride('ema.rampupRatio=null')]);
    assert.deepEqual(switched.ema, { beta: 0.999 });
    // without a preset the defaults' schedule gives way to the one asked for, in either direction
    assert.deepEqual(resolveRunConfig('pretrain', undefined, [beta]).ema, { beta: 0.999 });
    assert.deepEqual(resolveRunConfig('tune', undefined, [parseOverride('ema.halfLifeKimg=5')]).ema, { halfLifeKimg: 5 });
    // and what resolution accepts, the trainer's EMA and optimiser accept too (they run the same validators)
    const params = new Map([['w', tf.variable(tf.zeros([2]))]]);
    for (const cfg of [switched, ...shippedPresets().map(([kind, file]) => resolveRunConfig(kind, file))]) {
      new Ema(params, cfg.ema).dispose();
      createOptimizer(cfg.optimizer, params, 'auto', cfg.iters * cfg.batch).dispose();
    }
    params.get('w')!.dispose();
  });

  it('checks the type and range of every field, and the rules across keys', () => {
    const bad: Array<[string, RegExp]> = [
      ['edm.sigmaMin=100', /--set edm\.sigmaMin=100: edm\.sigmaMin must be below edm\.sigmaMax \(80\), got 100/],
      ['data.flip="yes"', /data\.flip must be true or false, got "yes"/],
      ['evalEvery=-1', /--set evalEvery=-1: evalEvery must be a number >= 0, got -1/],
      ['data.name=mnist', /data\.name must be 'cifar10', 'fashion-mnist' or 'synthetic', got "mnist"/],
      ['data.limit=1.5', /data\.limit must be a non-negative integer, got 1\.5/],
      ['net.attnResolutions=7', /net\.attnResolutions must be a list of positive integers, got 7/],
      ['edm.heunSteps=0', /edm\.heunSteps must be a positive integer, got 0/],
      ['ect.weighting=snr', /ect\.weighting must be 'inv_dt', 'snr_k' or 'uniform'/],
      ['ect.midT=[100]', /ect\.midT must be times below edm\.sigmaMax \(80\)/],
      ['ect.huberC=-1', /ect\.huberC must be a number >= 0, got -1/],
      ['optimizer.lr=0', /optimizer\.lr must be a positive number, got 0/],
      ['ema.beta=1.5', /ema\.beta must be in \[0, 1\], got 1\.5/],
      ['seed=-1', /seed must be a non-negative integer, got -1/],
      ['name=""', /name must be a non-empty string/],
      ['ect.mapping=null', /ect\.mapping is missing; it must be 'sigmoid'/],
    ];
    for (const [assignment, message] of bad) {
      assert.throws(() => resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride(assignment)]), message, assignment);
    }
    // a rule across keys names the source of each key when they differ
    assert.throws(() => resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride('edm.sigmaMax=0.001')]),
      /--set edm\.sigmaMax=0\.001: edm\.sigmaMin must be below edm\.sigmaMax \(0\.001\), got 0\.002 \(edm\.sigmaMin from defaults\)/);
  });

  it('deletes a key with null and replaces the network with net.preset', () => {
    const cfg = resolveRunConfig('tune', 'fmnist-ect-tiny', [parseOverride('data.limit=100'), parseOverride('data.limit=null'),
      parseOverride('net.preset=fmnist-small'), parseOverride('net.dropout=0')]);
    assert.equal('limit' in cfg.data, false);
    assert.equal(cfg.net.modelChannels, 16);
    assert.deepEqual(cfg.net.channelMult, [1, 2, 2]);
    assert.equal(cfg.net.dropout, 0);
  });

  it('resolves every committed run\'s config.json to itself, once the run\'s bookkeeping is deleted, with defaults for newer fields', () => {
    const files = findFiles(path.join(REPO, 'results'), 'config.json');
    assert.ok(files.length >= 10, `${files.length} committed runs`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-cfg-'));
    for (const file of files) {
      const { backend, environment, writtenAt, ...saved } = JSON.parse(fs.readFileSync(file, 'utf8')) as RunConfig & Record<string, unknown>;
      assert.ok(backend && environment && writtenAt, `${file} records its backend, machine and time`);
      const copy = path.join(dir, 'config.json');
      fs.writeFileSync(copy, JSON.stringify(saved));
      // every recorded value stays; fields added since the run was recorded (such as the label fields) take their defaults
      const resolved = resolveRunConfig(saved.kind, copy);
      const defaults = leaves(defaultRunConfig(saved.kind));
      const expected = { ...defaults, ...leaves(saved) };
      assert.deepEqual(leaves(resolved), Object.fromEntries(Object.keys(leaves(resolved)).map((k) => [k, expected[k]])), file);
      assert.deepEqual(Object.keys(leaves(saved)).filter((k) => !(k in leaves(resolved))), [], `${file}: no recorded field is lost`);
      assert.deepEqual({ labelDim: resolved.net.labelDim, labelDropout: resolved.net.labelDropout }, UNCONDITIONAL, file);
      // a run recorded before evalSeed evaluated on seed 0's noise, which its record keeps
      assert.deepEqual(resolveRecordedConfig(saved, file), { ...resolved, evalSeed: saved.evalSeed ?? 0 }, file);
    }
    assert.throws(() => resolveRecordedConfig({ net: {} } as RunConfig, 'old.json'), /old\.json: kind must be pretrain or tune, got undefined/);
  });

  it('takes class labels as a network field: net.labelDim classes (0: unconditional), net.labelDropout in [0, 1)', () => {
    for (const [kind, file] of shippedPresets()) {
      const { net } = resolveRunConfig(kind, file);
      assert.equal(net.labelDim, file.includes('-cond') ? 10 : 0, file);
      assert.equal(net.labelDropout, 0, file);
    }
    const cfg = resolveRunConfig('pretrain', 'fmnist-edm-tiny', [parseOverride('net.labelDim=10'), parseOverride('net.labelDropout=0.1')]);
    assert.deepEqual([cfg.net.labelDim, cfg.net.labelDropout], [10, 0.1]);
    const bad: Array<[string[], RegExp]> = [
      [['net.labelDim=-1'], /net\.labelDim must be a non-negative integer, got -1/],
      [['net.labelDim=2.5'], /net\.labelDim must be a non-negative integer, got 2\.5/],
      [['net.labelDim=10', 'net.labelDropout=1'], /net\.labelDropout must be in \[0, 1\), got 1/],
      [['net.labelDropout=0.1'], /--set net\.labelDropout=0\.1: net\.labelDropout 0\.1 needs class labels, but net\.labelDim is 0/],
    ];
    for (const [assignments, message] of bad) {
      assert.throws(() => resolveRunConfig('pretrain', 'fmnist-edm-tiny', assignments.map(parseOverride)), message, assignments.join(' '));
    }
  });

  it('keeps configuration below the layers it configures: lib/config imports only lib/config', () => {
    const dir = path.join(REPO, 'lib', 'config');
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const imports = [...fs.readFileSync(path.join(dir, file), 'utf8').matchAll(/from '([^']+)'/g)].map((m) => m[1]);
      for (const from of imports) assert.ok(from.startsWith('./') || from.startsWith('node:'), `${file} imports ${from}`);
    }
  });

  it('makes schedules given as fractions of the run concrete for its length, and refuses a value that disagrees', () => {
    const cfg = resolveRunConfig('tune', 'fmnist-ect-annealed');
    assert.equal(cfg.ect.stageIters, Math.round(cfg.ect.stageFraction! * cfg.iters));
    assert.equal(cfg.optimizer.decayKimg, cfg.optimizer.decayFraction! * cfg.iters * cfg.batch / 1000);
    const longer = resolveRunConfig('tune', 'fmnist-ect-annealed', [parseOverride('iters=10000')]);
    assert.equal(longer.ect.stageIters, 4 * cfg.ect.stageIters, 'four times the run, four times the stage');
    assert.equal(longer.optimizer.decayKimg, 4 * cfg.optimizer.decayKimg!);
    assert.throws(() => resolveRunConfig('tune', undefined, [parseOverride('optimizer.decayFraction=0')]), /optimizer\.decayFraction must be in \(0, 1\]/);
  });

  it('takes exactly one EMA schedule, the power function included, and checks post-hoc widths', () => {
    const cfg = resolveRunConfig('tune', undefined, [parseOverride('ema.beta=null'), parseOverride('ema.sigmaRel=0.1')]);
    assert.deepEqual(cfg.ema, { sigmaRel: 0.1 });
    // without a preset the default's fixed beta gives way to the power schedule asked for; a preset's beta does not
    assert.deepEqual(resolveRunConfig('tune', undefined, [parseOverride('ema.sigmaRel=0.1')]).ema, { sigmaRel: 0.1 });
    assert.throws(() => resolveRunConfig('tune', 'fmnist-ect-base', [parseOverride('ema.sigmaRel=0.1')]),
      /exactly one of beta, halfLifeKimg and sigmaRel, but has ema\.beta, ema\.sigmaRel.*--set ema\.beta=null for the power schedule/);
    assert.throws(() => resolveRunConfig('tune', undefined, [parseOverride('ema.beta=null'), parseOverride('ema.sigmaRel=0.3')]), /ema\.sigmaRel must be in \(0, 0\.2887\)/);
    assert.throws(() => resolveRunConfig('tune', undefined, [parseOverride('ema.posthoc={"sigmaRels":[],"snapshotEvery":10}')]), /ema\.posthoc\.sigmaRels must be a non-empty list/);
  });

  it('evaluates new runs on validation latents (seed 1) and recorded runs without the field on seed 0', () => {
    assert.equal(resolveRunConfig('tune').evalSeed, 1);
    const { evalSeed: _dropped, ...old } = resolveRunConfig('tune');
    assert.equal(resolveRecordedConfig(old as RunConfig, 'an old run').evalSeed, 0);
    assert.equal(resolveRecordedConfig({ ...old, evalSeed: 5 } as RunConfig, 'a run').evalSeed, 5);
  });
});

/** [kind, file] of every preset in configs/. */
function shippedPresets(): Array<[RunKind, string]> {
  return fs.readdirSync(PRESET_DIR).filter((f) => f.endsWith('.json')).map((file) =>
    [JSON.parse(fs.readFileSync(path.join(PRESET_DIR, file), 'utf8')).kind ?? (file.includes('edm') ? 'pretrain' : 'tune'), file]);
}

/** A config's leaves by dotted key path (arrays whole). */
function leaves(value: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) leaves(inner, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out[prefix] = value;
  }
  return out;
}

/** Every file called `name` below `dir`. */
function findFiles(dir: string, name: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? findFiles(full, name) : entry.name === name ? [full] : [];
  });
}
