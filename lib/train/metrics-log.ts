/** metrics.csv of a run: fixed training columns first, metric columns added as they appear (empty where not evaluated). */
import * as fs from 'node:fs';
import Papa from 'papaparse';

/** The columns every run writes, in order. */
export const TRAINING_COLUMNS = ['iter', 'kimg', 'loss', 'lr', 'stage', 'img_per_s', 'wall_s'] as const;

export type MetricsRow = Record<string, number | string | undefined>;

/** Reads metrics.csv into header and rows (strings); an absent file gives the fixed header and no rows. */
export function readMetrics(file: string): { header: string[]; rows: Record<string, string>[] } {
  if (!fs.existsSync(file)) return { header: [...TRAINING_COLUMNS], rows: [] };
  const parsed = Papa.parse<Record<string, string>>(fs.readFileSync(file, 'utf8'), { header: true, skipEmptyLines: true });
  if (parsed.errors.length) throw new Error(`${file}: not a valid CSV (${parsed.errors[0].message}, row ${parsed.errors[0].row})`);
  const header = parsed.meta.fields ?? [];
  const missing = TRAINING_COLUMNS.filter((c) => !header.includes(c));
  if (missing.length) throw new Error(`${file}: missing columns ${missing.join(', ')}; is this a metrics.csv of ect-workbench?`);
  return { header, rows: parsed.data };
}

/** A cell: empty where not measured; a NaN or infinite value written as such (a skipped batch's loss), never hidden as empty. */
function format(value: number | string | undefined): string {
  if (value === undefined) return '';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(7)));
  return value;
}

function writeAll(file: string, header: string[], rows: MetricsRow[]): void {
  const lines = [header.join(','), ...rows.map((row) => header.map((c) => format(row[c])).join(','))];
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, lines.join('\n') + '\n');
  fs.renameSync(tmp, file);
}

/** Appends one row; when it has new columns, rewrites the file once with the wider header. */
export function appendMetricsRow(file: string, row: MetricsRow): void {
  const { header, rows } = readMetrics(file);
  const added = Object.keys(row).filter((k) => !header.includes(k) && row[k] !== undefined);
  if (!fs.existsSync(file) || added.length) {
    writeAll(file, [...header, ...added], [...rows, row]);
    return;
  }
  fs.appendFileSync(file, header.map((c) => format(row[c])).join(',') + '\n');
}

/** Drops rows past `iteration` (a resumed run redoes them) and keeps the header. */
export function truncateMetrics(file: string, iteration: number): void {
  if (!fs.existsSync(file)) return;
  const { header, rows } = readMetrics(file);
  const kept = rows.filter((r) => Number(r.iter) <= iteration);
  if (kept.length !== rows.length) writeAll(file, header, kept);
}

/**
 * Appends one row to a free-form CSV table (no fixed columns, unlike metrics.csv), widening the header when the
 * row brings new columns; a file that is not a valid CSV is refused, naming it.
 */
export function appendTableRow(file: string, row: MetricsRow): void {
  let header: string[] = [];
  let rows: MetricsRow[] = [];
  if (fs.existsSync(file)) {
    const parsed = Papa.parse<Record<string, string>>(fs.readFileSync(file, 'utf8'), { header: true, skipEmptyLines: true });
    if (parsed.errors.length) throw new Error(`${file}: not a valid CSV (${parsed.errors[0].message}, row ${parsed.errors[0].row})`);
    header = parsed.meta.fields ?? [];
    rows = parsed.data;
  }
  const added = Object.keys(row).filter((k) => !header.includes(k) && row[k] !== undefined);
  if (!fs.existsSync(file) || added.length) {
    writeAll(file, [...header, ...added], [...rows, row]);
    return;
  }
  fs.appendFileSync(file, header.map((c) => format(row[c])).join(',') + '\n');
}
