/**
 * The Fashion-MNIST headline: how close ECT's 1- and 2-step samples come to the teacher's Heun-35 samples, and at what
 * cost, from the teacher's record (teacher.json) and evaluations of tuned checkpoints kept by `ect eval --table`.
 * Like is compared with like only: the same metric, sample count and reference split as the teacher's number.
 */
import * as fs from 'node:fs';
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import { type TeacherRecord } from '../teachers/record';
import { PASSES_PER_IMAGE } from '../nn/flops';

/** The headline's targets: fd ratio to the teacher's Heun fd per sampler, within a share of the teacher's images. */
export const HEADLINE_TARGETS: Record<string, number> = { '1step': 3, '2step': 1.5 };
export const HEADLINE_MAX_IMAGE_SHARE = 0.25;

/** One row of an `ect eval --table` CSV, as read (strings or numbers). */
export type EvaluationRow = Record<string, string | number | null | undefined>;

/** The rows of an `ect eval --table` CSV, numbers parsed (an empty cell, such as a 1-step row's mid_t, is null). */
export function readEvaluationTable(file: string): EvaluationRow[] {
  if (!fs.existsSync(file)) throw new Error(`${file}: missing; \`ect eval --table ${file}\` writes it`);
  return aq.fromCSV(fs.readFileSync(file, 'utf8')).objects() as EvaluationRow[];
}

/**
 * One row per evaluation of a tuned checkpoint: its fd, the ratio to the teacher's Heun fd, the tuning images and
 * FLOPs and their shares of the teacher's, the target and whether it is met. Rows whose sample count, reference or
 * feature network differ from the teacher's headline evaluation are refused, naming the row.
 */
export function headlineTable(teacher: TeacherRecord, evaluations: EvaluationRow[], forwardFlopsPerImage: number, run = 'ect'): ColumnTable {
  const reference = teacher.evaluations.headline;
  const teacherReference = `${reference.reference.dataset}-${reference.reference.split}`;
  const rows = evaluations.map((row, i) => {
    const sampler = String(row.sampler);
    const metric = `${reference.metric.replace(/_heun$/, '')}_${sampler}`;
    const fd = Number(row[metric]);
    const where = `evaluation row ${i + 1} (${row.checkpoint ?? 'no checkpoint'})`;
    if (!(sampler in HEADLINE_TARGETS)) throw new Error(`${where}: sampler '${sampler}' is not one of ${Object.keys(HEADLINE_TARGETS).join(', ')}`);
    if (!Number.isFinite(fd)) throw new Error(`${where}: no ${metric} value`);
    if (Number(row.n) !== reference.n) throw new Error(`${where}: ${row.n} images, but the teacher's ${reference.metric} is on ${reference.n}: compare like with like`);
    if (row.reference !== teacherReference) throw new Error(`${where}: reference ${row.reference}, but the teacher's is ${teacherReference}`);
    if (row.features !== undefined && row.features !== reference.features) throw new Error(`${where}: features ${row.features}, the teacher's are ${reference.features}`);
    const images = Number(row.kimg) * 1000;
    const flops = images * PASSES_PER_IMAGE.ect * forwardFlopsPerImage;
    const ratio = fd / reference.value;
    return {
      run, sampler, mid_t: row.mid_t ?? '', kimg: Number(row.kimg), fd, teacher_fd: reference.value, ratio, target: HEADLINE_TARGETS[sampler],
      images, image_share: images / teacher.training.images, flops, flops_share: flops / teacher.training.flops,
      met: ratio <= HEADLINE_TARGETS[sampler] && images / teacher.training.images <= HEADLINE_MAX_IMAGE_SHARE,
    };
  });
  return aq.from(rows);
}
