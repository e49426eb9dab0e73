/** metrics.csv of a run: fixed training columns first, metric columns added as they appear (empty where not evaluated). */
import * as fs from 'node:fs';
import Papa from 'papaparse';
import { appendWhole, writeFileAtomic } from '../write-file';

/** The columns every run writes, in order. */
export const TRAINING_COLUMNS = ['iter', 'kimg', 'loss', 'lr', 'stage', 'img_per_s', 'wall_s'] as const;

export type MetricsRow = Record<string, number | string | undefined>;

/**
 * A CSV file's text without a torn last line: every row is written with its newline, so text after the last
 * newline is a row cut short (a full disk, or a writer killed mid-append), or a row being appended right now.
 */
function wholeLines(text: string): { text: string; torn?: string } {
  if (text === '' || text.endsWith('\n')) return { text };
  const end = text.lastIndexOf('\n') + 1;
  return { text: text.slice(0, end), torn: text.slice(end) };
}

/**
 * Reads metrics.csv into header and rows (strings); an absent file gives the fixed header and no rows. A torn
 * last line (no newline after it) is left out of the rows and returned as `torn`.
 */
export function readMetrics(file: string): { header: string[]; rows: Record<string, string>[]; torn?: string } {
  if (!fs.existsSync(file)) return { header: [...TRAINING_COLUMNS], rows: [] };
  const { text, torn } = wholeLines(fs.readFileSync(file, 'utf8'));
  const parsed = Papa.parse<Record<string, string>>(text, { header: true, skipEmptyLines: true });
  if (parsed.errors.length) throw new Error(`${file}: not a valid CSV (${parsed.errors[0].message}, row ${parsed.errors[0].row})`);
  const header = parsed.meta.fields ?? [];
  const missing = TRAINING_COLUMNS.filter((c) => !header.includes(c));
  if (missing.length) throw new Error(`${file}: missing columns ${missing.join(', ')}; is this a metrics.csv of ect-workbench?`);
  return torn === undefined ? { header, rows: parsed.data } : { header, rows: parsed.data, torn };
}

/** A cell: empty where not measured; a NaN or infinite value written as such (a skipped batch's loss), never hidden as empty. */
function format(value: number | string | undefined): string {
  if (value === undefined) return '';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(7)));
  // a text with a separator, quote or line break is quoted as CSV does (a rule or a description in a table row)
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

function writeAll(file: string, header: string[], rows: MetricsRow[]): void {
  const lines = [header.join(','), ...rows.map((row) => header.map((c) => format(row[c])).join(','))];
  writeFileAtomic(file, lines.join('\n') + '\n');
}

/** Appends one row; when it has new columns, rewrites the file once with the wider header. */
export function appendMetricsRow(file: string, row: MetricsRow): void {
  const { header, rows, torn } = readMetrics(file);
  const added = Object.keys(row).filter((k) => !header.includes(k) && row[k] !== undefined);
  if (!fs.existsSync(file) || added.length || torn !== undefined) {
    writeAll(file, [...header, ...added], [...rows, row]);
    return;
  }
  appendWhole(file, header.map((c) => format(row[c])).join(',') + '\n');
}

/**
 * Drops rows past `iteration` (a resumed run redoes them) and a torn last line, keeping the header. Returns a
 * line saying what was dropped when a torn line was, else undefined.
 */
export function truncateMetrics(file: string, iteration: number): string | undefined {
  if (!fs.existsSync(file)) return undefined;
  const { header, rows, torn } = readMetrics(file);
  const kept = rows.filter((r) => Number(r.iter) <= iteration);
  if (kept.length !== rows.length || torn !== undefined) writeAll(file, header, kept);
  return torn === undefined ? undefined : `${file}: dropped its torn last line ${JSON.stringify(torn.slice(0, 80))} (a write cut short)`;
}

/**
 * Appends one row to a free-form CSV table (no fixed columns, unlike metrics.csv), widening the header when the
 * row brings new columns; a file that is not a valid CSV is refused, naming it.
 */
export function appendTableRow(file: string, row: MetricsRow): void {
  let header: string[] = [];
  let rows: MetricsRow[] = [];
  let torn: string | undefined;
  if (fs.existsSync(file)) {
    const whole = wholeLines(fs.readFileSync(file, 'utf8'));
    torn = whole.torn;
    const parsed = Papa.parse<Record<string, string>>(whole.text, { header: true, skipEmptyLines: true });
    if (parsed.errors.length) throw new Error(`${file}: not a valid CSV (${parsed.errors[0].message}, row ${parsed.errors[0].row})`);
    header = parsed.meta.fields ?? [];
    rows = parsed.data;
  }
  const added = Object.keys(row).filter((k) => !header.includes(k) && row[k] !== undefined);
  if (!fs.existsSync(file) || added.length || torn !== undefined) {
    writeAll(file, [...header, ...added], [...rows, row]);
    return;
  }
  appendWhole(file, header.map((c) => format(row[c])).join(',') + '\n');
}
