/** The UNet: parameter count of the paper's network, a hand FLOP count, preconditioning limits, dropout sharing. */
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import { UNet, DropoutMasks } from '../lib/nn/unet';
import { networkPreset } from '../lib/nn/presets';
import { forwardFlopsPerImage } from '../lib/nn/flops';
import { denoise } from '../lib/edm/precond';
import { DEFAULT_EDM } from '../lib/config/defaults';
import { TINY_NET, useTestBackend } from './helpers';

describe('DDPM++ UNet', () => {
  before(useTestBackend);

  it('has 55.7M parameters in the paper\'s CIFAR-10 configuration', () => {
    const net = new UNet(networkPreset('cifar10-ddpmpp'), 0);
    const count = net.paramCount();
    net.dispose();
    assert.ok(Math.abs(count - 55.7e6) < 0.05e6, `parameter count ${count}`);
    assert.equal(count, 55732739);
  });

  it('costs about 42 GFLOP per forward pass at full size (ect-spec.md section 4)', () => {
    const gflop = forwardFlopsPerImage(networkPreset('cifar10-ddpmpp')) / 1e9;
    assert.ok(gflop > 41 && gflop < 43, `${gflop} GFLOP`);
  });

  it('counts FLOPs of a small network as a hand count does', () => {
    // 4x4x1 input, 4 channels, one level, one block, attention at 4: see the sum below
    const cfg = { resolution: 4, imageChannels: 1, modelChannels: 4, channelMult: [1], numBlocks: 1, attnResolutions: [4], dropout: 0, embedMult: 1 };
    const conv3 = (cin: number, cout: number) => 2 * 16 * cin * cout * 9;
    const conv1 = (cin: number, cout: number) => 2 * 16 * cin * cout;
    const attention = conv1(4, 12) + 2 * (2 * 16 * 16 * 4) + conv1(4, 4);
    const plainBlock = conv3(4, 4) + 2 * 4 * 4 + conv3(4, 4);
    const expected = 2 * (2 * 4 * 4) + conv3(1, 4)            // mapping MLP, input conv
      + (plainBlock + attention)                               // encoder block (attention at 4)
      + (plainBlock + attention) + plainBlock                  // middle: in0 (attention), in1
      + (conv3(8, 4) + 2 * 4 * 4 + conv3(4, 4) + conv1(8, 4))  // decoder block0 with a skip
      + (conv3(8, 4) + 2 * 4 * 4 + conv3(4, 4) + conv1(8, 4) + attention) // block1, attention on the last
      + conv3(4, 1);                                           // output conv
    assert.equal(expected, 78304);
    assert.equal(forwardFlopsPerImage(cfg), expected);
  });

  it('frees everything it allocates: construct + dispose leaves the tensor count unchanged', () => {
    const before = tf.memory().numTensors;
    const net = new UNet(TINY_NET, 0);
    assert.equal(tf.memory().numTensors - before, net.params.size, 'one tensor per parameter, nothing else');
    net.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('keeps stable parameter names', () => {
    const net = new UNet(TINY_NET, 0);
    const names = [...net.params.keys()];
    net.dispose();
    for (const name of ['map.layer0.weight', 'enc.8x8_conv.weight', 'enc.4x4_down.conv0.weight', 'enc.4x4_block0.attn.qkv.weight',
      'dec.4x4_in0.attn.proj.weight', 'dec.8x8_up.skip.weight', 'dec.8x8_block1.conv1.bias', 'out.conv.weight']) {
      assert.ok(names.includes(name), `missing ${name}`);
    }
  });

  it('is deterministic for a seed and rejects a wrong input shape', () => {
    const a = new UNet(TINY_NET, 3);
    const b = new UNet(TINY_NET, 3);
    const wa = a.params.get('enc.8x8_conv.weight')!.dataSync();
    const wb = b.params.get('enc.8x8_conv.weight')!.dataSync();
    assert.deepEqual(Array.from(wa), Array.from(wb));
    assert.throws(() => a.forward(tf.zeros([2, 4, 4, 1]) as tf.Tensor4D, tf.zeros([2]) as tf.Tensor1D), /expects \[B, 8, 8, 1\]/);
    a.dispose(); b.dispose();
  });

  it('gives D(x, 0) = x in training mode and D(x, 0.003) = x in eval mode, whatever the weights', () => {
    const net = new UNet(TINY_NET, 1);
    for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.5, 'float32', 5));
    const x = tf.randomNormal([3, 8, 8, 1], 0, 1, 'float32', 1) as tf.Tensor4D;
    const train = denoise(net, x, [0, 0, 0], { edm: DEFAULT_EDM, mode: 'train' });
    const evalMode = denoise(net, x, 0.003, { edm: DEFAULT_EDM, mode: 'eval' });
    const elsewhere = denoise(net, x, 1, { edm: DEFAULT_EDM, mode: 'train' });
    assert.ok(tf.max(tf.abs(tf.sub(train, x))).dataSync()[0] < 1e-6);
    assert.ok(tf.max(tf.abs(tf.sub(evalMode, x))).dataSync()[0] < 1e-6);
    assert.ok(tf.max(tf.abs(tf.sub(elsewhere, x))).dataSync()[0] > 1e-3, 'the network must matter at sigma = 1');
    tf.dispose([x, train, evalMode, elsewhere]);
    net.dispose();
  });

  it('replays the same dropout mask when given the same DropoutMasks, differs otherwise, and has no masks of its own', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0.5 }, 2);
    for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.5, 'float32', 9));
    const x = tf.randomNormal([2, 8, 8, 1], 0, 1, 'float32', 4) as tf.Tensor4D;
    const c = tf.fill([2], 0.1) as tf.Tensor1D;
    const masks = new DropoutMasks(11, 0.5);
    const otherMasks = new DropoutMasks(12, 0.5);
    const first = net.forward(x, c, { training: true, dropout: masks });
    const again = net.forward(x, c, { training: true, dropout: masks });
    const fresh = net.forward(x, c, { training: true, dropout: otherMasks });
    // no hidden random state: dropout in training needs the step's masks
    assert.throws(() => net.forward(x, c, { training: true }), /needs the step's DropoutMasks/);
    const noDropout = net.forward(x, c, { training: false });
    const diff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
    assert.equal(diff(first, again), 0);
    assert.ok(diff(first, fresh) > 1e-4);
    assert.ok(diff(first, noDropout) > 1e-4);
    masks.dispose();
    otherMasks.dispose();
    tf.dispose([x, c, first, again, fresh, noDropout]);
    net.dispose();
  });
  it('draws dropout masks at the drop rate, scaled by 1/keep, deterministic per seed and layer', () => {
    for (const rate of [0, 0.1, 0.5]) {
      const a = new DropoutMasks(5, rate), b = new DropoutMasks(5, rate), other = new DropoutMasks(6, rate);
      const shape = [4, 16, 16, 8];
      const m1 = a.mask('l1', shape).dataSync(), m2 = a.mask('l2', shape).dataSync();
      const again = b.mask('l1', shape).dataSync(), reseeded = other.mask('l1', shape).dataSync();
      const kept = m1.filter((v) => v !== 0);
      kept.forEach((v) => assert.ok(Math.abs(v - 1 / (1 - rate)) < 1e-6));
      // 8192 units: the kept fraction is within 4 standard deviations of 1 - rate
      const sd = Math.sqrt(rate * (1 - rate) / m1.length);
      assert.ok(Math.abs(kept.length / m1.length - (1 - rate)) <= 4 * sd + 1e-9, `rate ${rate}: kept ${kept.length} of ${m1.length}`);
      assert.deepEqual(Array.from(again), Array.from(m1), 'same seed and layer: same mask');
      if (rate > 0) {
        const agree = (x: ArrayLike<number>, y: ArrayLike<number>) => Array.from(x).filter((v, i) => v === y[i]).length / x.length;
        // independent masks agree on about rate^2 + keep^2 of the units (0.5 for rate 0.5, 0.82 for 0.1)
        const expected = rate * rate + (1 - rate) * (1 - rate);
        assert.ok(Math.abs(agree(m1, m2) - expected) < 0.03, 'another layer draws another mask');
        assert.ok(Math.abs(agree(m1, reseeded) - expected) < 0.03, 'another step seed draws another mask');
      }
      [a, b, other].forEach((m) => m.dispose());
    }
  });
});
