/** Plots: plotly figures from results tables, offline notebook HTML and static images. */
export * from './figures';
export * from './html';
export * from './render';
