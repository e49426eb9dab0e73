/** `ect presets`: the presets in configs/, one line each: kind, data, network, parameters and purpose. */
import { Command } from 'commander';
import { presetSummaries, type PresetSummary } from '../../lib/train/preset-list';

/** Parameters as 0.18M, 55.7M. */
function millions(count: number): string {
  return `${(count / 1e6).toFixed(count < 1e7 ? 2 : 1)}M`;
}

/** The presets as aligned lines: name, kind, data, network, parameters, then the purpose. */
export function presetLines(presets: PresetSummary[]): string[] {
  const rows = [['preset', 'kind', 'data', 'network', 'params', 'purpose'],
    ...presets.map((p) => [p.name, p.kind, p.data, p.network, millions(p.parameters), p.purpose])];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]))).join('  '));
}

/** Adds `presets` to the `ect` program. */
export function registerPresetsCommand(program: Command): void {
  program.command('presets')
    .description('list the presets of configs/ (for --config): kind, dataset, network, parameter count and what each is for')
    .action(() => { for (const line of presetLines(presetSummaries())) console.log(line); });
}
