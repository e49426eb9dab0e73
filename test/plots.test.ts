/** Tests of the plot helpers: figure specs from tables, offline HTML, and drawing in headless Chromium. */
import { strict as assert } from 'assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as aq from 'arquero';
import { PNG } from 'pngjs';
import { fitScalingGroups } from '../lib/scaling';
import {
  FigureRenderer, NOTEBOOK_COLUMN_WIDTH, NotebookFigures, ablationBarsFigure, escapeForScript, imageGridFigure, launchChromium,
  pngSize, scalingFigure, standaloneFiguresPage, trainingCurvesFigure, tuningCostFigure, wrapTitle,
} from '../lib/plots';
import { requireSystemPart } from './helpers';

const computes = [1e15, 3e15, 1e16, 3e16, 1e17, 3e17];
const scalingTable = aq.from(['s', 'm'].flatMap((size, s) => computes.map((c) => ({
  size, train_flops: c, fd: (s + 1) * 1e4 * c ** -0.25 + 1,
}))));

function tinyPng(width: number, height: number): Buffer {
  const png = new PNG({ width, height });
  png.data.fill(200);
  return PNG.sync.write(png);
}

describe('plots: figure specs', () => {
  it('scaling figure: points, a fitted line and a band per group, on log-log axes', () => {
    const fits = fitScalingGroups(scalingTable, { x: 'train_flops', y: 'fd', model: 'power', groupBy: ['size'], bootstrap: { samples: 30 } });
    const figure = scalingFigure(scalingTable, fits, { x: 'train_flops', y: 'fd', groupBy: 'size', extendTo: 1e18 });
    assert.equal(figure.data.length, 6); // 2 groups x (points, band, line)
    assert.equal((figure.layout.xaxis as { type: string }).type, 'log');
    const line = figure.data.find((t) => String(t.name).startsWith('size=s a'))!;
    const xs = line.x as number[];
    assert.ok(Math.abs(xs[xs.length - 1] / 1e18 - 1) < 1e-9);  // extended to the prediction budget
    const band = figure.data.find((t) => t.fill === 'toself')!;
    assert.equal((band.x as number[]).length, 2 * xs.length);
  });

  it('training curves with the teacher as a reference line; ablation bars; image grid', () => {
    const runs = aq.from([
      { run_id: 'a', iter: 10, fd_1step: 30, fd_2step: null },
      { run_id: 'a', iter: 20, fd_1step: 20, fd_2step: 15 },
      { run_id: 'b', iter: 10, fd_1step: 25, fd_2step: 18 },
    ]);
    const curves = trainingCurvesFigure(runs, { x: 'iter', metrics: ['fd_1step', 'fd_2step'], reference: [{ value: 9, label: 'teacher (Heun, 35 NFE)' }] });
    assert.equal(curves.data.length, 5);
    const a2 = curves.data.find((t) => t.name === 'a fd_2step')!;
    assert.deepEqual(a2.y, [15]); // the row without a 2-step evaluation is skipped
    assert.deepEqual(curves.data[4].y, [9, 9]);
    const bars = ablationBarsFigure(aq.from([{ mapping: 'sigmoid', fd: 3 }, { mapping: 'constant', fd: 4 }]), { category: 'mapping', value: 'fd' });
    assert.deepEqual(bars.data[0].x, ['sigmoid', 'constant']);
    assert.throws(() => ablationBarsFigure(runs, { category: 'nope', value: 'fd_1step' }), /no column 'nope'/);
    const png = tinyPng(30, 20);
    assert.deepEqual(pngSize(png), { width: 30, height: 20 });
    const grid = imageGridFigure(png, 30, 20, 'samples');
    assert.ok(String(grid.data[0].source).startsWith('data:image/png;base64,'));
  });

  it('a wide comparison (three grids side by side, enlarged 3x: 2290 px) fits a notebook column, aspect kept, its title wrapped', () => {
    const title = 'Teacher, Heun (35 evaluations) | ECT, 1 step | ECT, 2 steps (t_mid 0.821), same noise (small mode: 6 iterations, not a result)';
    const figure = imageGridFigure(tinyPng(2290, 770), 2290, 770, title);
    const layout = figure.layout as { width: number; height: number; margin: { l: number; r: number; t: number; b: number }; title: { text: string } };
    assert.ok(layout.width <= NOTEBOOK_COLUMN_WIDTH, `width ${layout.width}`);
    const plotWidth = layout.width - layout.margin.l - layout.margin.r;
    const plotHeight = layout.height - layout.margin.t - layout.margin.b;
    assert.ok(Math.abs(plotHeight - (plotWidth * 770) / 2290) <= 1, `plot ${plotWidth}x${plotHeight} for a 2290x770 image`);
    const lines = layout.title.text.split('<br>');
    assert.ok(lines.length >= 2, 'a title longer than the figure is wrapped');
    assert.equal(lines.join(' '), title, 'no word lost');
    for (const line of lines) assert.ok(line.length * 8.5 <= plotWidth, `title line of ${line.length} characters: ${line}`);
    // a small grid is still enlarged by a whole factor, and never below the width a title needs
    const small = imageGridFigure(tinyPng(30, 20), 30, 20, 'samples').layout as { width: number; height: number };
    assert.deepEqual([small.width, small.height], [560, 16 * 20 + 60 + 20]);
    assert.equal(wrapTitle('a b c', 1000), 'a b c');
  });

  it('tuning cost: the teacher along pretraining and the tuned runs along tuning on one log-log compute axis', () => {
    const table = aq.from([
      { run_id: 'teacher', kind: 'pretrain', train_flops: 1e14, fd_heun: 30, fd_1step: null, fd_2step: null },
      { run_id: 'teacher', kind: 'pretrain', train_flops: 4e14, fd_heun: 8, fd_1step: null, fd_2step: null },
      { run_id: 'teacher', kind: 'pretrain', train_flops: 2e14, fd_heun: 12, fd_1step: null, fd_2step: null },
      { run_id: 'ect', kind: 'tune', train_flops: 4.2e14, fd_heun: null, fd_1step: 40, fd_2step: 20 },
      { run_id: 'ect', kind: 'tune', train_flops: 4.4e14, fd_heun: null, fd_1step: 25, fd_2step: 11 },
    ]);
    const figure = tuningCostFigure(table, { x: 'train_flops', teacherMetric: 'fd_heun', studentMetrics: ['fd_1step', 'fd_2step'], teacherLine: { value: 8, label: 'teacher, Heun' } });
    assert.deepEqual(figure.data.map((t) => t.name), ['teacher: teacher pretraining (fd_heun)', 'ect: ECT fd_1step', 'ect: ECT fd_2step', 'teacher, Heun']);
    assert.deepEqual(figure.data[0].x, [1e14, 2e14, 4e14], 'sorted by compute');
    assert.deepEqual(figure.data[2].y, [20, 11]);
    assert.deepEqual(figure.data[3].x, [1e14, 4.4e14]);
    assert.equal((figure.layout.yaxis as { type: string }).type, 'log');
    assert.throws(() => tuningCostFigure(table, { x: 'flops', teacherMetric: 'fd_heun', studentMetrics: [] }), /no column 'flops'/);
  });

  it('inlines the plotly bundle once per notebook and keeps scripts unbreakable', () => {
    const figures = new NotebookFigures();
    const first = figures.html(trainingCurvesFigure(aq.from([{ run_id: 'a', iter: 1, m: 1 }]), { x: 'iter', metrics: ['m'] }));
    const second = figures.html(ablationBarsFigure(aq.from([{ c: 'x', v: 1 }]), { category: 'c', value: 'v' }));
    assert.ok(first.length > 1e6 && first.includes('plotly.js v2'));
    assert.ok(second.length < 1e5 && !second.includes('plotly.js v2'));
    assert.ok(!first.includes('cdn.plot.ly/plotly') || !/<script[^>]+src=/.test(first));
    assert.equal(escapeForScript('a</script>b'), 'a<\\/script>b');
  });
});

