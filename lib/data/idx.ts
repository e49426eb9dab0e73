/** Reader for IDX files (MNIST format, plain or gzipped) and the Fashion-MNIST dataset built on it. */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { ImageDataset, Split, candidateDirs, readRequiredFile } from './dataset';

export const IDX_IMAGES_MAGIC = 2051;   // unsigned byte, 3 dimensions (count, rows, cols)
export const IDX_LABELS_MAGIC = 2049;   // unsigned byte, 1 dimension (count)
export const FASHION_MNIST_DEFAULT_DIRS = ['data/fashion-mnist', '/usr/share/datasets/fashion-mnist'];
export const FASHION_MNIST_CLASS_NAMES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];
const FASHION_MNIST_CLASSES = 10;

/** File stems of one split; each may be stored as-is or with .gz. */
export function fashionMnistFiles(split: Split): { images: string; labels: string } {
  const prefix = split === 'train' ? 'train' : 't10k';
  return { images: `${prefix}-images-idx3-ubyte`, labels: `${prefix}-labels-idx1-ubyte` };
}

/** A decoded IDX file of unsigned bytes. */
export interface IdxArray { dims: number[]; data: Uint8Array }

/**
 * Reads an IDX file of unsigned bytes, gunzipping when it starts with the gzip signature.
 * Checks the magic number against `expectedMagic` and the length against the dimensions.
 */
export function readIdxFile(file: string, expectedMagic: number): IdxArray {
  let bytes = readRequiredFile(file, 'IDX');
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (err) {
      throw new Error(`IDX file ${file}: corrupt gzip data (${(err as Error).message})`);
    }
  }
  if (bytes.length < 4) throw new Error(`IDX file ${file}: only ${bytes.length} bytes, too short for a header`);
  const magic = bytes.readUInt32BE(0);
  if (magic !== expectedMagic) {
    throw new Error(`IDX file ${file}: magic number ${magic}, expected ${expectedMagic} ` +
      `(${expectedMagic === IDX_IMAGES_MAGIC ? 'images' : 'labels'}, unsigned bytes)`);
  }
  const rank = magic & 0xff;   // the low byte of the magic number is the number of dimensions
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new Error(`IDX file ${file}: ${bytes.length} bytes, too short for a ${rank}-dimension header (${headerBytes} bytes)`);
  }
  const dims: number[] = [];
  for (let d = 0; d < rank; d++) dims.push(bytes.readUInt32BE(4 + 4 * d));
  const expectedLength = headerBytes + dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== expectedLength) {
    throw new Error(`IDX file ${file}: dimensions [${dims.join(', ')}] need ${expectedLength} bytes, found ${bytes.length}` +
      (bytes.length < expectedLength ? ' (truncated?)' : ''));
  }
  // copy out of the (possibly pooled) Buffer so the dataset owns its memory
  return { dims, data: new Uint8Array(bytes.subarray(headerBytes)) };
}

/** Path of an IDX file in `dir`, plain or .gz; undefined when neither exists. */
function findIdxFile(dir: string, stem: string): string | undefined {
  for (const name of [stem, `${stem}.gz`]) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return file;
  }
  return undefined;
}

/**
 * Finds the folder holding Fashion-MNIST: `dir` if given, else data/fashion-mnist/, else
 * /usr/share/datasets/fashion-mnist/ (the Debian package dataset-fashion-mnist).
 */
export function findFashionMnistDir(dir?: string): string {
  const candidates = (dir !== undefined ? [dir] : FASHION_MNIST_DEFAULT_DIRS).flatMap(candidateDirs);
  const stems = fashionMnistFiles('train');
  const found = candidates.find((d) => findIdxFile(d, stems.images) !== undefined);
  if (found) return found;
  throw new Error(`Fashion-MNIST not found: looked for ${stems.images}[.gz] in ${candidates.join(', ')}. ` +
    'On Debian run `apt-get install -y dataset-fashion-mnist` (or `node scripts/setup.js start` as root), ' +
    'or put the IDX files from https://github.com/zalandoresearch/fashion-mnist in data/fashion-mnist/.');
}

/** Loads a Fashion-MNIST split (28x28 grey images, 10 classes) and checks the files agree. */
export function loadFashionMnist(split: Split, dir?: string): ImageDataset {
  const folder = findFashionMnistDir(dir);
  const stems = fashionMnistFiles(split);
  const imagesFile = findIdxFile(folder, stems.images) ?? path.join(folder, stems.images);
  const labelsFile = findIdxFile(folder, stems.labels) ?? path.join(folder, stems.labels);
  const images = readIdxFile(imagesFile, IDX_IMAGES_MAGIC);
  const labels = readIdxFile(labelsFile, IDX_LABELS_MAGIC);
  const [count, height, width] = images.dims;
  if (count === 0 || height === 0 || width === 0) {
    throw new Error(`IDX file ${imagesFile}: empty image array [${images.dims.join(', ')}]`);
  }
  if (labels.dims[0] !== count) {
    throw new Error(`Fashion-MNIST: ${imagesFile} holds ${count} images but ${labelsFile} holds ${labels.dims[0]} labels`);
  }
  const badLabel = labels.data.findIndex((label) => label >= FASHION_MNIST_CLASSES);
  if (badLabel >= 0) {
    throw new Error(`IDX file ${labelsFile}: label ${badLabel} is ${labels.data[badLabel]}, expected 0..${FASHION_MNIST_CLASSES - 1}`);
  }
  return {
    name: 'fashion-mnist', split, source: folder, count, height, width, channels: 1,
    images: images.data, labels: labels.data, classNames: [...FASHION_MNIST_CLASS_NAMES],
  };
}
