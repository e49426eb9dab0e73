/**
 * Plotly figure specs (plain JSON: data traces and layout) built from results tables: the log-log
 * scaling plot with its fitted line and band, quality against iterations, ablation bars, image grids.
 */
import type ColumnTable from 'arquero/dist/types/table/column-table';
import type { GroupFit } from '../scaling/table';
import { logSpaced, predictQuality, predictionInterval } from '../scaling/power-law';

/** A plotly figure as JSON: what Plotly.newPlot(div, data, layout) takes. */
export interface Figure {
  data: Array<Record<string, unknown>>;
  layout: Record<string, unknown>;
}

/** A qualitative palette with enough contrast for lines and bands (d3's category10). */
export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

function withAlpha(hex: string, alpha: number): string {
  const value = parseInt(hex.slice(1), 16);
  return `rgba(${(value >> 16) & 255}, ${(value >> 8) & 255}, ${value & 255}, ${alpha})`;
}

function columnOf(table: ColumnTable, name: string, what: string): unknown[] {
  if (!table.columnNames().includes(name)) {
    throw new Error(`${what}: no column '${name}' (columns: ${table.columnNames().join(', ')})`);
  }
  return Array.from(table.array(name) as ArrayLike<unknown>);
}

/** Splits row indices by the value of a column (one trace per value); no column gives one group. */
function groupRows(table: ColumnTable, column: string | undefined, what: string): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  const keys = column ? columnOf(table, column, what) : new Array(table.numRows()).fill('');
  keys.forEach((key, i) => {
    const label = column ? `${column}=${key}` : '';
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label)!.push(i);
  });
  return groups;
}

const isPresent = (v: unknown): boolean => v !== null && v !== undefined && !(typeof v === 'number' && Number.isNaN(v));

export interface ScalingFigureOptions {
  x: string;           // compute column, e.g. 'train_flops'
  y: string;           // quality column, e.g. 'fd_1step'
  groupBy?: string;    // one colour per value, matched to the fits' group key of the same column
  title?: string;
  xTitle?: string;
  yTitle?: string;
  extendTo?: number;   // draw the fitted lines out to this compute (a prediction)
}

/**
 * Quality against compute on log-log axes: the measured points, each group's fitted law as a line and,
 * when the fit was bootstrapped, its percentile band.
 */
export function scalingFigure(table: ColumnTable, fits: GroupFit[], options: ScalingFigureOptions): Figure {
  const xs = columnOf(table, options.x, 'scalingFigure');
  const ys = columnOf(table, options.y, 'scalingFigure');
  const data: Array<Record<string, unknown>> = [];
  const groups = groupRows(table, options.groupBy, 'scalingFigure');
  [...groups.entries()].forEach(([label, rows], g) => {
    const color = PALETTE[g % PALETTE.length];
    const kept = rows.filter((i) => isPresent(xs[i]) && isPresent(ys[i]));
    data.push({
      type: 'scatter', mode: 'markers', name: label ? `${label} (measured)` : 'measured',
      x: kept.map((i) => xs[i]), y: kept.map((i) => ys[i]), marker: { color, size: 8 },
    });
    const groupValue = options.groupBy ? (table.array(options.groupBy) as ArrayLike<unknown>)[rows[0]] : undefined;
    const match = fits.find((f) => !options.groupBy || f.group[options.groupBy] === groupValue);
    if (!match || kept.length === 0) return;
    const fit = match.fit;
    const computes = kept.map((i) => Number(xs[i]));
    const grid = logSpaced(Math.min(...computes), Math.max(options.extendTo ?? 0, ...computes), 60);
    if (fit.bootstrap) {
      const band = grid.map((c) => predictionInterval(fit, c));
      // the band is a closed polygon: upper edge left to right, lower edge back
      data.push({
        type: 'scatter', mode: 'lines', name: `${(fit.bootstrap.level * 100).toFixed(0)}% band`, showlegend: g === 0,
        x: [...grid, ...[...grid].reverse()], y: [...band.map((b) => b.high), ...band.map((b) => b.low).reverse()],
        fill: 'toself', fillcolor: withAlpha(color, 0.18), line: { width: 0 }, hoverinfo: 'skip',
      });
    }
    const exponent = fit.bootstrap
      ? `b=${fit.b.toFixed(3)} [${fit.bootstrap.bLow.toFixed(3)}, ${fit.bootstrap.bHigh.toFixed(3)}]`
      : `b=${fit.b.toFixed(3)}`;
    data.push({
      type: 'scatter', mode: 'lines', name: `${label ? label + ' ' : ''}${fit.model === 'power' ? 'a·C^-b' : 'a·C^-b + q∞'}, ${exponent}`,
      x: grid, y: grid.map((c) => predictQuality(fit, c)), line: { color, width: 2 },
    });
  });
  return {
    data,
    layout: {
      title: { text: options.title ?? `${options.y} against ${options.x}` },
      xaxis: { type: 'log', title: { text: options.xTitle ?? options.x } },
      yaxis: { type: 'log', title: { text: options.yTitle ?? options.y } },
      legend: { orientation: 'h', y: -0.2 },
      width: 760, height: 520,
    },
  };
}

