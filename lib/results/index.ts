/** Results as data: run directories into tidy arquero tables, the paper's numbers, the notebooks' runs, the Fashion-MNIST study's tables. */
export * from './runs';
export * from './paper';
export * from './configs';
export * from './manifest';
export * from './midt-study';
export * from './notebook-runs';
export * from './headline';
export * from './recipe';
export * from './describe';
export * from './seed-summary';
export * from './notebook-studies';
export * from './evaluation-table';
