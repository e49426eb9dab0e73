/**
 * A tuning run from a teacher without --config trains on the teacher's dataset (not the defaults' CIFAR-10) unless a
 * flag says otherwise; a run whose dataset is missing names the presets that fit the datasets that are here.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadDataset, datasetHere } from '../lib/data';
import { launchRun, resolveRun } from '../lib/train/launch';
import { Trainer } from '../lib/train/trainer';
import { TINY_NET, requireSystemPart, tinyRunConfig, useTestBackend } from './helpers';

describe('tuning from a teacher: its data unless told otherwise', function () {
  this.timeout(300000);
  let dir: string;
  let teacher: string;
  const FMNIST_NET = { ...TINY_NET, resolution: 28, channelMult: [1, 2], attnResolutions: [] };

  before(async function () {
    requireSystemPart(this, 'dataset');
    await useTestBackend();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-init-data-'));
    teacher = path.join(dir, 'teacher');
    const cfg = tinyRunConfig('pretrain', { data: { name: 'fashion-mnist', flip: false, limit: 8 }, net: FMNIST_NET, batch: 2, iters: 1, ckptEvery: 1 });
    const trainer = await Trainer.create(cfg, { runDir: teacher, dataset: loadDataset(cfg.data, 'train') });
    await trainer.run({});
    trainer.dispose();
  });
  after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

  it('takes the teacher\'s dataset and network without --config; --data and --set change the dataset', () => {
    const own = resolveRun({ kind: 'tune', flags: { init: teacher, out: path.join(dir, 'a') } });
    assert.equal(own.cfg.data.name, 'fashion-mnist', 'not the defaults\' cifar10');
    assert.equal(own.cfg.net.resolution, 28);
    const flagged = resolveRun({ kind: 'tune', flags: { init: teacher, data: 'synthetic', out: path.join(dir, 'b') } });
    assert.equal(flagged.cfg.data.name, 'synthetic');
    const set = resolveRun({ kind: 'tune', flags: { init: teacher, set: ['data.flip=true'], out: path.join(dir, 'c') } });
    assert.deepEqual([set.cfg.data.name, set.cfg.data.flip], ['fashion-mnist', true]);
  });

  it('refuses a class-conditional preset with an unconditional teacher, naming both', () => {
    assert.throws(() => resolveRun({ kind: 'tune', flags: { init: teacher, config: 'fmnist-ect-tiny-cond', out: path.join(dir, 'cond') } }), (err: Error) => {
      assert.match(err.message, /^--config fmnist-ect-tiny-cond asks for a class-conditional network \(net\.labelDim 10\), but the --init checkpoint \S+ is unconditional \(net\.labelDim 0\)/);
      assert.ok(err.message.includes(teacher), err.message);
      return true;
    });
    assert.equal(resolveRun({ kind: 'tune', flags: { init: teacher, config: 'fmnist-ect-tiny', out: path.join(dir, 'uncond') } }).cfg.net.labelDim, 0);
  });

  it('a missing dataset names the presets of the run\'s kind that train on the datasets here', async function () {
    if (datasetHere({ name: 'cifar10', flip: false })) this.skip();  // the error needs CIFAR-10 to be missing
    const out = path.join(dir, 'cifar');
    await assert.rejects(launchRun({ kind: 'tune', flags: { init: teacher, data: 'cifar10', out } }),
      (err: Error) => {
        assert.match(err.message, /CIFAR-10 binary version not found/);
        assert.match(err.message, /Datasets found here: fashion-mnist\. Presets that train on them: .*fmnist-ect-tiny/);
        assert.doesNotMatch(err.message, /fmnist-edm-tiny/, 'only presets of the run\'s kind');
        return true;
      });
  });
});
