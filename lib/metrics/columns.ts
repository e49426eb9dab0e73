/**
 * The metric columns an evaluation writes into metrics.csv, declared once: which metrics, how each feature
 * network names them, and the sampler label at the end (fd_fmnist_1step, kid_fmnist_2step, fid_heun, ...).
 * The evaluator writes these names and the results tables recognise them by this declaration, so a metric
 * added here appears in both.
 */

/** Sample-quality metrics of one evaluation, in column order. */
export const SAMPLE_METRICS = ['fd', 'kid', 'kid_std', 'precision', 'recall'] as const;
export type SampleMetric = typeof SAMPLE_METRICS[number];

/** How a feature network names its columns. */
export interface FeatureNaming {
  distanceName: string;   // the Frechet distance's column stem: 'fid' only for the real Inception, else fd_<tag>
  metricTag: string;      // suffix of the other metrics' stems: '' for Inception (kid, precision...), '_fmnist' otherwise
}

/** The feature networks (lib/metrics/features.ts) by name, and how each names its columns. */
export const FEATURE_NAMINGS = {
  inception: { distanceName: 'fid', metricTag: '' },
  fmnist: { distanceName: 'fd_fmnist', metricTag: '_fmnist' },
} as const satisfies Record<string, FeatureNaming>;

/** The column stem of a metric under a feature network: fd -> its distance name, others -> name + tag. */
function metricStem(metric: SampleMetric, naming: FeatureNaming): string {
  return metric === 'fd' ? naming.distanceName : `${metric}${naming.metricTag}`;
}

/** The column of one metric for one sampler label ('' for none): e.g. kid_fmnist_1step. */
export function metricColumn(metric: SampleMetric, naming: FeatureNaming, label: string): string {
  return label ? `${metricStem(metric, naming)}_${label}` : metricStem(metric, naming);
}

/** Every column an evaluation with this feature network and sampler label writes, by metric. */
export function evaluationColumns(naming: FeatureNaming, label: string): Record<SampleMetric, string> {
  return Object.fromEntries(SAMPLE_METRICS.map((metric) => [metric, metricColumn(metric, naming, label)])) as Record<SampleMetric, string>;
}

/** What a metric column is: its metric, feature network and sampler label. */
export interface ParsedMetricColumn { metric: SampleMetric; features: keyof typeof FEATURE_NAMINGS; label: string }

// every (stem, metric, features), longest stem first, so that kid_std_... is not read as kid with label std_...
const STEMS = (Object.entries(FEATURE_NAMINGS) as Array<[keyof typeof FEATURE_NAMINGS, FeatureNaming]>)
  .flatMap(([features, naming]) => SAMPLE_METRICS.map((metric) => ({ stem: metricStem(metric, naming), metric, features })))
  .sort((a, b) => b.stem.length - a.stem.length);

/** The metric, feature network and label of a metric column; null for any other column (loss, iter...). */
export function parseMetricColumn(name: string): ParsedMetricColumn | null {
  for (const { stem, metric, features } of STEMS) {
    if (name === stem) return { metric, features, label: '' };
    if (name.startsWith(`${stem}_`)) return { metric, features, label: name.slice(stem.length + 1) };
  }
  return null;
}

/** Sampler labels in order of preference for a run's primary quality metric: the teacher's Heun, else ECT's 2 steps, else 1 step. */
const PRIMARY_LABELS = ['heun', '2step', '1step'];

/**
 * The column a run's quality is judged by among an evaluation's columns: its Frechet distance of the most
 * preferred sampler (fd_fmnist_heun when pretraining, fid_2step or else fid_1step when tuning), else its first
 * Frechet distance; null when it has none.
 */
export function primaryFdColumn(columns: string[]): string | null {
  const distances = columns.filter((name) => parseMetricColumn(name)?.metric === 'fd');
  const rank = (name: string) => {
    const at = PRIMARY_LABELS.indexOf(parseMetricColumn(name)?.label ?? '');
    return at < 0 ? PRIMARY_LABELS.length : at;
  };
  return distances.reduce<string | null>((best, name) => (best === null || rank(name) < rank(best) ? name : best), null);
}
