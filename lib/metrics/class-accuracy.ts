/**
 * How well a class-conditional model follows its labels: the share of its samples that a classifier (the project's
 * Fashion-MNIST classifier) assigns to the class they were asked for, overall and per class, beside chance.
 */
import * as tf from '@tensorflow/tfjs-core';
import { DEFAULT_SAMPLE_SEED, perClassLabels, sampleBatches, type SampleSteps, type SamplerModel } from '../sample';
import { readAndDispose, type FmnistClassifier } from './fmnist-classifier';

/** Options of classAccuracy. */
export interface ClassAccuracyOptions {
  perClass: number;               // images asked of each class (class-major order: image i is of class floor(i / perClass))
  seed?: number;                  // sampling noise seed (DEFAULT_SAMPLE_SEED): image i's noise depends on (seed, i) only
  batch?: number;                 // images per network call (250); does not change the images
  midT?: number[];                // intermediate times of 2-step sampling (default: the model's)
  onProgress?: (done: number, total: number) => void;
}

/** The result: overall and per-class agreement, the confusion counts and the chance level. */
export interface ClassAccuracy {
  n: number;                      // images classified
  accuracy: number;               // share assigned to the class asked for
  perClass: number[];             // the same share within each class asked for
  confusion: number[][];          // confusion[asked][assigned]: image counts
  chance: number;                 // 1 / classes: what a model that ignores its labels scores
}

/**
 * Generates `perClass` images of each class of a conditional model and classifies them: how often the classifier
 * assigns an image to the class it was generated for. The images are the ones `ect sample --class all --n
 * <classes * perClass>` writes (same seed, same noise per image index).
 */
export function classAccuracy(model: SamplerModel, classifier: FmnistClassifier, steps: SampleSteps, opts: ClassAccuracyOptions): ClassAccuracy {
  const classes = model.net.cfg.labelDim;
  if (!classes) throw new Error('class accuracy needs a class-conditional model (net.labelDim > 0); this one is unconditional');
  if (classifier.arch.classes !== classes) throw new Error(`the classifier knows ${classifier.arch.classes} classes, the model ${classes}`);
  if (!Number.isInteger(opts.perClass) || opts.perClass <= 0) throw new Error(`perClass must be a positive integer, got ${opts.perClass}`);
  const n = classes * opts.perClass;
  const labels = perClassLabels(classes, opts.perClass);
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  const batches = sampleBatches(model, steps, n, { labels, seed: opts.seed ?? DEFAULT_SAMPLE_SEED, batch: opts.batch ?? 250, midT: opts.midT });
  for (const { images, start } of batches) {
    const count = images.shape[0];
    const assigned = readAndDispose(tf.tidy(() => tf.argMax(classifier.logits(images), 1)));
    images.dispose();
    for (let k = 0; k < count; k++) confusion[labels[start + k]][assigned[k]]++;
    opts.onProgress?.(start + count, n);
  }
  const perClass = confusion.map((row, asked) => row[asked] / opts.perClass);
  return { n, accuracy: perClass.reduce((a, b) => a + b, 0) / classes, perClass, confusion, chance: 1 / classes };
}
