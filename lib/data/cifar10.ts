/** Reader for the CIFAR-10 binary version (cifar-10-batches-bin): planar RGB records converted to NHWC. */
import * as fs from 'fs';
import * as path from 'path';
import { ImageDataset, Split, candidateDirs, readRequiredFile } from './dataset';

export const CIFAR10_SIDE = 32;
export const CIFAR10_CHANNELS = 3;
const PLANE_BYTES = CIFAR10_SIDE * CIFAR10_SIDE;       // one colour plane, 32x32 row-major
const IMAGE_BYTES = PLANE_BYTES * CIFAR10_CHANNELS;     // 3072
export const CIFAR10_RECORD_BYTES = 1 + IMAGE_BYTES;    // label byte, then R, G and B planes
export const CIFAR10_DEFAULT_DIR = 'data/cifar-10-batches-bin';
export const CIFAR10_TRAIN_FILES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
export const CIFAR10_TEST_FILES = ['test_batch.bin'];
export const CIFAR10_CLASS_NAMES = [
  'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck',
];

/** One batch file decoded: NHWC uint8 pixels and labels. */
export interface Cifar10Batch { count: number; images: Uint8Array; labels: Uint8Array }

/** Decodes one CIFAR-10 batch file (any number of 3073-byte records); errors name the file. */
export function readCifar10Batch(file: string): Cifar10Batch {
  const bytes = readRequiredFile(file, 'CIFAR-10');
  if (bytes.length === 0 || bytes.length % CIFAR10_RECORD_BYTES !== 0) {
    throw new Error(`CIFAR-10 batch ${file}: size ${bytes.length} bytes is not a positive multiple of the ` +
      `${CIFAR10_RECORD_BYTES}-byte record (expected e.g. ${10000 * CIFAR10_RECORD_BYTES} for 10000 images); ` +
      'is the file truncated, or not the binary version?');
  }
  const count = bytes.length / CIFAR10_RECORD_BYTES;
  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const record = n * CIFAR10_RECORD_BYTES;
    const label = bytes[record];
    if (label > 9) {
      throw new Error(`CIFAR-10 batch ${file}: record ${n} (byte offset ${record}) has label ${label}, expected 0..9`);
    }
    labels[n] = label;
    // planar (C, H, W) -> interleaved (H, W, C)
    const planes = record + 1;
    const out = n * IMAGE_BYTES;
    for (let pixel = 0; pixel < PLANE_BYTES; pixel++) {
      for (let c = 0; c < CIFAR10_CHANNELS; c++) {
        images[out + pixel * CIFAR10_CHANNELS + c] = bytes[planes + c * PLANE_BYTES + pixel];
      }
    }
  }
  return { count, images, labels };
}

/** Finds the CIFAR-10 folder: `dir` if given, else data/cifar-10-batches-bin (cwd, then package root). */
export function findCifar10Dir(dir?: string): string {
  const wanted = dir ?? CIFAR10_DEFAULT_DIR;
  const candidates = candidateDirs(wanted);
  const found = candidates.find((d) => fs.existsSync(path.join(d, CIFAR10_TEST_FILES[0])));
  if (found) return found;
  throw new Error(`CIFAR-10 binary version not found: looked for ${CIFAR10_TEST_FILES[0]} in ${candidates.join(', ')}. ` +
    'Download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it into data/ ' +
    '(or set data.dir).');
}

/**
 * Loads a CIFAR-10 split. `maxCount` stops reading batch files once that many images are in hand
 * (used by data.limit so that a small run does not decode all 50000 images).
 */
export function loadCifar10(split: Split, dir?: string, maxCount?: number): ImageDataset {
  const folder = findCifar10Dir(dir);
  const files = split === 'train' ? CIFAR10_TRAIN_FILES : CIFAR10_TEST_FILES;
  const batches: Cifar10Batch[] = [];
  let count = 0;
  for (const name of files) {
    if (maxCount && count >= maxCount) break;
    const batch = readCifar10Batch(path.join(folder, name));
    batches.push(batch);
    count += batch.count;
  }
  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  let offset = 0;
  for (const batch of batches) {
    images.set(batch.images, offset * IMAGE_BYTES);
    labels.set(batch.labels, offset);
    offset += batch.count;
  }
  return {
    name: 'cifar10', split, source: folder, count,
    height: CIFAR10_SIDE, width: CIFAR10_SIDE, channels: CIFAR10_CHANNELS,
    images, labels, classNames: readClassNames(folder),
  };
}

/** Class names from batches.meta.txt when present (one per line), else the standard list. */
function readClassNames(folder: string): string[] {
  const metaFile = path.join(folder, 'batches.meta.txt');
  if (!fs.existsSync(metaFile)) return [...CIFAR10_CLASS_NAMES];
  const names = fs.readFileSync(metaFile, 'utf8').split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  return names.length === 10 ? names : [...CIFAR10_CLASS_NAMES];
}