export interface TrainingCurvesOptions {
  x: string;                 // e.g. 'iter' or 'images_seen'
  metrics: string[];         // e.g. ['fd_1step', 'fd_2step']
  runColumn?: string;        // one line per run and metric; default 'run_id'
  reference?: { value: number; label: string }[]; // horizontal lines, e.g. the teacher's quality
  title?: string;
  yTitle?: string;
  logY?: boolean;
}

/** Metric columns against iterations (one line per run and metric) with horizontal reference lines. */
export function trainingCurvesFigure(table: ColumnTable, options: TrainingCurvesOptions): Figure {
  const xs = columnOf(table, options.x, 'trainingCurvesFigure');
  const runColumn = options.runColumn ?? 'run_id';
  const groups = groupRows(table, runColumn, 'trainingCurvesFigure');
  const data: Array<Record<string, unknown>> = [];
  let trace = 0;
  const allX: number[] = [];
  for (const [label, rows] of groups) {
    for (const metric of options.metrics) {
      const ys = columnOf(table, metric, 'trainingCurvesFigure');
      const kept = rows.filter((i) => isPresent(ys[i]) && isPresent(xs[i])).sort((a, b) => Number(xs[a]) - Number(xs[b]));
      if (kept.length === 0) continue;
      kept.forEach((i) => allX.push(Number(xs[i])));
      data.push({
        type: 'scatter', mode: 'lines+markers', name: `${label.replace(`${runColumn}=`, '')} ${metric}`,
        x: kept.map((i) => xs[i]), y: kept.map((i) => ys[i]), line: { color: PALETTE[trace++ % PALETTE.length] },
      });
    }
  }
  const [lo, hi] = allX.length ? [Math.min(...allX), Math.max(...allX)] : [0, 1];
  for (const ref of options.reference ?? []) {
    data.push({
      type: 'scatter', mode: 'lines', name: ref.label, x: [lo, hi], y: [ref.value, ref.value],
      line: { color: '#333333', dash: 'dash', width: 1.5 },
    });
  }
  return {
    data,
    layout: {
      title: { text: options.title ?? `${options.metrics.join(', ')} against ${options.x}` },
      xaxis: { title: { text: options.x } },
      yaxis: { title: { text: options.yTitle ?? options.metrics.join(', ') }, type: options.logY ? 'log' : 'linear' },
      legend: { orientation: 'h', y: -0.2 },
      // the legend sits below the plot: taller with more lines, so the plot keeps its height
      width: 760, height: 480 + 22 * Math.max(0, data.length - 4),
    },
  };
}

export interface TuningCostOptions {
  x: string;                  // compute column, counting the teacher's pretraining in the tuning runs' rows (train_flops of loadRunsTable with includePretraining)
  teacherMetric: string;      // the teacher's quality column along pretraining, e.g. 'fd_fmnist_heun'
  studentMetrics: string[];   // the tuned models' columns, e.g. ['fd_fmnist_1step', 'fd_fmnist_2step']
  kindColumn?: string;        // 'pretrain' or 'tune' per row (default 'kind')
  runColumn?: string;         // one line per run and metric (default 'run_id')
  teacherLine?: { value: number; label: string };  // the teacher's final quality, drawn across the whole axis
  title?: string;
  xTitle?: string;
  yTitle?: string;
}

/**
 * The paper's "tuning is cheap" picture: the teacher's quality along its own pretraining and the tuned
 * models' 1- and 2-step quality along tuning, on one compute axis that counts the teacher's pretraining in
 * every tuning point, log-log, with the teacher's final quality as a dashed line.
 */
export function tuningCostFigure(table: ColumnTable, options: TuningCostOptions): Figure {
  const xs = columnOf(table, options.x, 'tuningCostFigure');
  const kinds = columnOf(table, options.kindColumn ?? 'kind', 'tuningCostFigure');
  const runColumn = options.runColumn ?? 'run_id';
  const data: Array<Record<string, unknown>> = [];
  const allX: number[] = [];
  let trace = 0;
  const line = (rows: number[], metric: string, name: string, dash?: string) => {
    const ys = columnOf(table, metric, 'tuningCostFigure');
    const kept = rows.filter((i) => isPresent(ys[i]) && isPresent(xs[i]) && Number(xs[i]) > 0).sort((a, b) => Number(xs[a]) - Number(xs[b]));
    if (kept.length === 0) return;
    kept.forEach((i) => allX.push(Number(xs[i])));
    data.push({
      type: 'scatter', mode: 'lines+markers', name, x: kept.map((i) => xs[i]), y: kept.map((i) => ys[i]),
      line: { color: PALETTE[trace++ % PALETTE.length], ...(dash ? { dash } : {}) },
    });
  };
  for (const [label, rows] of groupRows(table, runColumn, 'tuningCostFigure')) {
    const run = label.replace(`${runColumn}=`, '');
    const kind = kinds[rows[0]];
    if (kind === 'pretrain') line(rows, options.teacherMetric, `${run}: teacher pretraining (${options.teacherMetric})`);
    else for (const metric of options.studentMetrics) line(rows, metric, `${run}: ECT ${metric}`);
  }
  if (options.teacherLine && allX.length) {
    data.push({
      type: 'scatter', mode: 'lines', name: options.teacherLine.label, x: [Math.min(...allX), Math.max(...allX)],
      y: [options.teacherLine.value, options.teacherLine.value], line: { color: '#333333', dash: 'dash', width: 1.5 },
    });
  }
  return {
    data,
    layout: {
      title: { text: options.title ?? `quality against training compute, pretraining included` },
      xaxis: { type: 'log', title: { text: options.xTitle ?? options.x } },
      yaxis: { type: 'log', title: { text: options.yTitle ?? [options.teacherMetric, ...options.studentMetrics].join(', ') } },
      legend: { orientation: 'h', y: -0.2 },
      width: 820, height: 540,
    },
  };
}

