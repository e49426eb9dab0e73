/** The UNet: parameter count of the paper's network, a hand FLOP count, preconditioning limits, dropout sharing. */
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import { UNet, DropoutMasks } from '../lib/nn/unet';
import { networkPreset } from '../lib/config/network-presets';
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

  it('costs about 42 GFLOP per forward pass at full size (docs/method.md §3)', () => {
    const gflop = forwardFlopsPerImage(networkPreset('cifar10-ddpmpp')) / 1e9;
    assert.ok(gflop > 41 && gflop < 43, `${gflop} GFLOP`);
  });

  it('counts FLOPs of a small network as a hand count does', () => {
    // 4x4x1 input, 4 channels, one level, one block, attention at 4: see the sum below
    const cfg = { resolution: 4, imageChannels: 1, modelChannels: 4, channelMult: [1], numBlocks: 1, attnResolutions: [4], dropout: 0, embedMult: 1, labelDim: 0, labelDropout: 0 };
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
  it('makes the same pass from a class input computed on the host as from the labels (label dropout included)', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0, labelDim: 10, labelDropout: 0.5 }, 5);
    for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.5, 'float32', 17));
    const x = tf.randomNormal([4, 8, 8, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    const labels = [7, 0, 9, 3];
    for (const training of [false, true]) {
      const masks = new DropoutMasks(11, 0, { seed: 19, rate: 0.5 });
      const classInput = net.classInputValues(labels, 4, masks, training)!;
      if (training) assert.ok(Array.from(masks.labelKeep(4)).includes(0) && Array.from(masks.labelKeep(4)).includes(1), 'the seed drops some labels and keeps others');
      const viaLabels = net.forward(x, [0.1, 0.2, 0.3, 0.4], { training, dropout: masks, labels });
      const viaHost = net.forward(x, [0.1, 0.2, 0.3, 0.4], { training, dropout: masks, labels, classInput });
      assert.deepEqual(viaHost.dataSync(), viaLabels.dataSync(), `training ${training}`);
      tf.dispose([viaLabels, viaHost]);
      masks.dispose();
    }
    const unconditional = new UNet(TINY_NET, 0);
    assert.equal(unconditional.classInputValues(undefined, 4), null);
    unconditional.dispose();
    x.dispose();
    net.dispose();
  });

  it('conditions on class labels as EDM does: map.label on the one-hot labels, added to the noise embedding', () => {
    const conditional = new UNet({ ...TINY_NET, dropout: 0, labelDim: 4 }, 5);
    const plain = new UNet({ ...TINY_NET, dropout: 0 }, 5);
    // EDM's map_label: [labelDim, modelChannels] here (tfjs orientation), created last, so the other weights are the
    // unconditional network's of the same seed
    assert.deepEqual(conditional.params.get('map.label.weight')!.shape, [4, TINY_NET.modelChannels]);
    assert.deepEqual(conditional.params.get('map.label.bias')!.shape, [TINY_NET.modelChannels]);
    assert.deepEqual([...conditional.params.keys()].filter((n) => !n.startsWith('map.label.')), [...plain.params.keys()]);
    for (const [name, p] of plain.params) assert.deepEqual(Array.from(conditional.params.get(name)!.dataSync()), Array.from(p.dataSync()), name);
    for (const p of conditional.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.5, 'float32', 13));
    const x = tf.tidy(() => tf.tile(tf.randomNormal([1, 8, 8, 1], 0, 1, 'float32', 2), [4, 1, 1, 1]) as tf.Tensor4D);
    const c = tf.fill([4], 0.2) as tf.Tensor1D;
    const rows = (t: tf.Tensor4D) => { const v = Array.from(t.dataSync()); t.dispose(); return [0, 1, 2, 3].map((i) => v.slice(i * 64, (i + 1) * 64)); };
    const byLabel = rows(conditional.forward(x, c, { labels: [0, 1, 2, 3] }));
    const again = rows(conditional.forward(x, c, { labels: Int32Array.from([3, 1, 2, 0]) }));
    // the same input gives another output for each label, and the output follows the label, not the position
    for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) assert.notDeepEqual(byLabel[i], byLabel[j], `labels ${i} and ${j}`);
    const close = (a: number[], b: number[]) => a.every((v, k) => Math.abs(v - b[k]) < 1e-5);
    assert.ok(close(again[0], byLabel[3]) && close(again[3], byLabel[0]) && close(again[1], byLabel[1]));
    // the one-hot labels are scaled by sqrt(labelDim) and go through map.label into the embedding: a label whose
    // row of map.label.weight is zeroed and whose bias cancels it equals the embedding without any label
    const weight = conditional.params.get('map.label.weight')!;
    const weights = new Map<string, tf.Tensor>(conditional.params);
    weights.set('map.label.weight', tf.zerosLike(weight));
    weights.set('map.label.bias', tf.zerosLike(conditional.params.get('map.label.bias')!));
    const noLabel = rows(conditional.forward(x, c, { labels: [0, 1, 2, 3], weights }));
    const plainWeights = new Map<string, tf.Tensor>([...conditional.params].filter(([n]) => !n.startsWith('map.label.')));
    const unconditional = rows(plain.forward(x, c, { weights: plainWeights }));
    for (let i = 0; i < 4; i++) assert.ok(close(noLabel[i], unconditional[i]), `zero label embedding, image ${i}`);
    weights.get('map.label.weight')!.dispose();
    weights.get('map.label.bias')!.dispose();
    tf.dispose([x, c]);
    conditional.dispose();
    plain.dispose();
  });

  it('refuses labels for an unconditional network, and a conditional one without labels or with a class it lacks', () => {
    const plain = new UNet(TINY_NET, 0);
    const conditional = new UNet({ ...TINY_NET, labelDim: 3 }, 0);
    const x = tf.zeros([2, 8, 8, 1]) as tf.Tensor4D;
    const c = tf.zeros([2]) as tf.Tensor1D;
    assert.throws(() => plain.forward(x, c, { labels: [0, 1] }), /unconditional \(net\.labelDim 0\)/);
    assert.throws(() => conditional.forward(x, c), /class-conditional \(net\.labelDim 3\) and needs a class label per image/);
    assert.throws(() => conditional.forward(x, c, { labels: [0] }), /1 class labels for a batch of 2/);
    assert.throws(() => conditional.forward(x, c, { labels: [0, 3] }), /class label 3 \(image 1\) is not a class id in 0\.\.2/);
    assert.throws(() => conditional.forward(x, c, { labels: [0, 1.5] }), /class label 1\.5/);
    const before = tf.memory().numTensors;
    conditional.forward(x, c, { labels: [2, 0] }).dispose();
    assert.equal(tf.memory().numTensors, before, 'the one-hot labels are freed');
    tf.dispose([x, c]);
    plain.dispose();
    conditional.dispose();
  });

  it('drops labels in training as the step\'s masks say (EDM\'s label_dropout): a dropped label is no label at all', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0, labelDim: 3, labelDropout: 0.5 }, 1);
    for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.5, 'float32', 21));
    const batch = 16;
    const x = tf.tidy(() => tf.tile(tf.randomNormal([1, 8, 8, 1], 0, 1, 'float32', 3), [batch, 1, 1, 1]) as tf.Tensor4D);
    const c = tf.fill([batch], 0.3) as tf.Tensor1D;
    const masks = new DropoutMasks(7, 0, { seed: 99, rate: 0.5 });
    const keep = Array.from(masks.labelMask(batch).dataSync());
    assert.ok(keep.includes(0) && keep.includes(1), `some labels kept, some dropped: ${keep}`);
    assert.throws(() => net.forward(x, c, { training: true, labels: new Array(batch).fill(0) }), /label dropout needs the step's DropoutMasks/);
    const values = (labels: number[]) => { const t = net.forward(x, c, { training: true, dropout: masks, labels }); const v = Array.from(t.dataSync()); t.dispose(); return v; };
    const zeros = values(new Array(batch).fill(0));
    const twos = values(new Array(batch).fill(2));
    for (let i = 0; i < batch; i++) {
      const differs = zeros.slice(i * 64, (i + 1) * 64).some((v, k) => Math.abs(v - twos[i * 64 + k]) > 1e-6);
      assert.equal(differs, keep[i] === 1, `image ${i}: its label ${keep[i] ? 'kept' : 'dropped'}`);
    }
    // the same seed gives the same mask; out of training no label is dropped
    assert.deepEqual(Array.from(new DropoutMasks(7, 0, { seed: 99, rate: 0.5 }).labelMask(batch).dataSync()), keep);
    const inference = net.forward(x, c, { labels: new Array(batch).fill(0) });
    const dropped = keep.indexOf(0);
    assert.ok(Array.from(inference.dataSync()).slice(dropped * 64, (dropped + 1) * 64).some((v, k) => Math.abs(v - zeros[dropped * 64 + k]) > 1e-6));
    tf.dispose([x, c, inference]);
    masks.dispose();
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
