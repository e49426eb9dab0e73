/**
 * A teacher and its tuned model compared on the same noise: the teacher's Heun grid and the tuned model's 1- and
 * 2-step grids, each alone and side by side (the picture of `ect demo` and of the quick-start notebook).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { rgbaToPng } from './image/png';
import { writeFileNamed } from './write-file';
import { sideBySide, tileRgba, toUint8Images, type RgbaImage } from './image/pixels';
import { DEFAULT_SAMPLE_SEED, generateImages, type SampleSteps } from './sample';
import { disposeModel, loadRunModel, samplerModelOf } from './runs/model';

/** The grids' layout: 64 images in rows of 8, 2 black pixels around each image, 12 between the grids of comparison.png. */
export const COMPARISON_GRID = { images: 64, columns: 8, pad: 2, gap: 12 } as const;

/** Files of writeComparisonGrids, in its folder: the three grids side by side, then each alone. */
export const COMPARISON_FILES = { comparison: 'comparison.png', heun: 'teacher-heun.png', 1: 'ect-1step.png', 2: 'ect-2step.png' } as const;

/** One model's grid on the default sample noise: image i of every grid starts from the same noise. */
async function modelGrid(target: string, steps: SampleSteps): Promise<{ grid: RgbaImage; channels: number }> {
  const model = await loadRunModel(target);
  try {
    const images = generateImages(samplerModelOf(model), steps, COMPARISON_GRID.images, { batch: COMPARISON_GRID.images, seed: DEFAULT_SAMPLE_SEED });
    try {
      return { grid: tileRgba(toUint8Images(images as tf.Tensor4D), images.shape, COMPARISON_GRID.columns, COMPARISON_GRID.pad), channels: images.shape[3] };
    } finally {
      images.dispose();
    }
  } finally {
    disposeModel(model);
  }
}

/**
 * Writes into `dir` the teacher's Heun grid, the tuned model's 1- and 2-step grids (COMPARISON_FILES) and comparison.png,
 * the three side by side. `teacher` and `student` are run folders or checkpoints (a shipped teacher's folder too).
 * Needs a TensorFlow.js backend. Returns the files, comparison.png first.
 */
export async function writeComparisonGrids(teacher: string, student: string, dir: string): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const drawn: Array<{ grid: RgbaImage; channels: number; name: string }> = [];
  for (const [target, steps] of [[teacher, 'heun'], [student, 1], [student, 2]] as const) {
    drawn.push({ ...(await modelGrid(target, steps)), name: COMPARISON_FILES[steps] });
  }
  const files = drawn.map(({ grid, channels, name }) => {
    const file = path.join(dir, name);
    writeFileNamed(file, rgbaToPng(grid, channels));
    return file;
  });
  const comparison = path.join(dir, COMPARISON_FILES.comparison);
  writeFileNamed(comparison, rgbaToPng(sideBySide(drawn.map((d) => d.grid), COMPARISON_GRID.gap), drawn[0].channels));
  return [comparison, ...files];
}
