/** A small deterministic dataset of simple shapes, so tests and demos run without any files. */
import seedrandom from 'seedrandom';
import { ImageDataset, Split } from './dataset';

/** Options of the synthetic dataset; every field has a default. */
export interface SyntheticOptions {
  count?: number;      // number of images (train 1024, test 256)
  height?: number;     // 28
  width?: number;      // 28
  channels?: number;   // 1 (grey) or 3 (colour)
  seed?: number;       // same seed, same images (train 1, test 2)
}

/** One predicate per class: is the pixel at offset (dx, dy) from the centre inside a shape of radius r? */
const SHAPES: Array<{ name: string; inside: (dx: number, dy: number, r: number) => boolean }> = [
  { name: 'square', inside: (dx, dy, r) => Math.abs(dx) <= r && Math.abs(dy) <= r },
  { name: 'disc', inside: (dx, dy, r) => dx * dx + dy * dy <= r * r },
  { name: 'ring', inside: (dx, dy, r) => Math.abs(Math.hypot(dx, dy) - r) <= Math.max(1, r / 4) },
  { name: 'horizontal bar', inside: (dx, dy, r) => Math.abs(dx) <= r && Math.abs(dy) <= r / 4 },
  { name: 'vertical bar', inside: (dx, dy, r) => Math.abs(dy) <= r && Math.abs(dx) <= r / 4 },
  { name: 'plus', inside: (dx, dy, r) => (Math.abs(dx) <= r && Math.abs(dy) <= r / 5) || (Math.abs(dy) <= r && Math.abs(dx) <= r / 5) },
  { name: 'diagonal', inside: (dx, dy, r) => Math.abs(dx) <= r && Math.abs(dy) <= r && Math.abs(dx - dy) <= r / 4 },
  // pointing right: not mirror-symmetric, so horizontal flips are visible
  { name: 'right triangle', inside: (dx, dy, r) => dx >= -r && dx <= r && Math.abs(dy) <= (r - dx) / 2 },
  { name: 'frame', inside: (dx, dy, r) => Math.max(Math.abs(dx), Math.abs(dy)) <= r && Math.max(Math.abs(dx), Math.abs(dy)) >= r * 0.6 },
  { name: 'two dots', inside: (dx, dy, r) => Math.hypot(dx - r / 2, dy) <= r / 3 || Math.hypot(dx + r / 2, dy) <= r / 3 },
];

export const SYNTHETIC_CLASS_NAMES = SHAPES.map((s) => s.name);

/** Builds the synthetic dataset: one shape per image, class = shape, random place, size and shade. */
export function makeSyntheticDataset(split: Split, options: SyntheticOptions = {}): ImageDataset {
  const count = options.count ?? (split === 'train' ? 1024 : 256);
  const height = options.height ?? 28;
  const width = options.width ?? 28;
  const channels = options.channels ?? 1;
  const seed = options.seed ?? (split === 'train' ? 1 : 2);
  if (!Number.isInteger(count) || count <= 0) throw new Error(`synthetic dataset: count must be a positive integer, got ${count}`);
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 8 || width < 8) {
    throw new Error(`synthetic dataset: height and width must be integers >= 8, got ${height}x${width}`);
  }
  if (channels !== 1 && channels !== 3) throw new Error(`synthetic dataset: channels must be 1 or 3, got ${channels}`);

  const rng = seedrandom(`ect-synthetic-${seed}`);
  const uniform = (low: number, high: number) => low + (high - low) * rng();
  const images = new Uint8Array(count * height * width * channels);
  const labels = new Uint8Array(count);
  const side = Math.min(height, width);
  for (let n = 0; n < count; n++) {
    const label = n % SHAPES.length;   // balanced classes
    labels[n] = label;
    const radius = uniform(side * 0.2, side * 0.35);
    const centreX = uniform(radius, width - 1 - radius);
    const centreY = uniform(radius, height - 1 - radius);
    const background = Math.floor(uniform(0, 40));
    const foreground = Array.from({ length: channels }, () => Math.floor(uniform(150, 256)));
    const inside = SHAPES[label].inside;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const on = inside(x - centreX, y - centreY, radius);
        const offset = ((n * height + y) * width + x) * channels;
        for (let c = 0; c < channels; c++) images[offset + c] = on ? foreground[c] : background;
      }
    }
  }
  return {
    name: 'synthetic', split, source: `synthetic(seed ${seed})`, count, height, width, channels,
    images, labels, classNames: [...SYNTHETIC_CLASS_NAMES],
  };
}
