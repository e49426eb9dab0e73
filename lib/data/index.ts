/** Datasets: one entry point that loads the dataset a DataConfig names, plus the readers and the loader. */
import { DataConfig } from '../config/types';
import { findCifar10Dir, loadCifar10 } from './cifar10';
import { ImageDataset, Split, limitDataset } from './dataset';
import { findFashionMnistDir, loadFashionMnist } from './idx';
import { makeSyntheticDataset } from './synthetic';

export * from './dataset';
export * from './cifar10';
export * from './idx';
export * from './synthetic';
export * from './loader';

/** The image size a synthetic set is drawn at: a network's resolution and image channels. */
export interface SyntheticShape { resolution: number; imageChannels: number }

/**
 * Loads one split of the dataset `cfg` names (the synthetic set at `shape` when given, else 28x28x1). `cfg.limit` (0 or absent: all) keeps the first N images
 * of the training split, as DataConfig documents; the test split is always whole.
 */
export function loadDataset(cfg: DataConfig, split: Split, shape?: SyntheticShape): ImageDataset {
  const limit = split === 'train' ? cfg.limit : undefined;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
    throw new Error(`data.limit must be a non-negative integer (0 means all images), got ${limit}`);
  }
  switch (cfg.name) {
    case 'cifar10':
      return limitDataset(loadCifar10(split, cfg.dir, limit), limit);
    case 'fashion-mnist':
      return limitDataset(loadFashionMnist(split, cfg.dir), limit);
    case 'synthetic':
      // drawn at the network's size when given, so a model of any resolution (an imported one) can be tuned on it
      return limitDataset(makeSyntheticDataset(split, shape ? { height: shape.resolution, width: shape.resolution, channels: shape.imageChannels } : {}), limit);
    default:
      throw new Error(`data.name: unknown dataset "${(cfg as { name: unknown }).name}" (expected cifar10, fashion-mnist or synthetic)`);
  }
}

/** Whether the dataset `cfg` names is on this machine (where loadDataset would look), without reading it. */
export function datasetHere(cfg: DataConfig): boolean {
  try {
    if (cfg.name === 'cifar10') findCifar10Dir(cfg.dir);
    else if (cfg.name === 'fashion-mnist') findFashionMnistDir(cfg.dir);
    return true;
  } catch {
    return false;
  }
}
