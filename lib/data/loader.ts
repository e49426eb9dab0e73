/** Seeded batch loader: shuffled epochs of images with their labels, optional horizontal flips, and a JSON state for exact resume. */
import * as tf from '@tensorflow/tfjs-core';
import { drawSeed, hashUniform, seededPermutation } from '../random';
import { ImageDataset, imageSize } from './dataset';

export interface BatchLoaderOptions {
  batch: number;    // images per batch
  seed: number;     // same seed, same sequence of batches
  flip: boolean;    // mirror each image left-right with probability 1/2
}

/** One training batch: the images and their class ids. */
export interface Batch {
  images: tf.Tensor4D;   // [batch, H, W, C] in [-1, 1]; the caller disposes it
  labels: Int32Array;    // [batch] class ids, from the dataset's labels
}

/** Everything needed to continue the exact sequence of batches; plain JSON. */
export interface LoaderState {
  seed: number;
  count: number;                          // dataset size, checked on restore
  epoch: number;                          // epochs started so far minus one (0 in the first epoch)
  position: number;                       // index of the next image in this epoch's order
  flipRngState?: unknown;                 // written by earlier versions (a flip generator's state); ignored
}

/**
 * Draws batches without replacement; each epoch visits every image once in a fresh order. A batch that
 * runs past the end of an epoch is completed from the next one, so every batch is full.
 * Each epoch's order and flips depend only on (seed, epoch, position), so (epoch, position) is the whole state.
 */
export class BatchLoader {
  readonly batch: number;
  readonly seed: number;
  readonly flip: boolean;
  private epoch = 0;
  private position = 0;
  private order: Uint32Array;
  private flipSeed: number;

  constructor(readonly dataset: ImageDataset, options: BatchLoaderOptions) {
    if (!Number.isInteger(options.batch) || options.batch <= 0) {
      throw new Error(`BatchLoader: batch must be a positive integer, got ${options.batch}`);
    }
    if (!Number.isFinite(options.seed)) throw new Error(`BatchLoader: seed must be a number, got ${options.seed}`);
    if (dataset.count <= 0) throw new Error(`BatchLoader: dataset ${dataset.name} (${dataset.source}) is empty`);
    this.batch = options.batch;
    this.seed = options.seed;
    this.flip = options.flip;
    this.order = epochOrder(dataset.count, this.seed, 0);
    this.flipSeed = drawSeed(this.seed, 0, 'flip');
  }

  /** Images drawn so far, over all epochs. */
  get imagesSeen(): number {
    return this.epoch * this.dataset.count + this.position;
  }

  /**
   * The next batch: images as float32 NHWC in [-1, 1] (uint8 / 127.5 - 1), which the caller disposes, and each
   * image's class id (a flip keeps the label).
   */
  next(): Batch {
    const { height, width, channels, images } = this.dataset;
    const size = imageSize(this.dataset);
    const rowBytes = width * channels;
    const out = new Float32Array(this.batch * size);
    const labels = new Int32Array(this.batch);
    for (let b = 0; b < this.batch; b++) {
      if (this.position >= this.dataset.count) this.startEpoch(this.epoch + 1);
      const mirrored = this.flip && hashUniform(this.flipSeed, this.position) < 0.5;
      const index = this.order[this.position++];
      labels[b] = this.dataset.labels[index];
      const source = index * size;
      const target = b * size;
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const sourceX = mirrored ? width - 1 - x : x;
          const from = source + y * rowBytes + sourceX * channels;
          const to = target + y * rowBytes + x * channels;
          for (let c = 0; c < channels; c++) out[to + c] = images[from + c] / 127.5 - 1;
        }
      }
    }
    return { images: tf.tensor4d(out, [this.batch, height, width, channels]), labels };
  }

  /** A JSON-safe snapshot; setState of it makes the following batches identical to this loader's. */
  getState(): LoaderState {
    return {
      seed: this.seed,
      count: this.dataset.count,
      epoch: this.epoch,
      position: this.position,
    };
  }

  /** Restores a snapshot taken by getState (from a loader over the same dataset and seed). */
  setState(state: LoaderState): void {
    if (state.seed !== this.seed || state.count !== this.dataset.count) {
      throw new Error(`BatchLoader.setState: state is for seed ${state.seed} over ${state.count} images, ` +
        `this loader has seed ${this.seed} over ${this.dataset.count} images (${this.dataset.source})`);
    }
    if (!Number.isInteger(state.epoch) || state.epoch < 0 ||
        !Number.isInteger(state.position) || state.position < 0 || state.position > state.count) {
      throw new Error(`BatchLoader.setState: bad epoch ${state.epoch} or position ${state.position} for ${state.count} images`);
    }
    this.startEpoch(state.epoch);
    this.position = state.position;
  }

  private startEpoch(epoch: number): void {
    this.epoch = epoch;
    this.position = 0;
    this.order = epochOrder(this.dataset.count, this.seed, epoch);
    this.flipSeed = drawSeed(this.seed, epoch, 'flip');
  }
}

/** The order of an epoch: a permutation of 0..count-1 that depends only on (seed, epoch). */
export function epochOrder(count: number, seed: number, epoch: number): Uint32Array {
  return seededPermutation(count, drawSeed(seed, epoch, 'batch-order'));
}
