/**
 * Memory-aware sampling: the activation memory of a network call estimated from the layer plan, the batch a budget
 * allows, `ect sample` deriving its batch from --memory when --batch is not given, and a tuning run's final grids
 * drawn at the run's batch (the same images as at batch 64).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { NETWORK_PRESETS } from '../lib/config/network-presets';
import type { NetworkConfig } from '../lib/config/types';
import { batchForMemory, MAX_DERIVED_BATCH, samplingBytesPerImage } from '../lib/nn/memory';
import { UNet } from '../lib/nn/unet';
import { generateImages, samplerModelFor } from '../lib/sample';
import { tinyRunConfig, TINY_NET, useTestBackend } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'ect.js');
const TEACHER = path.join(ROOT, 'data', 'teachers', 'fmnist-edm-base');
const preset = (name: string): NetworkConfig => NETWORK_PRESETS[name];

describe('memory-aware sampling', () => {
  before(useTestBackend);

  it('estimates about 140 MB per image for EDM\'s CIFAR-10 network, and less for smaller ones', () => {
    const cifar = samplingBytesPerImage(preset('cifar10-ddpmpp'));
    assert.ok(cifar > 120e6 && cifar < 160e6, `${(cifar / 1e6).toFixed(0)} MB`);
    assert.ok(samplingBytesPerImage(preset('fmnist-base')) < cifar / 10);
  });

  it('derives the batch from a budget: at least 1, at most the cap', () => {
    const cifar = preset('cifar10-ddpmpp');
    assert.equal(batchForMemory(cifar, 1e9), Math.floor(1e9 / samplingBytesPerImage(cifar)));
    assert.ok(batchForMemory(cifar, 1e9) * samplingBytesPerImage(cifar) <= 1e9);
    assert.equal(batchForMemory(cifar, 1), 1);
    assert.equal(batchForMemory(preset('fmnist-tiny'), 1e12), MAX_DERIVED_BATCH);
  });

  it('ect sample derives its batch from --memory when --batch is not given, and says so', function () {
    if (!fs.existsSync(TEACHER)) this.skip();
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ect-memory-')), 'grid.png');
    const run = spawnSync(process.execPath, [BIN, 'sample', '--checkpoint', TEACHER, '--n', '4', '--memory', '0.001', '--out', out, '--no-progress'], { encoding: 'utf8', timeout: 240000 });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /batch 1: about \d+ MB per image within --memory 0\.001 GB; --batch sets it/);
    assert.ok(fs.existsSync(out));
  });

  it('a grid drawn at a small batch is the one drawn at batch 64 (so final grids can use the run\'s batch)', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0 }, 3);
    const model = samplerModelFor(net, net.params, tinyRunConfig('tune'));
    const big = generateImages(model, 1, 8, { batch: 64, seed: 5 });
    const small = generateImages(model, 1, 8, { batch: 3, seed: 5 });
    assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(big, small))).dataSync()[0]) < 1e-5);
    tf.dispose([big, small]);
    net.dispose();
  });
});
