/**
 * The metrics order known degradations correctly on the committed Fashion-MNIST feature network:
 * held-out real test images score better than blurred ones, which score better than noised ones.
 */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { loadDataset } from '../lib/data';
import { scoreFeatures } from '../lib/metrics/evaluate';
import { ClassifierFeatureNetwork } from '../lib/metrics/features';
import { imagesToTensor } from '../lib/metrics/fmnist-classifier';
import { embedDataset, embedStream, type EmbeddedSet } from '../lib/metrics/reference';
import { requireSystemPart } from './helpers';

const SET_SIZE = 1000;           // images per set: reference, and each variant of the held-out images
const NOISE_STD = 0.5;           // Gaussian noise in [-1, 1] units (about 64 grey levels)
const BLUR_KERNEL = [1, 2, 1, 2, 4, 2, 1, 2, 1].map((v) => v / 16); // 3x3 binomial blur

describe('metrics: degradations on the Fashion-MNIST feature network', function () {
  let previousBackend: string;
  let net: ClassifierFeatureNetwork;
  let reference: EmbeddedSet;
  const scores: Record<string, Record<string, number>> = {};

  before(async function () {
    requireSystemPart(this, 'dataset');
    previousBackend = tf.getBackend() ?? 'cpu'; // undefined when no backend was chosen yet
    await tf.setBackend('wasm'); // the cpu backend's matMul is ~20x slower for these 4000 images
    net = ClassifierFeatureNetwork.load();
    const test = loadDataset({ name: 'fashion-mnist', flip: false }, 'test');
    const slice = (start: number) => ({ ...test, count: SET_SIZE, images: test.images.subarray(start * 784, (start + SET_SIZE) * 784) });
    reference = await embedDataset(net, slice(0));
    const heldOut = { ...slice(SET_SIZE), labels: new Uint8Array(0) };
    const kernel = tf.tensor4d(BLUR_KERNEL, [3, 3, 1, 1]);
    const variants: Record<string, (x: tf.Tensor4D) => tf.Tensor4D> = {
      real: (x) => tf.clone(x),
      blurred: (x) => tf.depthwiseConv2d(x, kernel as tf.Tensor4D, 1, 'same'),
      noised: (x) => tf.add(x, tf.randomNormal(x.shape, 0, NOISE_STD, 'float32', 17)),
    };
    for (const [name, degrade] of Object.entries(variants)) {
      const generated = await embedStream(net, (count, offset) => tf.tidy(() => degrade(imagesToTensor(heldOut, offset, count))), SET_SIZE);
      scores[name] = scoreFeatures(net, { key: {} as never, ...reference }, generated, '', { subsets: 20, subsetSize: 500 });
    }
    kernel.dispose();
  });

  after(async () => {
    net?.dispose();
    if (previousBackend) await tf.setBackend(previousBackend);  // unset when the suite was skipped
  });

  it('the committed classifier reached 90% test accuracy', () => {
    assert.ok((net.testAccuracy ?? 0) >= 0.9, `recorded test accuracy ${net.testAccuracy}`);
  });

  it('fd_fmnist: real < blurred < noised', () => {
    const fd = (name: string) => scores[name].fd_fmnist;
    assert.ok(fd('real') < fd('blurred') && fd('blurred') < fd('noised'), JSON.stringify(scores));
    assert.ok(fd('real') < 0.2 * fd('blurred'), `held-out real images should be far closer than blurred: ${fd('real')} vs ${fd('blurred')}`);
  });

  it('kid_fmnist: real < blurred < noised', () => {
    const kid = (name: string) => scores[name].kid_fmnist;
    assert.ok(kid('real') < kid('blurred') && kid('blurred') < kid('noised'), JSON.stringify(scores));
  });

  it('precision_fmnist: real > blurred > noised', () => {
    const precision = (name: string) => scores[name].precision_fmnist;
    assert.ok(precision('real') > precision('blurred') && precision('blurred') > precision('noised'), JSON.stringify(scores));
  });
});
