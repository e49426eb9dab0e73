/** Results as data: run directories into tidy arquero tables, and the paper's published numbers. */
export * from './runs';
export * from './paper';
export * from './configs';
