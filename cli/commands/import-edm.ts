/** `ect import-edm` (an EDM network as a run of ours) and `ect export --format safetensors` (ours under EDM's names). */
import type * as tf from '@tensorflow/tfjs-core';
import { Command, Option } from 'commander';
import { BACKEND_CHOICES } from '../../lib/backend/select';
import { DEFAULT_MAX_IMPORT_PARAMS, importEdmFile } from '../../lib/import/edm-import';
import { encodeEdmSafetensors, edmPrecondClass } from '../../lib/import/edm-export';
import { keptEdmTensors, writeImportedRun } from '../../lib/import/edm-run';
import { writeFileAtomic } from '../../lib/write-file';
import { checkOutputFile, checkOutputFolder } from '../../lib/output-paths';
import { positiveInteger } from '../options';
import { startBackend } from '../../lib/backend/select';
import { disposeModel, loadRunModel } from '../../lib/runs/model';

interface ImportFlags { out: string; backend?: string; maxParams?: number }
interface ExportFlags { checkpoint: string; format: ExportFormat; out: string; weights: ExportWeights; backend?: string }

/** Formats of `ect export` (export-web writes the browser site). */
export const EXPORT_FORMATS = ['safetensors'] as const;
type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** Which weights `ect export` writes: the EMA (what samplers use) or the online weights. */
export const EXPORT_WEIGHTS = ['ema', 'params'] as const;
type ExportWeights = (typeof EXPORT_WEIGHTS)[number];

/** Imports an EDM pickle or safetensors file into a run folder; returns the folder. */
export async function importEdmCommand(file: string, flags: ImportFlags, log: (line: string) => void = console.log): Promise<string> {
  checkOutputFolder(flags.out, '--out');
  const backend = await startBackend(flags.backend, log);
  const imported = importEdmFile(file, { maxParams: flags.maxParams });
  const run = writeImportedRun(flags.out, imported, backend);
  const { net, edm } = run.config;
  const params = [...imported.weights.values()].reduce((sum, w) => sum + w.values.length, 0);
  log(`read ${imported.source.precondClass} around a ${imported.source.modelClass} (${net.arch === 'ncsnpp' ? 'NCSN++' : 'DDPM++'}) from ${file}: ${(params / 1e6).toFixed(2)}M parameters, ` +
    `${net.resolution}x${net.resolution}x${net.imageChannels}, ${net.labelDim ? `${net.labelDim} classes` : 'unconditional'}, preconditioning ${edm.precond ?? 'edm'}`);
  for (const [name, why] of Object.entries(imported.source.dropped)) log(`dropped ${name}: ${why}; kept in the checkpoint, so \`ect export\` writes it back`);
  for (const note of imported.source.notes) log(`note: ${note}`);
  log(`wrote ${run.runDir}/config.json and ${run.checkpoint}`);
  log(`sample it with \`ect sample --checkpoint ${run.runDir} --steps heun\`; tune it with \`ect tune --init ${run.runDir}\` (ECT's preconditioning)`);
  return run.runDir;
}

/** Writes a checkpoint's weights under EDM's state_dict names and layouts. */
export async function exportCommand(flags: ExportFlags, log: (line: string) => void = console.log): Promise<string> {
  checkOutputFile(flags.out, '--out');
  await startBackend(flags.backend, log);
  const model = await loadRunModel(flags.checkpoint);
  try {
    if (flags.weights === 'params' && model.emaOnly) throw new Error(`--weights params: ${model.checkpoint} holds the EMA weights alone (a shipped teacher); export them with --weights ema`);
    const weights: Map<string, tf.Tensor> = flags.weights === 'ema' ? model.ema : new Map<string, tf.Tensor>(model.net.params);
    const kept = keptEdmTensors(model.checkpoint);
    writeFileAtomic(flags.out, encodeEdmSafetensors(model.net, weights, model.config, kept));
    log(`wrote ${flags.out}: the ${flags.weights} weights of ${model.checkpoint} (iteration ${model.iteration}) as the state_dict of ${edmPrecondClass(model.config)} ` +
      `around a SongUNet (${model.config.net.arch === 'ncsnpp' ? 'NCSN++' : 'DDPM++'} settings)${kept.size ? `, with ${[...kept.keys()].join(', ')} as imported` : ''}; ` +
      'load with safetensors.torch.load_file and load_state_dict');
    return flags.out;
  } finally {
    disposeModel(model);
  }
}

/** Adds `ect import-edm` and `ect export` to the program. */
export function registerEdmCommands(program: Command): void {
  program.command('import-edm')
    .description(`import a pretrained EDM network (a training snapshot or released .pkl, or a .safetensors of EDM names) as a run folder; reads EDMPrecond, VPPrecond and VEPrecond around a SongUNet with DDPM++ or NCSN++ settings`)
    .argument('<file>', 'the EDM pickle (network-snapshot-*.pkl, edm-cifar10-32x32-uncond-vp.pkl) or safetensors file')
    .requiredOption('-o, --out <dir>', 'the run folder to write: config.json and checkpoints/')
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND)').choices([...BACKEND_CHOICES]))
    .option('--max-params <n>', `refuse networks (and files) of more parameters than this, before reading any weight (default ${DEFAULT_MAX_IMPORT_PARAMS.toLocaleString('en-US')}; EDM's largest has 296M)`, positiveInteger('--max-params'))
    .action(async (file: string, flags: ImportFlags) => { await importEdmCommand(file, flags); });

  program.command('export')
    .description("export a checkpoint's weights under EDM's state_dict names and layouts (safetensors), for PyTorch code")
    .requiredOption('--checkpoint <path>', 'checkpoint file, or a run directory (its newest checkpoint)')
    .addOption(new Option('--format <format>', 'file format').choices([...EXPORT_FORMATS]).default('safetensors'))
    .addOption(new Option('--weights <which>', 'the EMA weights (what samplers use) or the online ones').choices([...EXPORT_WEIGHTS]).default('ema'))
    .requiredOption('-o, --out <file>', 'the file to write')
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND)').choices([...BACKEND_CHOICES]))
    .action(async (flags: ExportFlags) => { await exportCommand(flags); });
}