describe('plots: drawing in headless Chromium', function () {
  this.timeout(120000);
  let dir: string;
  before(function () {
    requireSystemPart(this, 'chromium');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-plots-'));
  });
  after(() => { if (dir && !process.env.KEEP_TEST_OUTPUT) fs.rmSync(dir, { recursive: true, force: true }); });

  it('saves PNG and SVG images of figures', async () => {
    const fits = fitScalingGroups(scalingTable, { x: 'train_flops', y: 'fd', model: 'power_floor', groupBy: ['size'], bootstrap: { samples: 30 } });
    const figure = scalingFigure(scalingTable, fits, { x: 'train_flops', y: 'fd', groupBy: 'size' });
    const renderer = await FigureRenderer.open();
    try {
      const pngFile = await renderer.save(figure, path.join(dir, 'scaling.png'));
      const decoded = PNG.sync.read(fs.readFileSync(pngFile));
      assert.equal(decoded.width, 760);
      assert.equal(decoded.height, 520);
      // a drawn plot is not a blank canvas: count distinct colours in the image
      const colours = new Set<number>();
      for (let i = 0; i < decoded.data.length; i += 4) colours.add(decoded.data.readUInt32BE(i));
      assert.ok(colours.size > 20, `only ${colours.size} colours`);
      const svg = (await renderer.render(figure, { format: 'svg' })).toString('utf8');
      assert.ok(svg.startsWith('<svg') && svg.includes('class="scatterlayer'));
      await assert.rejects(renderer.save(figure, path.join(dir, 'x.jpg')), /\.png or \.svg/);
    } finally {
      await renderer.close();
    }
  });

  it('an offline page of figures draws SVG plots without page errors', async () => {
    const page = standaloneFiguresPage([
      ablationBarsFigure(aq.from([{ c: 'a', v: 1 }, { c: 'b', v: 2 }]), { category: 'c', value: 'v' }),
      imageGridFigure(tinyPng(16, 16), 16, 16, 'grid'),
    ]);
    const file = path.join(dir, 'page.html');
    fs.writeFileSync(file, page);
    const browser = await launchChromium();
    try {
      const tab = await browser.newPage();
      const errors: string[] = [];
      tab.on('pageerror', (e) => errors.push(e.message));
      await tab.goto(`file://${file}`);
      await tab.waitForFunction(() => document.querySelectorAll('.ect-plotly-figure svg.main-svg').length >= 2, null, { timeout: 30000 });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});
