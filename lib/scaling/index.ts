/** Scaling-law fitting: power laws with and without a floor, bootstrap intervals, table helpers. */
export * from './levenberg-marquardt';
export * from './power-law';
export * from './table';
export * from './compare';
export * from './fit-sets';
