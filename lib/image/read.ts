/**
 * Images made elsewhere, read back as uint8 NHWC: an .npz with arr_0 [N, H, W, C] (guided-diffusion's layout, what
 * `ect sample --format npz` writes) or a folder of PNGs (EDM's fid.py layout, `--format png-dir`), for scoring.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { readNpz } from './npz';

/** uint8 images, NHWC, row-major; where they came from. */
export interface ImageSet {
  images: Uint8Array;
  count: number;
  height: number;
  width: number;
  channels: number;
  source: string;
}

/** The kinds of image source `readImageSet` takes, by what the path is. */
export type ImageSource = 'npz' | 'png-dir';

/** What a path holds: a folder is read as PNGs, a file ending in .npz as an archive; null for anything else. */
export function imageSourceKind(file: string): ImageSource | null {
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) return 'png-dir';
  return /\.npz$/i.test(file) ? 'npz' : null;
}

/** The images of an .npz: arr_0 (or the only array) of uint8, [N, H, W, C] or [N, H, W] (grey). */
export function readNpzImages(file: string): ImageSet {
  const arrays = readNpz(file);
  const array = arrays.get('arr_0') ?? (arrays.size === 1 ? [...arrays.values()][0] : undefined);
  if (!array) throw new Error(`${file}: no arr_0 among its arrays (${[...arrays.keys()].join(', ')}); images go in arr_0 as uint8 [N, H, W, C]`);
  if (array.dtype !== '|u1') throw new Error(`${file}: arr_0 is ${array.dtype}, expected uint8 pixels (0..255)`);
  const [count, height, width, channels = 1] = array.shape;
  if (array.shape.length < 3 || array.shape.length > 4 || ![1, 3].includes(channels)) {
    throw new Error(`${file}: arr_0 has shape (${array.shape.join(', ')}), expected [N, H, W, C] with C 1 or 3 (NHWC, as guided-diffusion saves)`);
  }
  return { images: array.data, count, height, width, channels, source: file };
}

/**
 * The PNGs of a folder in name order (000000.png, 000001.png, ... as EDM writes them; subfolders are not read). They
 * must share one size; grey PNGs give 1 channel, colour ones 3 (alpha dropped).
 */
export function readPngFolder(dir: string): ImageSet {
  const files = fs.readdirSync(dir).filter((f) => /\.png$/i.test(f)).sort();
  if (files.length === 0) throw new Error(`${dir}: no .png files in this folder`);
  const decoded = files.map((f) => {
    try {
      return PNG.sync.read(fs.readFileSync(path.join(dir, f)));
    } catch (err) {
      throw new Error(`${path.join(dir, f)}: not a readable PNG (${(err as Error).message})`);
    }
  });
  const { width, height } = decoded[0];
  const channels = decoded.some((png) => png.color) ? 3 : 1;
  const size = height * width * channels;
  const images = new Uint8Array(files.length * size);
  decoded.forEach((png, n) => {
    if (png.width !== width || png.height !== height) {
      throw new Error(`${path.join(dir, files[n])}: ${png.width}x${png.height}, but ${files[0]} is ${width}x${height}; the images must share one size`);
    }
    for (let p = 0; p < height * width; p++) {
      for (let c = 0; c < channels; c++) images[n * size + p * channels + c] = png.data[p * 4 + c];
    }
  });
  return { images, count: files.length, height, width, channels, source: dir };
}

/** The images at `file`: an .npz or a folder of PNGs. */
export function readImageSet(file: string): ImageSet {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file or folder`);
  switch (imageSourceKind(file)) {
    case 'npz': return readNpzImages(file);
    case 'png-dir': return readPngFolder(file);
    default: throw new Error(`${file}: not an .npz or a folder of PNGs`);
  }
}
