/**
 * The notebooks' shared setup, one call: the mode and its folders, figures shown inline and saved as PNG, tables
 * shown as HTML, and the small-mode notice. The notebook hands in its display (tslab's); this module draws nothing
 * itself.
 */
import * as path from 'node:path';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import { notebookMode, notebookPaths, type NotebookMode, type NotebookPaths } from './env';
import type { Figure } from './plots/figures';
import { NotebookFigures } from './plots/html';
import { FigureRenderer } from './plots/render';

/** Where a notebook shows things: tslab's `display` fits. */
export interface NotebookDisplay {
  html(html: string): void;
  markdown(text: string): void;
}

/** What a notebook works with after setup. */
export interface NotebookSession {
  mode: NotebookMode;            // ECT_NOTEBOOK_MODE=small in CI; full otherwise
  paths: NotebookPaths;          // where runs are read and figures written in this mode
  /** Shows a figure inline and saves it as <figures folder>/<name>.png. */
  show(figure: Figure, name: string): Promise<void>;
  /** Shows an arquero table as HTML (at most `limit` rows). */
  showTable(table: ColumnTable, limit?: number): void;
  /** Closes the figure renderer (the notebook's last cell). */
  close(): Promise<void>;
}

/** The notebook's one setup call: mode, paths, figure and table display; notes small mode, whose numbers are not results. */
export async function openNotebook(display: NotebookDisplay): Promise<NotebookSession> {
  const mode = notebookMode();
  const paths = notebookPaths(mode);
  const figures = new NotebookFigures();      // inlines plotly once, then one div per figure
  const renderer = await FigureRenderer.open();
  display.markdown(`Mode **${mode}**: runs from \`${paths.runs}\`, figures to \`${paths.figures}\`.` + (mode === 'small'
    ? ' **Small mode** (ECT_NOTEBOOK_MODE=small): tiny runs of a few dozen iterations that check the pipeline end to end.'
      + ' Their numbers are not results and must not be quoted.'
    : ''));
  return {
    mode,
    paths,
    async show(figure, name) {
      display.html(figures.html(figure));
      await renderer.save(figure, path.join(paths.figures, `${name}.png`));
    },
    showTable(table, limit = 30) {
      display.html(table.toHTML({ limit }));
    },
    close: () => renderer.close(),
  };
}
