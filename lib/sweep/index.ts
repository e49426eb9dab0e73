/** Sweeps: grids of runs from a JSON spec (spec.ts), planned (plan.ts), run here (local.ts) or as Slurm arrays (slurm.ts, task.ts), and their status (status.ts). */
export * from './spec';
export * from './plan';
export * from './local';
export * from './slurm';
export * from './task';
export * from './status';