export interface AblationBarsOptions {
  category: string;      // the ablated setting, e.g. 'ect.mapping'
  value: string;         // the quality metric, e.g. 'fd_1step'
  error?: string;        // optional column with an error bar half-width
  series?: string;       // optional second grouping, drawn as grouped bars
  title?: string;
}

/** Bars of a metric per ablation setting (grouped by `series` when given), with optional error bars. */
export function ablationBarsFigure(table: ColumnTable, options: AblationBarsOptions): Figure {
  const categories = columnOf(table, options.category, 'ablationBarsFigure');
  const values = columnOf(table, options.value, 'ablationBarsFigure');
  const errors = options.error ? columnOf(table, options.error, 'ablationBarsFigure') : null;
  const data = [...groupRows(table, options.series, 'ablationBarsFigure').entries()].map(([label, rows], g) => ({
    type: 'bar', name: label || options.value,
    x: rows.map((i) => String(categories[i])), y: rows.map((i) => values[i]),
    marker: { color: PALETTE[g % PALETTE.length] },
    ...(errors ? { error_y: { type: 'data', array: rows.map((i) => errors[i]), visible: true } } : {}),
  }));
  return {
    data,
    layout: {
      title: { text: options.title ?? `${options.value} by ${options.category}` },
      barmode: 'group',
      xaxis: { title: { text: options.category }, type: 'category' },
      yaxis: { title: { text: options.value } },
      width: 700, height: 440,
    },
  };
}

/** Width of a Jupyter notebook's output column (the classic page's ~980 px less the prompt): no figure is wider. */
export const NOTEBOOK_COLUMN_WIDTH = 940;
/** About how wide a character of plotly's default title font (17 px) is, to wrap titles before they are cut. */
const TITLE_CHAR_PX = 8.5;

/** A title broken into lines (plotly's <br>) at spaces so that each fits `width` pixels; plotly cuts a long line instead. */
export function wrapTitle(text: string, width: number): string {
  const perLine = Math.max(10, Math.floor(width / TITLE_CHAR_PX));
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines.length - 1;
    if (last >= 0 && lines[last].length + 1 + word.length <= perLine) lines[last] += ` ${word}`;
    else lines.push(word);
  }
  return lines.join('<br>');
}

/**
 * A PNG (say, grids side by side) as a figure that fits a notebook column: a small image enlarged by a whole factor
 * (sharp pixels, up to about 480 px), a wide one scaled down to the column, its aspect kept; the title wrapped to the width.
 */
export function imageGridFigure(png: Uint8Array, width: number, height: number, title: string): Figure {
  const source = `data:image/png;base64,${Buffer.from(png).toString('base64')}`;
  const enlarge = Math.max(1, Math.floor(480 / Math.max(width, height)));
  const side = 20;                                            // left and right margins
  const plotWidth = Math.min(width * enlarge, NOTEBOOK_COLUMN_WIDTH - 2 * side);
  const plotHeight = Math.round((height * plotWidth) / width);
  const figureWidth = Math.min(Math.max(plotWidth + 2 * side, 560), NOTEBOOK_COLUMN_WIDTH);  // wide enough for a title
  const wrapped = wrapTitle(title, figureWidth - 2 * side);
  const top = 36 + 24 * wrapped.split('<br>').length;
  return {
    data: [{ type: 'image', source, hoverinfo: 'skip' }],
    layout: {
      title: { text: wrapped },
      xaxis: { visible: false }, yaxis: { visible: false, scaleanchor: 'x' },
      width: figureWidth, height: plotHeight + top + 20,
      margin: { l: side, r: side, t: top, b: 20 },
    },
  };
}

/** Width and height of a PNG from its header (IHDR), to size an image figure without decoding. */
export function pngSize(png: Uint8Array): { width: number; height: number } {
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (png.length < 24 || signature.some((b, i) => png[i] !== b)) throw new Error('pngSize: not a PNG file');
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}
