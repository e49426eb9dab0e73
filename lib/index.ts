/**
 * ect-workbench: Easy Consistency Tuning on TensorFlow.js. The public surface of the library, layer by layer as
 * the data flows: configuration, data, network, preconditioning and losses, training, sampling and image formats,
 * metrics, results, scaling laws and plots; then backends and the EDM importer's reading layer.
 */

// configuration: typed configs, their one schema, presets and resolution
export * from './config/types';
export * from './config/defaults';
export * from './config/network-presets';
export * from './config/schema';
export * from './config/resolve';

// every random draw is a function of (seed, index, purpose)
export * from './random';

// data: datasets, their labels, the seeded batch loader
export * from './data';

// the DDPM++ UNet (with EDM's optional label embedding), its plan and FLOPs
export * from './nn/architecture';
export * from './nn/unet';
export * from './nn/flops';

// EDM preconditioning and loss, ECT's loss, mapping and weighting
export * from './edm/precond';
export * from './training-loss';
export * from './edm/loss';
export * from './ect/loss';
export * from './ect/mapping';
export * from './ect/weighting';

// run folders (their files, config.json, the lock) and the models trained in them; the shipped teachers
export * from './runs/folder';
export * from './runs/lock';
export * from './runs/model';
export * from './runs/status';
export * from './teachers/shipped';
export * from './teachers/record';
export * from './teachers/ship';
export * from './machine/facts';

// training: the one launcher, the trainer, checkpoints, optimisers, EMA
export * from './train/launch';
export * from './train/trainer';
export * from './train/checkpoint';
export * from './train/losses';
export * from './train/optim';
export * from './train/ema';
export * from './train/metrics-log';
export * from './train/estimate';
export * from './train/plateau';

// sampling, and images in the ecosystem's formats (PNG grid, PNG folder, .npz)
export * from './sample';
export * from './image/pixels';
export * from './image/png';
export * from './image/npz';
export * from './image/export';
export * from './grids';

// metrics: the one evaluator, its columns and feature networks, FD/KID/precision-recall, class accuracy
export * from './metrics/evaluate';
export * from './metrics/columns';
export * from './metrics/features';
export * from './metrics/fmnist-classifier';
export * from './metrics/frechet';
export * from './metrics/kid';
export * from './metrics/precision-recall';
export * from './metrics/reference';
export * from './metrics/class-accuracy';

// results tables, scaling-law fits, figures, the notebooks' setup
export * from './results';
export * from './scaling';
export * from './plots';
export * from './env';
export * from './repository';
export * from './notebook';

// backends, and reading EDM pickles and safetensors
export * from './backend/select';
export * from './import';
