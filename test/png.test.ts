/** Tests of the float-to-uint8 conversion and the PNG image grids. */
import * as assert from 'assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { PNG } from 'pngjs';
import { imagesToGridPng, upscalePng } from '../lib/image/png';
import { toUint8Images } from '../lib/image/pixels';
import { sideBySide } from '../lib/image/pixels';

describe('png', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('converts [-1, 1] floats to uint8 as clamp(x * 127.5 + 128, 0, 255), truncated', () => {
    const inputs = [-2, -1, -0.5, 0, 0.5, 0.999, 1, 3, NaN];
    const x = tf.tensor4d(inputs, [1, 1, inputs.length, 1]);
    const expected = inputs.map((v) => (Number.isNaN(v) ? 0 : Math.floor(Math.min(255, Math.max(0, v * 127.5 + 128)))));
    assert.deepStrictEqual(Array.from(toUint8Images(x)), expected);
    assert.deepStrictEqual(expected.slice(0, 7), [0, 0, 64, 128, 191, 255, 255]);
    x.dispose();
  });

  it('writes a grey grid that decodes to the right size and pixels', () => {
    // 5 images of 4x3 (h x w): image n is filled with value n / 5 - 0.5, pixel (1, 2) of image 3 set to 1
    const [count, height, width] = [5, 4, 3];
    const values = new Float32Array(count * height * width);
    for (let n = 0; n < count; n++) values.fill(n / 5 - 0.5, n * 12, (n + 1) * 12);
    values[3 * 12 + 1 * width + 2] = 1;
    const images = tf.tensor4d(values, [count, height, width, 1]);
    const before = tf.memory().numTensors;
    const bytes = imagesToGridPng(images, 2, 1);
    assert.strictEqual(tf.memory().numTensors, before);
    const png = PNG.sync.read(bytes);
    // 2 columns, 3 rows, 1 pixel of padding between and around
    assert.strictEqual(png.width, 2 * (width + 1) + 1);
    assert.strictEqual(png.height, 3 * (height + 1) + 1);
    const pixel = (x: number, y: number) => Array.from(png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 4));
    // image 3 sits in column 1, row 1: top-left corner at (1 + 4, 1 + 5)
    const left = 1 + (width + 1);
    const top = 1 + (height + 1);
    assert.deepStrictEqual(pixel(left + 2, top + 1), [255, 255, 255, 255]);
    const grey = Math.floor((3 / 5 - 0.5) * 127.5 + 128);
    assert.deepStrictEqual(pixel(left, top), [grey, grey, grey, 255]);
    assert.deepStrictEqual(pixel(0, 0), [0, 0, 0, 255]);   // padding is black
    images.dispose();
  });

  it('writes a colour grid with channels in place, default near-square layout', () => {
    const images = tf.tidy(() => tf.stack([
      tf.fill([2, 2, 3], -1),
      tf.tensor3d([[[1, -1, -1], [-1, 1, -1]], [[-1, -1, 1], [0, 0, 0]]]),
    ]) as tf.Tensor4D);
    const png = PNG.sync.read(imagesToGridPng(images, undefined, 0));
    assert.deepStrictEqual([png.width, png.height], [4, 2]);   // ceil(sqrt(2)) = 2 columns, no padding
    const rgb = (x: number, y: number) => Array.from(png.data.subarray((y * 4 + x) * 4, (y * 4 + x) * 4 + 3));
    assert.deepStrictEqual(rgb(2, 0), [255, 0, 0]);
    assert.deepStrictEqual(rgb(3, 0), [0, 255, 0]);
    assert.deepStrictEqual(rgb(2, 1), [0, 0, 255]);
    assert.deepStrictEqual(rgb(3, 1), [128, 128, 128]);
    assert.deepStrictEqual(rgb(0, 0), [0, 0, 0]);
    images.dispose();
  });

  it('rejects images with 2 channels and bad layout options', () => {
    const images = tf.zeros([2, 4, 4, 2]) as tf.Tensor4D;
    assert.throws(() => imagesToGridPng(images), /1 or 3 channels/);
    images.dispose();
    const grey = tf.zeros([2, 4, 4, 1]) as tf.Tensor4D;
    assert.throws(() => imagesToGridPng(grey, 0), /cols/);
    assert.throws(() => imagesToGridPng(grey, 2, -1), /pad/);
    grey.dispose();
  });

  it('puts grids side by side with a black gap, and enlarges a PNG by nearest neighbour in its colour type', () => {
    const grey = (value: number, width: number, height: number) => ({ width, height, data: new Uint8Array(width * height * 4).fill(value) });
    const joined = sideBySide([grey(200, 2, 2), grey(100, 1, 3)], 1);
    assert.deepStrictEqual([joined.width, joined.height], [4, 3]);
    const red = (x: number, y: number) => joined.data[(y * joined.width + x) * 4];
    assert.deepStrictEqual([red(0, 0), red(1, 1), red(2, 0), red(3, 2), red(0, 2)], [200, 200, 0, 100, 0], 'the gap and the space below the shorter grid are black');
    const images = tf.tensor4d([-1, 1, 0, -1], [1, 2, 2, 1]);
    const png = imagesToGridPng(images, 1, 0);
    images.dispose();
    const enlarged = PNG.sync.read(upscalePng(png, 3));
    assert.deepStrictEqual([enlarged.width, enlarged.height, enlarged.color], [6, 6, false]);
    const at = (x: number, y: number) => enlarged.data[(y * 6 + x) * 4];
    assert.deepStrictEqual([at(0, 0), at(2, 2), at(3, 0), at(5, 2), at(0, 3), at(5, 5)], [0, 0, 255, 255, 128, 0]);
  });
});
