/**
 * HTML for plotly figures in notebooks: the plotly.js bundle inlined once per notebook (offline), or loaded from
 * plotly's CDN for notebooks committed with their outputs; then each figure is a div plus a short script that draws it.
 */
import * as fs from 'node:fs';
import type { Figure } from './figures';

let cachedBundle: string | null = null;

/** The plotly.js-dist bundle source, read once from node_modules. */
export function plotlyBundleSource(): string {
  if (cachedBundle === null) {
    const file = require.resolve('plotly.js-dist/plotly.js');
    cachedBundle = fs.readFileSync(file, 'utf8');
  }
  return cachedBundle;
}

/** Makes text safe inside an inline <script>: a literal "</script" (or "<!--") would end it early. */
export function escapeForScript(text: string): string {
  return text.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

/**
 * The bundle as one inline <script>. The UMD wrapper of plotly would register an AMD module when the
 * page has require.js (Jupyter's classic pages do) and then no global Plotly exists; hiding define,
 * module and exports makes it set window.Plotly in every page.
 */
export function plotlyBundleScript(): string {
  return '<script type="text/javascript">(function(define, module, exports) {\n'
    + escapeForScript(plotlyBundleSource())
    + '\n}).call(window);</script>';
}

let figureCounter = 0;

/**
 * A div and the script that draws one figure into it once window.Plotly exists (inlined by plotlyBundleScript, or
 * still loading from plotlyLoaderScript).
 */
export function figureDivHtml(figure: Figure, id = `ect-figure-${Date.now().toString(36)}-${figureCounter++}`): string {
  const width = (figure.layout.width as number | undefined) ?? 700;
  const height = (figure.layout.height as number | undefined) ?? 450;
  const json = escapeForScript(JSON.stringify({ data: figure.data, layout: figure.layout }));
  return `<div id="${id}" class="ect-plotly-figure" style="width:${width}px;height:${height}px"></div>\n`
    + `<script type="text/javascript">(function() { var fig = ${json}, tries = 0;\n`
    + '  function draw() { if (!window.Plotly) { if (tries++ < 300) setTimeout(draw, 100); return; }\n'
    + `    window.Plotly.newPlot(${JSON.stringify(id)}, fig.data, fig.layout, {responsive: false, displaylogo: false}); }\n`
    + '  draw();\n'
    + '})();</script>';
}

/** The installed plotly.js-dist version, which names its file on plotly's CDN. */
export function plotlyVersion(): string {
  return (JSON.parse(fs.readFileSync(require.resolve('plotly.js-dist/package.json'), 'utf8')) as { version: string }).version;
}

/**
 * A short script that loads the same plotly.js version from plotly's CDN, for notebooks committed with their outputs
 * (a few kB instead of the 4.6 MB bundle per notebook). define is hidden while it loads, so that on pages with
 * require.js the bundle still sets window.Plotly. Offline, the figures' PNG beside each one shows instead.
 */
export function plotlyLoaderScript(version = plotlyVersion()): string {
  const src = `https://cdn.plot.ly/plotly-${version}.min.js`;
  return '<script type="text/javascript">(function() { if (window.Plotly || window.__ectPlotlyLoading) return;\n'
    + '  window.__ectPlotlyLoading = true; var define = window.define; window.define = undefined;\n'
    + `  var s = document.createElement('script'); s.src = ${JSON.stringify(src)};\n`
    + '  s.onload = s.onerror = function() { window.define = define; };\n'
    + '  document.head.appendChild(s);\n'
    + '})();</script>';
}

/** How a notebook's figures get plotly.js: inlined once (works offline) or loaded from plotly's CDN (light files). */
export type PlotlySource = 'inline' | 'cdn';

/**
 * Produces display HTML for a notebook: the first figure carries the plotly bundle, later ones only
 * their own div, so a notebook inlines the bundle exactly once.
 */
export class NotebookFigures {
  private bundleEmitted = false;

  constructor(private readonly source: PlotlySource = 'inline') {}

  /** HTML for one figure (with the bundle, or its loader, in front the first time). */
  html(figure: Figure): string {
    const prefix = this.bundleEmitted ? '' : (this.source === 'cdn' ? plotlyLoaderScript() : plotlyBundleScript()) + '\n';
    this.bundleEmitted = true;
    return prefix + figureDivHtml(figure);
  }
}

/** A standalone HTML page showing the given figures (bundle inlined), e.g. for a browser check. */
export function standaloneFiguresPage(figures: Figure[], title = 'figures'): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body>\n`
    + plotlyBundleScript() + '\n' + figures.map((f) => figureDivHtml(f)).join('\n') + '\n</body></html>';
}
