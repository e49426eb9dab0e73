/** The in-memory image dataset every reader returns, and small helpers shared by the readers. */
import * as fs from 'fs';
import * as path from 'path';
import { REPOSITORY_ROOT } from '../repository';

/** The splits every dataset has: the one source of the type, of validation and of the command line's choices. */
export const SPLITS = ['train', 'test'] as const;
export type Split = (typeof SPLITS)[number];

/** A whole split of an image dataset held in memory as uint8 pixels. */
export interface ImageDataset {
  name: string;
  split: Split;
  source: string;          // file or folder it came from
  count: number;           // number of images
  height: number;
  width: number;
  channels: number;
  images: Uint8Array;      // count * height * width * channels, NHWC, uint8
  labels: Uint8Array;      // count
  classNames?: string[];
}

/** Bytes of one image of the dataset. */
export function imageSize(dataset: Pick<ImageDataset, 'height' | 'width' | 'channels'>): number {
  return dataset.height * dataset.width * dataset.channels;
}

/**
 * Keeps the first `limit` images (views into the same buffers, no copy).
 * 0 or undefined keeps everything; a limit above the count keeps everything too.
 */
export function limitDataset(dataset: ImageDataset, limit?: number): ImageDataset {
  if (limit === undefined || limit === 0) return dataset;
  if (!Number.isInteger(limit) || limit < 0) {
    throw new Error(`data.limit must be a non-negative integer (0 means all images), got ${limit}`);
  }
  if (limit >= dataset.count) return dataset;
  return {
    ...dataset,
    count: limit,
    images: dataset.images.subarray(0, limit * imageSize(dataset)),
    labels: dataset.labels.subarray(0, limit),
  };
}

/** Reads a whole file, with an error that names the file and says what the dataset needs. */
export function readRequiredFile(file: string, what: string): Buffer {
  if (!fs.existsSync(file)) throw new Error(`${what}: missing file ${file}`);
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new Error(`${what}: cannot read ${file}: ${(err as Error).message}`);
  }
}

/**
 * Folders a relative dataset path is looked up in: the current directory first, then the root of this
 * package (so `data/...` works whether the CLI runs from the repository or elsewhere).
 */
export function candidateDirs(relativeOrAbsolute: string): string[] {
  if (path.isAbsolute(relativeOrAbsolute)) return [relativeOrAbsolute];
  const fromCwd = path.resolve(relativeOrAbsolute);
  const fromPackage = path.resolve(REPOSITORY_ROOT, relativeOrAbsolute);
  return fromCwd === fromPackage ? [fromCwd] : [fromCwd, fromPackage];
}

