/**
 * The notebooks' shared setup, one call: the mode and its folders, figures shown inline and saved as PNG, tables
 * shown as HTML, and the small-mode notice. The notebook hands in its display (tslab's); this module draws nothing
 * itself.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import { notebookMode, notebookPaths, type NotebookMode, type NotebookPaths } from './env';
import type { Figure } from './plots/figures';
import { NotebookFigures, type PlotlySource } from './plots/html';
import { FigureRenderer } from './plots/render';
import { REPOSITORY_ROOT } from './repository';

/** Where a notebook shows things: tslab's `display` fits. */
export interface NotebookDisplay {
  html(html: string): void;
  markdown(text: string): void;
  png?(bytes: Uint8Array): void;
}

/**
 * How outputs are embedded: 'inline' (the default; plotly inlined, live pages in iframes: offline, heavy) or 'light'
 * (ECT_NOTEBOOK_EMBED=light, what `npm run notebooks -- --commit` uses for the notebooks committed with their outputs:
 * plotly from its CDN and a note instead of a live page). Both show every figure's PNG after it, which notebook
 * viewers that run no scripts display.
 */
export type NotebookEmbed = 'inline' | 'light';

/** The embedding asked for by ECT_NOTEBOOK_EMBED; an unknown value is an error naming the valid ones. */
export function notebookEmbed(value = process.env.ECT_NOTEBOOK_EMBED): NotebookEmbed {
  if (value === undefined || value === '' || value === 'inline') return 'inline';
  if (value === 'light') return 'light';
  throw new Error(`ECT_NOTEBOOK_EMBED=${value}: expected inline or light`);
}

/** What a notebook works with after setup. */
export interface NotebookSession {
  mode: NotebookMode;            // ECT_NOTEBOOK_MODE=small in CI; full otherwise
  paths: NotebookPaths;          // where runs are read and figures written in this mode
  /** Shows a figure inline and saves it as <figures folder>/<name>.png. */
  show(figure: Figure, name: string): Promise<void>;
  /** Shows a live page (an iframe's HTML) inline; in light embedding, `note` (markdown) instead. */
  showPage(html: string, note: string): void;
  /** Shows an arquero table as HTML (at most `limit` rows). */
  showTable(table: ColumnTable, limit?: number): void;
  /** Closes the figure renderer (the notebook's last cell). */
  close(): Promise<void>;
}

/** The note every small-mode figure carries in its title, so no notebook cell has to add it. */
export const SMALL_MODE_NOTE = '(small mode: a pipeline check, not a result)';

/** A figure whose title says it comes from small mode. */
function labelSmallMode(figure: Figure): Figure {
  const title = figure.layout.title as { text?: string } | string | undefined;
  const text = typeof title === 'string' ? title : title?.text ?? '';
  return { ...figure, layout: { ...figure.layout, title: { ...(typeof title === 'object' ? title : {}), text: `${text} ${SMALL_MODE_NOTE}`.trim() } } };
}

/** The notebook's one setup call: mode, paths, figure and table display; notes small mode, whose numbers are not results. */
export async function openNotebook(display: NotebookDisplay): Promise<NotebookSession> {
  const mode = notebookMode();
  const paths = notebookPaths(mode);
  const embed = notebookEmbed();
  const plotly: PlotlySource = embed === 'light' ? 'cdn' : 'inline';
  const figures = new NotebookFigures(plotly);      // plotly once (inline or its CDN loader), then one div per figure
  const renderer = await FigureRenderer.open();
  const shown = (dir: string): string => path.relative(REPOSITORY_ROOT, dir).split(path.sep).join('/') || '.';
  display.markdown(`Mode **${mode}**: runs from \`${shown(paths.runs)}\`, figures to \`${shown(paths.figures)}\` (from the repository root).` + (mode === 'small'
    ? ' **Small mode** (ECT_NOTEBOOK_MODE=small): tiny runs of a few dozen iterations that check the pipeline end to end.'
      + ' Their numbers are not results and must not be quoted.'
    : ''));
  return {
    mode,
    paths,
    async show(figure, name) {
      if (mode === 'small') figure = labelSmallMode(figure);
      display.html(figures.html(figure));
      const png = path.join(paths.figures, `${name}.png`);
      await renderer.save(figure, png);
      // the static copy, for viewers that run no scripts (GitHub, nbviewer without plotly)
      display.png?.(fs.readFileSync(png));
    },
    showPage(html, note) {
      if (embed === 'light') display.markdown(note);
      else display.html(html);
    },
    showTable(table, limit = 30) {
      display.html(table.toHTML({ limit }));
    },
    close: () => renderer.close(),
  };
}
