/**
 * Static images of plotly figures: headless Chromium (Debian's /usr/bin/chromium through playwright-core)
 * draws each figure with the inlined bundle and exports PNG or SVG, e.g. for results/figures/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { Figure } from './figures';
import { plotlyBundleSource } from './html';

/** Chromium flags for a quiet, offline, GPU-less headless browser. */
export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

/** The Chromium binary: $CHROMIUM_PATH, else Debian's package. */
export function chromiumPath(): string {
  const candidate = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  if (!fs.existsSync(candidate)) {
    throw new Error(`Chromium not found at ${candidate}; install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  return candidate;
}

/** Launches headless Chromium with the project's flags (the caller closes it). */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_FLAGS, headless: true });
}

export interface RenderOptions {
  format: 'png' | 'svg';
  scale: number;        // pixel density for PNG (2 gives sharp images on print)
}

/** Renders many figures with one browser and one page that loaded the plotly bundle once. */
export class FigureRenderer {
  private constructor(private readonly browser: Browser, private readonly page: Page,
    private readonly pageErrors: string[]) {}

  /** Starts Chromium and loads plotly into a blank page. */
  static async open(): Promise<FigureRenderer> {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(err.message));
      await page.setContent('<!DOCTYPE html><html><body><div id="figure"></div></body></html>');
      await page.addScriptTag({ content: plotlyBundleSource() });
      return new FigureRenderer(browser, page, errors);
    } catch (err) {
      await browser.close();
      throw err;
    }
  }

  /** The figure as image bytes (PNG) or text (SVG), at the layout's width and height. */
  async render(figure: Figure, options: Partial<RenderOptions> = {}): Promise<Buffer> {
    const { format, scale } = { format: 'png' as const, scale: 1, ...options };
    const url = await this.page.evaluate(async ({ fig, fmt, sc }) => {
      const plotly = (window as unknown as { Plotly: any }).Plotly;
      const div = document.getElementById('figure')!;
      await plotly.newPlot(div, fig.data, fig.layout, { staticPlot: true });
      const out = await plotly.toImage(div, {
        format: fmt, scale: sc, width: fig.layout.width ?? 700, height: fig.layout.height ?? 450,
      });
      plotly.purge(div);
      return out as string;
    }, { fig: figure, fmt: format, sc: scale });
    if (this.pageErrors.length) throw new Error(`rendering a figure raised in the page: ${this.pageErrors.join('; ')}`);
    if (format === 'svg') {
      const comma = url.indexOf(',');
      return Buffer.from(decodeURIComponent(url.slice(comma + 1)), 'utf8');
    }
    return Buffer.from(url.slice(url.indexOf(',') + 1), 'base64');
  }

  /** Renders and writes the figure; the format follows the file's extension (.png or .svg). */
  async save(figure: Figure, file: string, options: Partial<RenderOptions> = {}): Promise<string> {
    const extension = path.extname(file).toLowerCase();
    if (extension !== '.png' && extension !== '.svg') throw new Error(`${file}: figures are saved as .png or .svg`);
    const bytes = await this.render(figure, { ...options, format: extension === '.png' ? 'png' : 'svg' });
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, bytes);
    return file;
  }

  /** Closes the browser. */
  async close(): Promise<void> {
    await this.browser.close();
  }
}
