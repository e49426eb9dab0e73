/**
 * Published CIFAR-10 numbers (unconditional FID, 50k samples, Inception-v3) from "Consistency Models
 * Made Easy" (Geng et al., ICLR 2025), section 4 (docs/method.md §8), for side-by-side tables.
 */
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';

/** One published result. */
export interface PublishedResult {
  method: string;
  iterations: number | null;   // training iterations of the consistency stage, when stated
  nfe: number;                 // network evaluations per sample
  fid: number;
  note: string;
}

export const PAPER_CIFAR10_RESULTS: PublishedResult[] = [
  { method: 'EDM (teacher, Heun)', iterations: null, nfe: 35, fid: 2.01, note: 'diffusion pretraining, 200 Mimg' },
  { method: 'CD (LPIPS)', iterations: null, nfe: 1, fid: 3.55, note: 'consistency distillation' },
  { method: 'CD (LPIPS)', iterations: null, nfe: 2, fid: 2.93, note: 'consistency distillation' },
  { method: 'iCT-deep', iterations: 400000, nfe: 1, fid: 2.51, note: 'batch 1024, >100M parameters' },
  { method: 'iCT-deep', iterations: 400000, nfe: 2, fid: 2.24, note: 'batch 1024, >100M parameters' },
  { method: 'ECT', iterations: 100000, nfe: 1, fid: 4.54, note: '12.8M images, batch 128' },
  { method: 'ECT', iterations: 100000, nfe: 2, fid: 2.20, note: '12.8M images, batch 128' },
  { method: 'ECT', iterations: 200000, nfe: 1, fid: 3.86, note: 'batch 128' },
  { method: 'ECT', iterations: 200000, nfe: 2, fid: 2.15, note: 'batch 128' },
  { method: 'ECT', iterations: 400000, nfe: 1, fid: 3.60, note: 'batch 128' },
  { method: 'ECT', iterations: 400000, nfe: 2, fid: 2.11, note: 'batch 128' },
  { method: 'ECT (1 A100-hour)', iterations: null, nfe: 2, fid: 2.73, note: "the abstract's headline, q = 256" },
];

/** The published results as a table (columns method, iterations, nfe, fid, note, source). */
export function paperResultsTable(): ColumnTable {
  return aq.from(PAPER_CIFAR10_RESULTS.map((r) => ({ ...r, source: 'Geng et al. 2024 (paper)' })));
}
