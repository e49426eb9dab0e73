/**
 * Importing EDM networks into our UNet and exporting ours under EDM's names: VP and VE preconditioning against values
 * computed by hand, the layout changes and the name table (missing, unmapped and misshapen entries listed), the
 * safetensors round trip bit for bit, NCSN++'s resampling; and, on pickles PyTorch writes (test/fixtures/make_edm_pickles.py):
 * D(x, sigma) of the imported network (DDPM++ and NCSN++, EDM, VP and VE preconditioning, with and without labels) against
 * the fixture's own float64 forward pass, the export as EDM's own state_dict, refusals, the CLI, and `ect tune --init`.
 */
import * as assert from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { NetworkConfig, RunConfig } from '../lib/config/types';
import { DEFAULT_EDM } from '../lib/config/defaults';
import { denoise, precondCoefficients, veCoefficients, vpCoefficients, vpSigmaInverse } from '../lib/edm/precond';
import { UNet } from '../lib/nn/unet';
import {
  EDM_MODEL_PREFIX, convertLayout, edmResampleBuffers, edmResampleFilter, edmTensorMap, inferEdmArchitecture, matchEdmStateDict, type EdmLayout,
} from '../lib/import/edm-map';
import { ARCH_SETTINGS } from '../lib/nn/architecture';
import { resample2x } from '../lib/nn/layers';
import { encodeEdmSafetensors } from '../lib/import/edm-export';
import { importEdmFile, importEdmPickle, importEdmSafetensors } from '../lib/import/edm-import';
import { writeImportedRun } from '../lib/import/edm-run';
import { edmNetwork, moduleStateDict, readEdmPickle } from '../lib/import/edm-pickle';
import { decodeSafetensors } from '../lib/import/safetensors';
import { tensorBytes } from '../lib/import/torch-storage';
import { resolveRun } from '../lib/train/launch';
import { disposeModel, modelFromCheckpoint } from '../lib/runs/model';
import { makeSampler, sampleNoise, samplerModelFor } from '../lib/sample';
import { TINY_NET, requireSystemPart, tinyRunConfig, tinyRunSpec, useTestBackend } from './helpers';

const PYTHON = process.env.ECT_PYTHON || '/usr/bin/python3';
const SCRIPT = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'make_edm_pickles.py');
const BIN = path.resolve(__dirname, '..', '..', 'bin', 'ect.js');

/** EDM's VPPrecond defaults. */
const VP = { betaD: 19.9, betaMin: 0.1, M: 1000 };

/** A conditional network with every kind of block (down, up, attention, skips) and a label embedding. */
const CONDITIONAL_NET: NetworkConfig = { ...TINY_NET, labelDim: 10, labelDropout: 0.1 };

/** The same in EDM's NCSN++ setting (Fourier embedding, residual encoder, [1, 3, 3, 1] resampling). */
const NCSNPP_NET: NetworkConfig = { ...CONDITIONAL_NET, arch: 'ncsnpp' };

const hex = (bytes: ArrayBufferView) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
const floatHex = (tensor: tf.Tensor) => hex(new Uint8Array((tensor.dataSync() as Float32Array).slice().buffer));

/** The EDM state_dict shapes (relative to the SongUNet) of our UNet for `cfg`, with DDPM++'s resample filters. */
function edmShapes(cfg: NetworkConfig): Map<string, readonly number[]> {
  const net = new UNet(cfg, 0);
  const shapes = new Map<string, readonly number[]>(edmTensorMap(cfg, net.paramShapes()).map((m) => [m.edm, m.edmShape]));
  net.dispose();
  for (const name of edmResampleBuffers(cfg)) shapes.set(name, edmResampleFilter(cfg.arch).shape);
  return shapes;
}

