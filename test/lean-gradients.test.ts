/**
 * The lean backward pass (lib/train/lean-gradients.ts): the same gradients as tf.variableGrads, bit for bit, on a
 * UNet with every kind of block; no tensor left behind; less memory held at its peak.
 */
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import '../lib/tf-gradients';
import { UNet } from '../lib/nn/unet';
import { leanGradientsSupported, leanVariableGrads, setGradientPass } from '../lib/train/lean-gradients';
import { TINY_NET, useTestBackend } from './helpers';

describe('lean backward pass', () => {
  before(useTestBackend);
  after(() => setGradientPass('lean'));

  /** A loss through the whole network: mean squared output plus a skip through the input (so x's gradient adds up). */
  function lossOf(net: UNet, x: tf.Tensor4D): () => tf.Scalar {
    return () => {
      const y = net.forward(x, [0.1, 0.5, 1.0, 2.0]);
      return tf.add(tf.mean(tf.square(y)), tf.mean(tf.mul(y, x))) as tf.Scalar;
    };
  }

  it('runs on this tfjs (its engine exposes the tape)', () => {
    assert.ok(leanGradientsSupported());
  });

  it('gives tf.variableGrads\' value and gradients bit for bit, and leaves no tensor behind', () => {
    const net = new UNet({ ...TINY_NET, dropout: 0 }, 7);
    const x = tf.randomNormal([4, 8, 8, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    const vars = [...net.params.values()] as tf.Variable[];
    const reference = tf.variableGrads(lossOf(net, x), vars);
    const before = tf.memory().numTensors;
    const lean = leanVariableGrads(lossOf(net, x), vars);
    assert.equal(tf.memory().numTensors, before + 1 + Object.keys(lean.grads).length, 'only the value and the gradients stay');
    assert.equal(lean.value.dataSync()[0], reference.value.dataSync()[0]);
    assert.deepEqual(Object.keys(lean.grads).sort(), Object.keys(reference.grads).sort());
    assert.equal(Object.keys(lean.grads).length, vars.length);
    for (const [name, g] of Object.entries(reference.grads)) {
      assert.deepEqual(lean.grads[name].shape, g.shape, name);
      assert.deepEqual(Array.from(lean.grads[name].dataSync()), Array.from(g.dataSync()), `${name} differs`);
    }
    tf.dispose([lean.value, reference.value, ...Object.values(lean.grads), ...Object.values(reference.grads), x]);
    net.dispose();
  });

  it('holds less memory at its peak than tfjs\'s pass (which keeps every activation gradient to the end)', async () => {
    const net = new UNet({ ...TINY_NET, dropout: 0, resolution: 16 }, 7);
    const x = tf.randomNormal([8, 16, 16, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    const vars = [...net.params.values()] as tf.Variable[];
    const peakOf = async (pass: 'lean' | 'tfjs') => {
      setGradientPass(pass);
      const info = await tf.profile(() => {
        const { value, grads } = leanVariableGrads(() => {
          const y = net.forward(x, [0.1, 0.5, 1, 2, 0.1, 0.5, 1, 2]);
          return tf.mean(tf.square(y)) as tf.Scalar;
        }, vars);
        tf.dispose([value, ...Object.values(grads)]);
      });
      return info.peakBytes;
    };
    const tfjs = await peakOf('tfjs');
    const lean = await peakOf('lean');
    setGradientPass('lean');
    assert.ok(lean < 0.9 * tfjs, `peak bytes: lean ${lean}, tfjs ${tfjs}`);
    x.dispose();
    net.dispose();
  });

  it('falls back to tf.variableGrads inside another gradient computation, and rejects a non-scalar loss', () => {
    const v = tf.variable(tf.tensor1d([1, 2, 3]), true, 'lean-test-v');
    // inside tf.grad's forward pass the tape must be kept for the outer gradient: the fallback runs, and works
    const outer = tf.grad((a: tf.Tensor) => {
      const { value, grads } = leanVariableGrads(() => tf.sum(tf.mul(v, a)) as tf.Scalar, [v]);
      tf.dispose(Object.values(grads));
      return value;
    })(tf.tensor1d([1, 1, 1]));
    assert.deepEqual(Array.from(outer.dataSync()), [1, 2, 3]);
    assert.throws(() => leanVariableGrads(() => tf.mul(v, 2) as unknown as tf.Scalar, [v]), /must return a scalar/);
    tf.dispose([outer, v]);
  });
});
