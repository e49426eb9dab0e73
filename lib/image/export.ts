/**
 * Generated images in the formats other tools read: a PNG grid to look at, a folder of PNGs as EDM's fid.py reads
 * it, and an .npz with a uint8 NHWC `arr_0` as guided-diffusion's evaluator reads it. Writers take images batch by
 * batch, so 50,000 samples stream to disk; every format quantises with the grids' one mapping (toUint8Images).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { PNG } from 'pngjs';
import { NpzWriter } from './npz';
import { imagesToGridPng } from './png';
import { toUint8Images } from './pixels';
import { writeFileNamed } from '../write-file';

/** The formats `ect sample --format` writes: the one source of the type, the choices and the help text. */
export const SAMPLE_FORMATS = ['grid', 'png-dir', 'npz'] as const;
export type SampleFormat = (typeof SAMPLE_FORMATS)[number];

/** What each format writes, and where by default. */
export const SAMPLE_FORMAT_INFO: Record<SampleFormat, { out: string; what: string }> = {
  grid: { out: 'samples.png', what: 'one PNG grid of all images (one row per class with --class all)' },
  'png-dir': { out: 'samples', what: 'a folder with one PNG per image, 000000.png ... (grey or RGB), as EDM\'s fid.py reads it' },
  npz: { out: 'samples.npz', what: 'a NumPy .npz: arr_0 uint8 [N, H, W, C] (and arr_1 int64 class labels of a conditional model), as guided-diffusion\'s evaluator reads it' },
};

/** Receives the images of one sampling, batch by batch in image order. */
export interface SampleWriter {
  /** Takes a batch of images in about [-1, 1], NHWC (the caller still owns and disposes the tensor), and their classes if any. */
  write(images: tf.Tensor4D, labels?: ArrayLike<number>): void;
  /** Finishes the output; returns what was written (a file or a folder). */
  close(): string;
}

/** What a writer needs to know before the first image. */
export interface SampleWriterOptions {
  n: number;                                   // images that will be written
  shape: [number, number, number];             // height, width, channels of each image
  columns?: number;                            // grid: images per row (default near-square)
  first?: number;                              // png-dir: number of the first file (its image index; 0)
  indices?: ArrayLike<number>;                 // png-dir: the number of each image's file, in order (its seed, as EDM names them; default first, first+1, ...)
}

/** A writer of `format` to `out` (a file, or a folder for png-dir). */
export function createSampleWriter(format: SampleFormat, out: string, opts: SampleWriterOptions): SampleWriter {
  const [height, width, channels] = opts.shape;
  if (format !== 'npz' && channels !== 1 && channels !== 3) throw new Error(`${format}: PNG images need 1 or 3 channels, got ${channels}`);
  let written = 0;
  const count = (images: tf.Tensor4D) => {
    const [batch, h, w, c] = images.shape;
    if (h !== height || w !== width || c !== channels) throw new Error(`images of [${h}, ${w}, ${c}] for a writer of [${opts.shape}]`);
    if (written + batch > opts.n) throw new Error(`more than the ${opts.n} images this writer was made for`);
    written += batch;
    return batch;
  };
  const complete = () => {
    if (written !== opts.n) throw new Error(`${out}: ${written} of ${opts.n} images written`);
  };
  fs.mkdirSync(format === 'png-dir' ? out : path.dirname(path.resolve(out)), { recursive: true });

  switch (format) {
    case 'grid': {
      const parts: tf.Tensor4D[] = [];
      return {
        write: (images) => { count(images); parts.push(tf.clone(images)); },
        close: () => {
          complete();
          const all = tf.concat(parts, 0) as tf.Tensor4D;
          parts.forEach((p) => p.dispose());
          try {
            writeFileNamed(out, imagesToGridPng(all, opts.columns ?? Math.ceil(Math.sqrt(opts.n))));
          } finally {
            all.dispose();
          }
          return out;
        },
      };
    }
    case 'png-dir': {
      const first = opts.first ?? 0;
      return {
        write: (images) => {
          const start = written;
          const batch = count(images);
          const pixels = toUint8Images(images);
          const size = height * width * channels;
          for (let k = 0; k < batch; k++) {
            const file = path.join(out, `${String(opts.indices ? opts.indices[start + k] : first + start + k).padStart(6, '0')}.png`);
            writeFileNamed(file, encodePng(pixels.subarray(k * size, (k + 1) * size), height, width, channels));
          }
        },
        close: () => { complete(); return out; },
      };
    }
    case 'npz': {
      const npz = new NpzWriter(out);
      npz.begin('arr_0', '|u1', [opts.n, height, width, channels]);
      const labels: number[] = [];  // arr_1, written after the images, when every batch came with labels
      return {
        write: (images, batchLabels) => {
          const start = written;
          const batch = count(images);
          if (batchLabels) {
            if (batchLabels.length !== batch || labels.length !== start) throw new Error(`${out}: give labels with every batch or with none`);
            labels.push(...Array.from(batchLabels));
          }
          npz.write(toUint8Images(images));
        },
        close: () => {
          complete();
          if (labels.length && labels.length !== opts.n) throw new Error(`${out}: labels for ${labels.length} of ${opts.n} images; give them with every batch or with none`);
          if (labels.length) {
            npz.begin('arr_1', '<i8', [opts.n]);
            const bytes = Buffer.alloc(8 * opts.n);
            labels.forEach((label, i) => bytes.writeBigInt64LE(BigInt(label), 8 * i));
            npz.write(bytes);
          }
          npz.close();
          return out;
        },
      };
    }
    default:
      throw new Error(`unknown sample format '${format as string}' (expected ${SAMPLE_FORMATS.join(', ')})`);
  }
}

/** One image's uint8 pixels (HWC) as PNG bytes: 8-bit grey for one channel (PIL's mode L), RGB for three. */
export function encodePng(pixels: Uint8Array, height: number, width: number, channels: number): Buffer {
  if (channels !== 1 && channels !== 3) throw new Error(`encodePng: 1 or 3 channels, got ${channels}`);
  if (pixels.length !== height * width * channels) throw new Error(`encodePng: ${pixels.length} bytes for ${height}x${width}x${channels}`);
  const colorType = channels === 3 ? 2 : 0;
  const png = new PNG({ width, height });
  png.data = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  return PNG.sync.write(png, { colorType, inputColorType: colorType, inputHasAlpha: false });
}
