/**
 * Float images in [-1, 1] to uint8 pixels, and RGBA images tiled, put side by side and enlarged: pure (no Node modules),
 * shared by the PNG writer and the web page.
 */
import * as tf from '@tensorflow/tfjs-core';

/** uint8 = clamp(x * 127.5 + 128, 0, 255), truncated (docs/method.md §7); NHWC order kept. */
export function toUint8Images(x: tf.Tensor4D): Uint8Array {
  const scaled = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, 127.5), 128), 0, 255));
  const values = scaled.dataSync();
  scaled.dispose();
  // assigning floats in [0, 255] to a Uint8Array truncates toward zero, as a cast to uint8 does
  return Uint8Array.from(values);
}

/** An RGBA image: width x height x 4 bytes, row-major. */
export interface RgbaImage { width: number; height: number; data: Uint8Array }

/**
 * Tiles uint8 NHWC images (1 or 3 channels) into one opaque RGBA image, `columns` per row, `pad` black pixels
 * between and around them: the layout of the PNG grids and of the web page's canvas.
 */
export function tileRgba(pixels: Uint8Array, [count, height, width, channels]: number[], columns: number, pad: number): RgbaImage {
  const rows = Math.ceil(count / columns);
  const out: RgbaImage = { width: columns * (width + pad) + pad, height: rows * (height + pad) + pad, data: new Uint8Array(0) };
  out.data = new Uint8Array(out.width * out.height * 4);
  for (let i = 3; i < out.data.length; i += 4) out.data[i] = 255;   // black, opaque
  for (let n = 0; n < count; n++) {
    const left = pad + (n % columns) * (width + pad);
    const top = pad + Math.floor(n / columns) * (height + pad);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const from = ((n * height + y) * width + x) * channels;
        const to = ((top + y) * out.width + left + x) * 4;
        for (let c = 0; c < 3; c++) out.data[to + c] = pixels[from + (channels === 3 ? c : 0)];
      }
    }
  }
  return out;
}

/** RGBA images side by side, top-aligned, with `gap` black pixels between them (one opaque image). */
export function sideBySide(images: RgbaImage[], gap: number): RgbaImage {
  if (images.length === 0) throw new Error('sideBySide: no images');
  const width = images.reduce((sum, image) => sum + image.width, 0) + gap * (images.length - 1);
  const height = Math.max(...images.map((image) => image.height));
  const out: RgbaImage = { width, height, data: new Uint8Array(width * height * 4) };
  for (let i = 3; i < out.data.length; i += 4) out.data[i] = 255;   // black, opaque
  let left = 0;
  for (const image of images) {
    for (let y = 0; y < image.height; y++) out.data.set(image.data.subarray(y * image.width * 4, (y + 1) * image.width * 4), (y * width + left) * 4);
    left += image.width + gap;
  }
  return out;
}

/** An RGBA image enlarged `factor` times by nearest neighbour (each pixel a factor x factor block), so small images stay sharp. */
export function scaleNearest(image: RgbaImage, factor: number): RgbaImage {
  if (!(Number.isInteger(factor) && factor >= 1)) throw new Error(`scaleNearest: factor must be an integer >= 1, got ${factor}`);
  const width = image.width * factor;
  const out: RgbaImage = { width, height: image.height * factor, data: new Uint8Array(width * image.height * factor * 4) };
  for (let y = 0; y < out.height; y++) {
    const from = Math.floor(y / factor) * image.width;
    for (let x = 0; x < width; x++) out.data.set(image.data.subarray((from + Math.floor(x / factor)) * 4, (from + Math.floor(x / factor)) * 4 + 4), (y * width + x) * 4);
  }
  return out;
}
