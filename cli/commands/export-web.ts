/** The `ect export-web` command: a checkpoint as a static site that generates samples in the browser (lib/web/). */
import { Command, Option } from 'commander';
import { BACKEND_CHOICES } from '../../lib/backend/select';
import { startBackend } from '../../lib/backend/select';
import { exportWebSite, WEB_SITE_DIR } from '../../lib/web/site';
import { WEB_WEIGHT_DTYPES, type WebWeightDtype } from '../../lib/web/weights';
import { positiveNumber } from '../options';

interface ExportWebFlags { checkpoint: string; out: string; dtype: WebWeightDtype; backend?: string; midT?: number; force?: boolean }

/** Writes the site and says what it holds and how to open it. */
export async function exportWebCommand(flags: ExportWebFlags, log: (line: string) => void = console.log): Promise<string> {
  await startBackend(flags.backend, log);
  const site = await exportWebSite({ checkpoint: flags.checkpoint, out: flags.out, dtype: flags.dtype, midT: flags.midT === undefined ? undefined : [flags.midT], force: flags.force });
  const { manifest } = site;
  log(`wrote ${flags.out}: ${site.files.join(', ')}`);
  log(`the page's 2-step t_mid starts at ${manifest.midT.join(' ') || '(none: a 1-step model)'} (${flags.midT === undefined ? 'chosen by `ect select`, else the run\'s ect.midT' : '--mid-t'})`);
  log(`model: ${manifest.source.run} iteration ${manifest.source.iteration}; weights ${manifest.weights.dtype}, ${(site.weightsBytes / 1024).toFixed(0)} KiB; script ${(site.bundleBytes / 1024).toFixed(0)} KiB`);
  const error = manifest.halfPrecisionError;
  if (error) log(`float16 weights: max |pixel difference| against float32 ${error.maxAbs.toExponential(2)} (mean ${error.meanAbs.toExponential(2)}) over ${error.images} 1-step images in [-1, 1]`);
  log('open it through any static server (fetch does not work from file://), e.g. `npm run web` for build/web');
  return site.dir;
}

/** Adds `ect export-web` to the program. */
export function registerExportWebCommand(program: Command): void {
  program.command('export-web')
    .description('export a checkpoint as a static web page that generates samples in the browser with TensorFlow.js (WebGL, wasm or cpu)')
    .requiredOption('--checkpoint <path>', 'checkpoint file, or a run directory (its newest checkpoint); its EMA weights are exported')
    .option('-o, --out <dir>', 'the site folder: index.html, ect-web.js, model.json, weights.bin, the wasm binaries', WEB_SITE_DIR)
    .addOption(new Option('--dtype <type>', 'weight precision in the site (float16: half the bytes; its pixel error is measured and shown)').choices([...WEB_WEIGHT_DTYPES]).default('float32'))
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend of this export (the float16 error is measured on it)').choices([...BACKEND_CHOICES]))
    .option('--mid-t <t>', 'the page\'s default 2-step intermediate time (default: the t_mid `ect select` chose for this checkpoint on validation, else the run\'s ect.midT)', positiveNumber('--mid-t'))
    .option('--force', 'write into an existing folder that is not empty, replacing the site\'s files there')
    .action(async (flags: ExportWebFlags) => { await exportWebCommand(flags); });
}
