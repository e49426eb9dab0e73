/** Float images in [-1, 1] to uint8 pixels and to PNG image grids (pngjs). */
import * as tf from '@tensorflow/tfjs-core';
import { PNG } from 'pngjs';
import { scaleNearest, tileRgba, toUint8Images, type RgbaImage } from './pixels';

/**
 * Tiles a batch of NHWC images in [-1, 1] (1 or 3 channels) into one PNG: `cols` images per row
 * (default: a near-square grid), `pad` black pixels between and around images (default 2).
 * Returns the PNG file bytes.
 */
export function imagesToGridPng(images: tf.Tensor4D, cols?: number, pad = 2): Buffer {
  const [count, , , channels] = images.shape;
  if (channels !== 1 && channels !== 3) {
    throw new Error(`imagesToGridPng: images must have 1 or 3 channels, got shape [${images.shape.join(', ')}]`);
  }
  if (count === 0) throw new Error('imagesToGridPng: no images to tile');
  const columns = cols ?? Math.ceil(Math.sqrt(count));
  if (!Number.isInteger(columns) || columns <= 0) throw new Error(`imagesToGridPng: cols must be a positive integer, got ${cols}`);
  if (!Number.isInteger(pad) || pad < 0) throw new Error(`imagesToGridPng: pad must be a non-negative integer, got ${pad}`);
  return rgbaToPng(tileRgba(toUint8Images(images), images.shape, columns, pad), channels);
}

/** An opaque RGBA image as PNG bytes: 8-bit grey when `channels` is 1 (the images it shows are grey), RGB when 3. */
export function rgbaToPng(image: RgbaImage, channels: number): Buffer {
  const png = new PNG({ width: image.width, height: image.height });
  png.data.set(image.data);
  return PNG.sync.write(png, { colorType: channels === 3 ? 2 : 0 });
}

/** A PNG enlarged `factor` times by nearest neighbour (lib/image/pixels.ts scaleNearest), in the same colour type. */
export function upscalePng(bytes: Uint8Array, factor: number): Buffer {
  const decoded = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const scaled = scaleNearest({ width: decoded.width, height: decoded.height, data: decoded.data }, factor);
  return rgbaToPng(scaled, decoded.color ? 3 : 1);
}