describe('import: VP and VE preconditioning', () => {
  it('VP: c_skip 1, c_out -sigma, c_in 1/sqrt(sigma^2 + 1), c_noise (M - 1) sigma^-1(sigma), against values computed by hand', () => {
    // by hand (bc -l): sigma^-1(1) = (sqrt(0.01 + 39.8 ln 2) - 0.1) / 19.9 = 0.25896026243279658730
    const one = vpCoefficients(1, VP);
    assert.deepStrictEqual([one.cSkip, one.cOut], [1, -1]);
    assert.ok(Math.abs(one.cIn - Math.SQRT1_2) < 1e-15);
    assert.ok(Math.abs(vpSigmaInverse(1, VP) - 0.25896026243279658730) < 1e-15);
    assert.ok(Math.abs(one.cNoise - 258.70130217036379071) < 1e-11);
    // sigma = 80: c_in = 1/sqrt(6401) = 0.012499023551926018845, c_noise = 999 (sqrt(0.01 + 39.8 ln 6401) - 0.1) / 19.9 = 932.57763209746326853
    const top = vpCoefficients(80, VP);
    assert.strictEqual(top.cOut, -80);
    assert.ok(Math.abs(top.cIn - 0.012499023551926018845) < 1e-17);
    assert.ok(Math.abs(top.cNoise - 932.57763209746326853) < 1e-10);
    // the inverse of the schedule sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) at t = 0.5: exp(2.5375) = 12.648011384379226034
    assert.ok(Math.abs(vpSigmaInverse(Math.sqrt(12.648011384379226034 - 1), VP) - 0.5) < 1e-14);
  });

  it('VE: c_skip 1, c_out sigma, c_in 1, c_noise ln(sigma / 2), against values computed by hand', () => {
    assert.deepStrictEqual(veCoefficients(2), { cSkip: 1, cOut: 2, cIn: 1, cNoise: 0 });
    const top = veCoefficients(80);
    assert.deepStrictEqual([top.cSkip, top.cOut, top.cIn], [1, 80, 1]);
    assert.ok(Math.abs(top.cNoise - 3.6888794541139363029) < 1e-15);              // ln 40
    assert.ok(Math.abs(veCoefficients(0.002).cNoise + 6.9077552789821370521) < 1e-14);  // ln 0.001
  });

  it('the config picks the preconditioning: EDM when edm.precond is absent, VP with its constants, VE', () => {
    const edm = precondCoefficients(0.5, DEFAULT_EDM, 'train');
    assert.ok(Math.abs(edm.cSkip - 0.5) < 1e-16 && Math.abs(edm.cNoise - Math.log(0.5) / 4) < 1e-16);
    assert.deepStrictEqual(precondCoefficients(1, { ...DEFAULT_EDM, precond: 'vp', vp: VP }, 'train'), vpCoefficients(1, VP));
    assert.deepStrictEqual(precondCoefficients(80, { ...DEFAULT_EDM, precond: 've' }, 'eval'), veCoefficients(80));
    assert.throws(() => tinyRunConfig('pretrain', { edm: { precond: 'vp' } }), /edm\.precond 'vp' needs edm\.vp/);
    assert.throws(() => tinyRunConfig('pretrain', { edm: { vp: VP } }), /edm\.vp is VPPrecond's/);
    assert.throws(() => tinyRunConfig('tune', { edm: { precond: 've' } }), /ECT tunes with EDM's preconditioning/);
    assert.strictEqual(tinyRunConfig('pretrain', { edm: { precond: 'vp', vp: VP } }).edm.vp?.M, 1000);
  });
});

describe('import: our UNet under EDM names and layouts', () => {
  before(useTestBackend);

  it('converts each layout both ways exactly, with EDM index order (OIHW, [out, in], swapped embedding halves)', () => {
    const cases: Array<[EdmLayout, number[]]> = [['copy', [6]], ['copy-swap', [6]], ['linear', [4, 3]], ['linear-swap-in', [4, 3]], ['linear-swap-out', [3, 4]], ['conv', [3, 3, 2, 5]]];
    for (const [layout, shape] of cases) {
      const values = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i + 0.5);
      const edm = convertLayout(layout, values, shape, 'toEdm');
      assert.deepStrictEqual(convertLayout(layout, edm, shape, 'toOurs'), values, layout);
    }
    // ours [in = 4, out = 3] is EDM [3, 4]; map_layer0's inputs are [cos, sin] here and [sin, cos] in EDM
    const ours = Float32Array.from({ length: 12 }, (_, i) => i);
    const edm = convertLayout('linear-swap-in', ours, [4, 3], 'toEdm');
    assert.strictEqual(edm[1 * 4 + 2], ours[0 * 3 + 1], 'EDM [out 1, in 2] = ours [in 0, out 1]');
    assert.strictEqual(edm[0 * 4 + 0], ours[2 * 3 + 0], 'EDM [out 0, in 0] = ours [in 2, out 0]');
    const conv = convertLayout('conv', Float32Array.from({ length: 60 }, (_, i) => i), [2, 3, 2, 5], 'toEdm');
    // EDM [o=4, i=1, y=1, x=2] = ours [y=1, x=2, i=1, o=4]
    assert.strictEqual(conv[((4 * 2 + 1) * 2 + 1) * 3 + 2], ((1 * 3 + 2) * 2 + 1) * 5 + 4);
    assert.deepStrictEqual(convertLayout('copy-swap', Float32Array.from([0, 1, 2, 3]), [4], 'toEdm'), Float32Array.from([2, 3, 0, 1]));
  });

  it("resamples with NCSN++'s [1, 3, 3, 1] filter as EDM's strided and transposed depthwise convolutions do", () => {
    const [h, w] = [6, 4];
    const values = Array.from({ length: h * w }, (_, i) => Math.sin(i * 1.7) + i / 10);
    const at = (y: number, x: number) => (y >= 0 && y < h && x >= 0 && x < w ? values[y * w + x] : 0);
    const t = [1, 3, 3, 1].map((v) => v / 8);
    const image = tf.tensor4d(values, [1, h, w, 1]);
    // EDM down: conv2d(x, outer(t, t), stride 2, padding 1): out[i][j] = sum t_a t_b x[2i - 1 + a][2j - 1 + b]
    const down = resample2x(image, 'down', [1, 3, 3, 1]).dataSync();
    for (let i = 0; i < h / 2; i++) {
      for (let j = 0; j < w / 2; j++) {
        let want = 0;
        for (let a = 0; a < 4; a++) for (let b = 0; b < 4; b++) want += t[a] * t[b] * at(2 * i - 1 + a, 2 * j - 1 + b);
        assert.ok(Math.abs(down[i * (w / 2) + j] - want) < 1e-6, `down [${i}, ${j}]: ${down[i * (w / 2) + j]} vs ${want}`);
      }
    }
    // EDM up: conv_transpose2d(x, 4 outer(t, t), stride 2, padding 1): out[o][p] = sum 4 t_a t_b x[i][j] over o = 2i - 1 + a, p = 2j - 1 + b
    const up = resample2x(image, 'up', [1, 3, 3, 1]).dataSync();
    const wantUp = new Float64Array(4 * h * w);
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        for (let a = 0; a < 4; a++) {
          for (let b = 0; b < 4; b++) {
            const [o, p] = [2 * i - 1 + a, 2 * j - 1 + b];
            if (o >= 0 && o < 2 * h && p >= 0 && p < 2 * w) wantUp[o * 2 * w + p] += 4 * t[a] * t[b] * values[i * w + j];
          }
        }
      }
    }
    wantUp.forEach((v, k) => assert.ok(Math.abs(up[k] - v) < 1e-6, `up ${k}: ${up[k]} vs ${v}`));
    image.dispose();
  });

  it("names every parameter as EDM's SongUNet does", () => {
    const net = new UNet(CONDITIONAL_NET, 0);
    const table = new Map(edmTensorMap(CONDITIONAL_NET, net.paramShapes()).map((m) => [m.ours, m]));
    net.dispose();
    const edmName = (ours: string) => table.get(ours)?.edm;
    assert.strictEqual(edmName('map.layer0.weight'), 'map_layer0.weight');
    assert.deepStrictEqual(table.get('map.layer0.weight')?.edmShape, [16, 8]);
    assert.strictEqual(edmName('map.label.bias'), 'map_label.bias');
    assert.strictEqual(edmName('enc.8x8_conv.weight'), 'enc.8x8_conv.weight');
    assert.deepStrictEqual(table.get('enc.8x8_conv.weight')?.edmShape, [8, 1, 3, 3]);
    assert.strictEqual(edmName('enc.4x4_block0.attn.qkv.weight'), 'enc.4x4_block0.qkv.weight');
    assert.strictEqual(edmName('dec.4x4_in0.attn.norm.weight'), 'dec.4x4_in0.norm2.weight');
    assert.strictEqual(edmName('out.norm.weight'), 'dec.8x8_aux_norm.weight');
    assert.strictEqual(edmName('out.conv.bias'), 'dec.8x8_aux_conv.bias');
    assert.deepStrictEqual(edmResampleBuffers(CONDITIONAL_NET), ['enc.4x4_down.conv0.resample_filter', 'enc.4x4_down.skip.resample_filter', 'dec.8x8_up.conv0.resample_filter', 'dec.8x8_up.skip.resample_filter']);
  });

  it('reads the architecture back from the names and shapes alone', () => {
    for (const cfg of [TINY_NET, CONDITIONAL_NET, NCSNPP_NET, { ...TINY_NET, channelMult: [1, 2, 2], numBlocks: 2, attnResolutions: [4, 2], embedMult: 4 }]) {
      const arch = inferEdmArchitecture(edmShapes(cfg), 'test');
      const { dropout: _d, labelDropout: _l, ...architecture } = cfg;
      assert.deepStrictEqual(arch.net, architecture);
      assert.strictEqual(arch.noiseChannels, ARCH_SETTINGS[cfg.arch ?? 'ddpmpp'].noiseMult * cfg.modelChannels);
    }
    assert.deepStrictEqual(edmResampleBuffers(NCSNPP_NET).filter((name) => name.includes('aux')), ['enc.4x4_aux_residual.resample_filter']);
    assert.deepStrictEqual([...edmResampleFilter('ncsnpp').values].slice(0, 4), [1 / 64, 3 / 64, 3 / 64, 1 / 64]);
  });

  it('lists every missing, unmapped and misshapen entry in one error', () => {
    const shapes = new Map(edmShapes(CONDITIONAL_NET));
    const net = new UNet(CONDITIONAL_NET, 0);
    const ours = net.paramShapes();
    net.dispose();
    assert.strictEqual(matchEdmStateDict(CONDITIONAL_NET, ours, shapes, 'good.pkl').mapping.length, ours.size);
    shapes.delete('dec.4x4_in1.conv1.bias');
    shapes.delete('enc.4x4_down.skip.resample_filter');
    shapes.set('enc.4x4_block0.gate.weight', [8]);
    shapes.set('map_augment.weight', [8, 9]);
    shapes.set('dec.4x4_in0.qkv.weight', [16, 48, 1, 1]);
    assert.throws(() => matchEdmStateDict(CONDITIONAL_NET, ours, shapes, 'bad.pkl'), (err: Error) => {
      assert.match(err.message, /`bad\.pkl`/);
      assert.match(err.message, /missing: dec\.4x4_in1\.conv1\.bias, enc\.4x4_down\.skip\.resample_filter/);
      assert.match(err.message, /unmapped: enc\.4x4_block0\.gate\.weight\n/);
      assert.match(err.message, /wrong shapes: dec\.4x4_in0\.qkv\.weight \[16, 48, 1, 1\], expected \[48, 16, 1, 1\] \(for our dec\.4x4_in0\.attn\.qkv\.weight\)/);
      assert.ok(!/unmapped:.*map_augment/.test(err.message), 'the augmentation mapping is dropped, not unmapped');
      return true;
    });
  });

  for (const network of [CONDITIONAL_NET, NCSNPP_NET]) it(`exports to safetensors under EDM names and imports the same weights back, bit for bit (${network.arch ?? 'ddpmpp'})`, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-edm-export-'));
    try {
      const cfg = tinyRunConfig('pretrain', { net: network as never, edm: { precond: 'vp', vp: VP } });
      const net = new UNet(cfg.net, 7);
      const weights = new Map<string, tf.Tensor>(net.params);
      const file = path.join(dir, 'net.safetensors');
      fs.writeFileSync(file, encodeEdmSafetensors(net, weights, cfg));
      const written = decodeSafetensors(new Uint8Array(fs.readFileSync(file)), file);
      assert.ok([...written.tensors.keys()].every((name) => name.startsWith(EDM_MODEL_PREFIX)));
      assert.deepStrictEqual(written.tensors.get('model.map_layer0.weight')?.shape, [16, 8 * ARCH_SETTINGS[network.arch ?? 'ddpmpp'].noiseMult]);
      assert.deepStrictEqual(written.tensors.get('model.enc.4x4_down.conv0.resample_filter')?.shape, edmResampleFilter(network.arch).shape);
      assert.strictEqual(written.metadata['ect.precond_class'], 'VPPrecond');
      const imported = importEdmFile(file);
      assert.deepStrictEqual(imported.net, cfg.net);
      assert.strictEqual(imported.edm.precond, 'vp');
      assert.deepStrictEqual(imported.edm.vp, VP);
      assert.deepStrictEqual([...imported.weights.keys()], [...net.params.keys()]);
      for (const [name, p] of net.params) {
        assert.deepStrictEqual(imported.weights.get(name)!.shape, p.shape, name);
        assert.strictEqual(hex(imported.weights.get(name)!.values), floatHex(p), name);
      }
      // and through a run folder: the checkpoint holds the same bits, and exporting it again gives the same file
      const run = writeImportedRun(path.join(dir, 'run'), importEdmSafetensors(file));
      const model = modelFromCheckpoint(run.checkpoint);
      try {
        for (const [name, p] of net.params) assert.strictEqual(floatHex(model.ema.get(name)!), floatHex(p), name);
        assert.deepStrictEqual(Buffer.from(encodeEdmSafetensors(model.net, model.ema, model.config)), fs.readFileSync(file));
      } finally {
        disposeModel(model);
      }
      assert.throws(() => writeImportedRun(path.join(dir, 'run'), imported), /already holds a run/);
      net.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

interface ParityExpectation {
  precond_class: string; shape_nchw: [number, number, number, number]; sigmas: number[]; labels: number[] | null;
  x: number[][]; D: number[][]; sigma_min: number | string | null; sigma_max: number | string | null;
}

/** NCHW values as an NHWC tensor. */
function nhwc(values: number[], [n, c, h, w]: number[]): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(tf.tensor4d(values, [n, c, h, w]), [0, 2, 3, 1]) as tf.Tensor4D);
}

/** Largest relative error on these inputs at which the imported network must match the float64 reference. */
const PARITY_TOLERANCE = 1e-5;

describe('import: EDM pickles written by PyTorch, into our UNet', function () {
  let dir = '';
  let parity: Record<string, ParityExpectation> = {};
  const fixture = (name: string) => path.join(dir, name);

  before(async function () {
    requireSystemPart(this, 'torch');
    await useTestBackend();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-edm-import-'));
    const made = spawnSync(PYTHON, [SCRIPT, dir], { encoding: 'utf8', timeout: 300000 });
    if (made.status !== 0) throw new Error(`make_edm_pickles.py failed (${made.status}): ${made.stderr}`);
    parity = (JSON.parse(fs.readFileSync(fixture('expected.json'), 'utf8')) as { parity: Record<string, ParityExpectation> }).parity;
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const file of ['parity-edm-uncond.pkl', 'parity-edm-cond.pkl', 'parity-vp.pkl', 'parity-ve-cond.pkl', 'parity-ncsnpp-ve-cond.pkl', 'parity-ncsnpp-edm.pkl']) {
    it(`${file}: D(x, sigma) of the imported network matches the float64 reference within ${PARITY_TOLERANCE} relative, sigma 0.002 to 80`, () => {
      const want = parity[file];
      const run = writeImportedRun(fixture(`run-${file}`), importEdmPickle(fixture(file)));
      const model = modelFromCheckpoint(run.checkpoint);
      try {
        const errors = want.sigmas.map((sigma, i) => {
          const x = nhwc(want.x[i], want.shape_nchw);
          const reference = nhwc(want.D[i], want.shape_nchw);
          const out = denoise(model.net, x, sigma, { edm: model.config.edm, mode: 'train', weights: model.ema, labels: want.labels ?? undefined });
          const error = tf.tidy(() => tf.max(tf.abs(tf.sub(out, reference))).dataSync()[0] / tf.max(tf.abs(reference)).dataSync()[0]);
          tf.dispose([x, reference, out]);
          return error;
        });
        console.log(`      ${file}: relative error ${errors.map((e, i) => `${e.toExponential(1)} at sigma ${want.sigmas[i]}`).join(', ')}`);
        errors.forEach((error, i) => assert.ok(error < PARITY_TOLERANCE, `sigma ${want.sigmas[i]}: relative error ${error}`));
      } finally {
        disposeModel(model);
      }
    });
  }

  it('records the network, its preconditioning, the sampler range and what was dropped in the run config', () => {
    const vp = importEdmPickle(fixture('parity-vp.pkl'));
    assert.deepStrictEqual(vp.net, { resolution: 8, imageChannels: 3, modelChannels: 16, channelMult: [1, 2], numBlocks: 2, attnResolutions: [4], dropout: 0.13, embedMult: 4, labelDim: 0, labelDropout: 0 });
    assert.deepStrictEqual(vp.edm, { precond: 'vp', vp: VP, sigmaMin: 0.002, sigmaMax: 80 });
    assert.deepStrictEqual(Object.keys(vp.source.dropped), ['model.map_augment.weight']);
    const ve = importEdmPickle(fixture('parity-ve-cond.pkl'));
    assert.deepStrictEqual(ve.edm, { precond: 've', sigmaMin: 0.02, sigmaMax: 80 }, "EDM's sampler starts at min(80, sigma_max) and stops at max(0.002, sigma_min)");
    assert.strictEqual(ve.net.labelDim, 10);
    assert.strictEqual(ve.net.labelDropout, 0.1);
    const run = writeImportedRun(fixture('run-recorded'), importEdmPickle(fixture('parity-edm-cond.pkl')));
    const config = JSON.parse(fs.readFileSync(path.join(run.runDir, 'config.json'), 'utf8')) as RunConfig;
    assert.strictEqual(config.kind, 'pretrain');
    assert.strictEqual(config.edm.precond, 'edm');
    assert.strictEqual(config.edm.sigmaData, 0.5);
    assert.match(config.description ?? '', /EDMPrecond around a SongUNet.*dropped: model\.map_augment\.weight/);
    // the original small fixtures (N(0, 1) weights) import too, DDPM++ and NCSN++
    assert.strictEqual(importEdmPickle(fixture('snapshot-ddpmpp-p4.pkl')).net.imageChannels, 1);
    const ncsnpp = importEdmPickle(fixture('snapshot-ncsnpp-p4.pkl'));
    assert.strictEqual(ncsnpp.net.arch, 'ncsnpp');
    assert.deepStrictEqual(ncsnpp.weights.get('map.noise.freqs')?.shape, [8]);
    assert.deepStrictEqual(ncsnpp.weights.get('map.layer0.weight')?.shape, [16, 32]);
    assert.deepStrictEqual(ncsnpp.weights.get('enc.4x4_aux_residual.weight')?.shape, [3, 3, 3, 8]);
  });

  for (const name of ['parity-edm-cond.pkl', 'parity-ncsnpp-ve-cond.pkl']) it(`exports an imported network as EDM's own state_dict, bit for bit (the augmentation mapping aside): ${name}`, () => {
    const file = fixture(name);
    const run = writeImportedRun(fixture(`run-export-${name}`), importEdmPickle(file));
    const model = modelFromCheckpoint(run.checkpoint);
    try {
      const exported = decodeSafetensors(encodeEdmSafetensors(model.net, model.ema, model.config), 'export');
      const original = moduleStateDict(edmNetwork(readEdmPickle(file), file), file);
      original.delete('model.map_augment.weight');
      assert.deepStrictEqual(new Set(exported.tensors.keys()), new Set(original.keys()));
      for (const [name, tensor] of original) {
        assert.deepStrictEqual(exported.tensors.get(name)!.shape, [...tensor.shape], name);
        assert.strictEqual(hex(exported.tensors.get(name)!.data), hex(tensorBytes(tensor)), name);
      }
    } finally {
      disposeModel(model);
    }
  });

  it('samples an imported VP teacher with Heun and its own preconditioning', () => {
    const run = writeImportedRun(fixture('run-heun'), importEdmPickle(fixture('parity-vp.pkl')));
    const model = modelFromCheckpoint(run.checkpoint);
    try {
      const sampler = makeSampler(samplerModelFor(model.net, model.ema, { ...model.config, edm: { ...model.config.edm, heunSteps: 4 } }), 'heun');
      const images = sampler(sampleNoise(0, 0, 2, [8, 8, 3]));
      assert.deepStrictEqual(images.shape, [2, 8, 8, 3]);
      assert.ok((images.dataSync() as Float32Array).every(Number.isFinite));
      images.dispose();
    } finally {
      disposeModel(model);
    }
  });

  it("`ect tune --init <imported>` copies the inner network and tunes with ECT's (EDM) preconditioning", () => {
    const run = writeImportedRun(fixture('run-teacher'), importEdmPickle(fixture('parity-vp.pkl')));
    const resolved = resolveRun(tinyRunSpec('tune', fixture('run-tuned'), { net: undefined, data: { name: 'synthetic', flip: false } }, { init: run.runDir }));
    assert.strictEqual(resolved.cfg.edm.precond, undefined, "ECT's preconditioning");
    assert.strictEqual(resolved.start.from, 'init');
    const { dropout: _a, labelDropout: _b, ...teacher } = run.config.net;
    const { dropout: _c, labelDropout: _d, ...tuned } = resolved.cfg.net;
    assert.deepStrictEqual(tuned, teacher);
    assert.throws(() => resolveRun(tinyRunSpec('tune', fixture('run-tuned-vp'), { net: undefined, edm: { precond: 'vp', vp: VP } }, { init: run.runDir })),
      /ECT tunes with EDM's preconditioning/);
  });

  it('refuses NaN and infinite weights, naming the tensor and the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-edm-nan-'));
    const cfg = tinyRunConfig('pretrain', { net: CONDITIONAL_NET as never });
    const net = new UNet(cfg.net, 7);
    try {
      for (const bad of [NaN, Infinity]) {
        const weights = new Map<string, tf.Tensor>(net.params);
        const [name, param] = [...net.params][3];
        const values = (param.dataSync() as Float32Array).slice();
        values[1] = bad;
        values[2] = bad;
        weights.set(name, tf.tensor(values, param.shape));
        const file = path.join(dir, `net-${bad}.safetensors`);
        fs.writeFileSync(file, encodeEdmSafetensors(net, weights, cfg));
        weights.get(name)!.dispose();
        const edmName = 'model.' + edmTensorMap(cfg.net, net.paramShapes()).find((m) => m.ours === name)!.edm;
        assert.throws(() => importEdmFile(file), (err: Error) => {
          assert.ok(err.message.startsWith(`\`${file}\`: tensor ${edmName} holds 2 NaN or infinite values of ${values.length} (the first: ${bad})`), err.message);
          return true;
        });
      }
    } finally {
      net.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses mixed settings and other network classes, naming them and what is supported', () => {
    assert.throws(() => importEdmPickle(fixture('mixed-settings.pkl')), (err: Error) => {
      assert.match(err.message, /mixed-settings\.pkl`: has settings our DDPM\+\+ UNet does not compute/);
      assert.match(err.message, /enc\.4x4_down\.conv0: a resampling filter of shape \[1, 1, 4, 4\] that is not DDPM\+\+'s \[1, 1\]/);
      assert.match(err.message, /supported: EDMPrecond, VPPrecond, VEPrecond around a SongUNet with DDPM\+\+ or NCSN\+\+ settings/);
      return true;
    });
    assert.throws(() => importEdmPickle(fixture('iddpm-precond.pkl')), /iddpm-precond\.pkl`: holds an EDM network of class iDDPMPrecond, which is not supported; supported: EDMPrecond, VPPrecond, VEPrecond/);
  });

  it('`ect import-edm` and `ect export --format safetensors` from the command line: the same weights after a round trip', () => {
    const ect = (...args: string[]) => {
      const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ECT_BACKEND: process.env.ECT_TEST_BACKEND ?? '' } });
      assert.strictEqual(result.status, 0, `${result.stdout}${result.stderr}`);
      return `${result.stdout}${result.stderr}`;
    };
    const imported = ect('import-edm', fixture('parity-edm-cond.pkl'), '--out', fixture('cli-run'));
    assert.match(imported, /EDMPrecond around a SongUNet.*10 classes, preconditioning edm/);
    assert.match(imported, /dropped model\.map_augment\.weight: the augmentation-label mapping/);
    ect('export', '--checkpoint', fixture('cli-run'), '--format', 'safetensors', '--out', fixture('cli.safetensors'));
    ect('import-edm', fixture('cli.safetensors'), '--out', fixture('cli-again'));
    const [first, second] = [modelFromCheckpoint(path.join(fixture('cli-run'), 'checkpoints', 'ckpt-000000000.ckpt')),
      modelFromCheckpoint(path.join(fixture('cli-again'), 'checkpoints', 'ckpt-000000000.ckpt'))];
    try {
      assert.deepStrictEqual(second.config.net, first.config.net);
      for (const [name, weight] of first.ema) assert.strictEqual(floatHex(second.ema.get(name)!), floatHex(weight), name);
    } finally {
      disposeModel(first);
      disposeModel(second);
    }
  });

  it('names a truncated or foreign file', () => {
    const whole = fs.readFileSync(fixture('parity-vp.pkl'));
    fs.writeFileSync(fixture('cut.pkl'), whole.subarray(0, whole.length >> 1));
    assert.throws(() => importEdmFile(fixture('cut.pkl')), /cut\.pkl.*truncated/s);
    assert.throws(() => importEdmFile(fixture('zip-state-dict.pt')), /zip-state-dict\.pt.*not a pickle: it is a zip archive/s);
    fs.writeFileSync(fixture('cut.safetensors'), Buffer.concat([Buffer.from([16, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"a": ')]));
    assert.throws(() => importEdmFile(fixture('cut.safetensors')), /cut\.safetensors/);
  });
});
