/** Results as data: run directories into tidy arquero tables. */
export * from './runs';
