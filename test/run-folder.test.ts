/** The run folder module: its file names, whether a folder is a run, and config.json read by one rule. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultRunConfig } from '../lib/config/defaults';
import {
  holdsRun, isRunFolder, readConfigJson, readRunConfig, readRunConfigFile, recordedSettings, runFolderOfCheckpoint, runPaths, writeRunConfig,
} from '../lib/runs/folder';

describe('run folder', () => {
  let root: string;
  beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-run-folder-')); });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('names every file of a run', () => {
    const paths = runPaths(path.join(root, 'r'));
    assert.deepEqual(Object.values(paths).map((p) => path.relative(root, p)).sort(),
      ['r', 'r/.lock', 'r/checkpoints', 'r/config.json', 'r/evaluations.csv', 'r/metrics.csv', 'r/posthoc', 'r/posthoc-ema', 'r/samples'].sort());
    assert.equal(runFolderOfCheckpoint(path.join(paths.checkpoints, 'ckpt-000000010.ckpt')), paths.dir);
    assert.equal(runFolderOfCheckpoint(path.join(root, 'loose', 'ckpt-000000010.ckpt')), path.join(root, 'loose'));
  });

  it('is a run once it has config.json and metrics.csv; holds one once it has config.json or checkpoints', () => {
    const dir = path.join(root, 'r');
    fs.mkdirSync(dir);
    assert.ok(!isRunFolder(dir) && !holdsRun(dir));
    fs.mkdirSync(runPaths(dir).checkpoints);
    assert.ok(!isRunFolder(dir) && holdsRun(dir));
    writeRunConfig(dir, defaultRunConfig('pretrain'));
    assert.ok(!isRunFolder(dir), 'no metrics yet');
    fs.writeFileSync(runPaths(dir).metrics, 'iter,kimg\n');
    assert.ok(isRunFolder(dir));
  });

  it('names the file and the problem of a config.json that cannot be read', () => {
    const dir = path.join(root, 'r');
    fs.mkdirSync(dir);
    const file = runPaths(dir).config;
    assert.throws(() => readRunConfig(dir), (err: Error) => err.message.startsWith(`${file}: missing`));
    assert.equal(readRunConfigFile(dir), null);
    fs.writeFileSync(file, '{ "kind": "pretrain", ');
    assert.throws(() => readConfigJson(file), (err: Error) => err.message.startsWith(`${file}: not valid JSON (`) && /cut short/.test(err.message));
    fs.writeFileSync(file, '[1, 2]');
    assert.throws(() => readConfigJson(file), (err: Error) => err.message === `${file}: not a run config (the top level must be a JSON object)`);
    const { net: _net, ...withoutNet } = defaultRunConfig('tune');
    fs.writeFileSync(file, JSON.stringify(withoutNet));
    assert.throws(() => readRunConfig(dir), (err: Error) => err.message === `${file}: no 'net' field; not a run config`);
  });

  it('reads an older run by one rule: bookkeeping apart, missing fields at their defaults, evalSeed as it was', () => {
    const dir = path.join(root, 'old');
    fs.mkdirSync(dir);
    const config = defaultRunConfig('tune') as unknown as Record<string, unknown>;
    const { evalSeed: _evalSeed, plateauGain: _plateauGain, ...older } = config;  // fields added after the run was recorded
    const backend = { name: 'cpu' };
    fs.writeFileSync(runPaths(dir).config, JSON.stringify({ ...older, init: '../teacher', backend, environment: { cpu: 'x', cores: 2 }, writtenAt: 'then' }));
    const read = readRunConfigFile(dir)!;
    assert.deepEqual(read.record, { backend, environment: { cpu: 'x', cores: 2 }, writtenAt: 'then' });
    assert.equal(read.settings.backend, undefined);
    assert.equal(read.settings.evalSeed, 0, 'a run recorded before evalSeed goes on evaluating on the noise it started with');
    assert.equal(read.settings.init, '../teacher', 'init stays as recorded, relative to the run');
    const resolved = readRunConfig(dir);
    assert.equal(resolved.evalSeed, 0);
    assert.equal(resolved.plateauGain, (defaultRunConfig('tune') as { plateauGain: number }).plateauGain, 'a newer field takes its default');
    assert.deepEqual(resolved.backend, backend);
    assert.deepEqual(recordedSettings({ kind: 'tune', evalSeed: 7, writtenAt: 'x' }), { kind: 'tune', evalSeed: 7 });
  });
});
