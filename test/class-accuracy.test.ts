/** Class accuracy of a conditional model: the classifier's verdict on images of each class asked for, counted right. */
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import { classAccuracy } from '../lib/metrics/class-accuracy';
import { FmnistClassifier } from '../lib/metrics/fmnist-classifier';
import { UNet } from '../lib/nn/unet';
import { generateImages, perClassLabels, samplerModelFor } from '../lib/sample';
import { TINY_NET, tinyRunConfig, useTestBackend } from './helpers';

describe('metrics: class accuracy of a conditional model', () => {
  before(useTestBackend);

  it('counts how often the classifier assigns each class\'s images to it, on the images of `ect sample --class all`', () => {
    const net = new UNet({ ...TINY_NET, labelDim: 3 }, 2);
    for (const p of net.params.values()) p.assign(tf.randomNormal(p.shape, 0, 0.4, 'float32', 17));
    const model = samplerModelFor(net, new Map(net.params), tinyRunConfig('tune'));
    const classifier = new FmnistClassifier({ imageSize: 8, channels: 1, conv1: 4, conv2: 4, hidden: 8, classes: 3 }, 5);
    const result = classAccuracy(model, classifier, 1, { perClass: 4, batch: 5 });
    // the same images, generated in one go and classified here
    const images = generateImages(model, 1, 12, { labels: perClassLabels(3, 4) });
    const assigned = Array.from(tf.tidy(() => tf.argMax(classifier.logits(images), 1)).dataSync());
    images.dispose();
    const expected = [0, 1, 2].map((k) => assigned.slice(4 * k, 4 * k + 4).filter((a) => a === k).length / 4);
    assert.deepEqual(result.perClass, expected);
    assert.equal(result.n, 12);
    assert.ok(Math.abs(result.accuracy - expected.reduce((a, b) => a + b) / 3) < 1e-12);
    assert.deepEqual(result.confusion.map((row) => row.reduce((a, b) => a + b)), [4, 4, 4]);
    assert.deepEqual(result.confusion.flat(), [0, 1, 2].flatMap((k) => [0, 1, 2].map((a) => assigned.slice(4 * k, 4 * k + 4).filter((v) => v === a).length)));
    assert.equal(result.chance, 1 / 3);
    // an unconditional model, or a classifier of other classes, is refused
    const plain = new UNet(TINY_NET, 2);
    assert.throws(() => classAccuracy(samplerModelFor(plain, new Map(plain.params), tinyRunConfig('tune')), classifier, 1, { perClass: 1 }), /unconditional/);
    const other = new FmnistClassifier({ imageSize: 8, channels: 1, conv1: 4, conv2: 4, hidden: 8, classes: 10 }, 5);
    assert.throws(() => classAccuracy(model, other, 1, { perClass: 1 }), /knows 10 classes, the model 3/);
    [plain, net].forEach((n) => n.dispose());
    [classifier, other].forEach((c) => c.dispose());
  });
});
