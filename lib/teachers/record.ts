/**
 * A shipped teacher's record, teacher.json: where the teacher came from, what it cost, and its Heun sample quality;
 * read by the notebooks, the CLI and the quality test, written by lib/teachers/ship.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MachineRecord } from '../machine/facts';
import { SHIPPED_TEACHERS_DIR } from './shipped';

/** The provenance file of a shipped teacher. */
export const TEACHER_FILE = 'teacher.json';

/** One Heun evaluation of a teacher's EMA weights on the fixed evaluation noise, as teacher.json records it. */
export interface TeacherEvaluation {
  metric: string;                   // the Frechet-distance column: fd_fmnist_heun on Fashion-MNIST (our classifier's features; not FID)
  value: number;
  n: number;                        // generated images
  seed: number;                     // evaluation noise seed: image i's noise depends on (seed, i) only
  sampler: string;                  // heun
  networkEvaluations: number;       // per image: 2 heunSteps - 1
  features: string;                 // the feature network (fmnist: data/fmnist-classifier)
  reference: { dataset: string; split: string; images: number; featureWeights: string };  // featureWeights: SHA-256 of the feature network's files
  metrics: Record<string, number>;  // every column of the evaluation (KID, precision, recall beside the distance)
  wallSeconds: number;              // generation, features and distances (not the model load or the reference statistics)
  backend: string;                  // the TensorFlow.js backend that computed it
  machine: MachineRecord;
}

/** teacher.json: a shipped teacher's provenance and quality. */
export interface TeacherRecord {
  name: string;
  run: string;                      // the run folder it was shipped from, relative to the repository root (its name alone when outside)
  checkpoint: string;               // the shipped checkpoint, relative to the teacher's folder: EMA weights only
  iteration: number;
  kimg: number;                     // thousands of training images seen
  parameters: number;
  seed: number;                     // the run's seed
  training: {
    command: string;                // the command that made the run
    commit: string;                 // the workbench commit it ran at
    machine: MachineRecord | null;  // from the run's config.json (its last session)
    backend: string;
    images: number;
    flops: number;                  // forward FLOPs per image x passes per image x images (lib/nn/flops.ts trainingFlops)
    wallSeconds: number | null;     // training time summed over sessions, from the checkpoint
  };
  evaluations: {
    headline: TeacherEvaluation;    // --eval-n images (10k): the number to quote
    check: TeacherEvaluation;       // --check-n images (300): what the quality test measures again
  };
  shipped: { at: string; commit: string; command: string };
}

/** The record of a shipped teacher's folder; an error naming the file when it has none. */
export function readTeacherRecord(dir: string): TeacherRecord {
  const file = path.join(dir, TEACHER_FILE);
  if (!fs.existsSync(file)) throw new Error(`${file}: missing; ${dir} is not a shipped teacher (ect ship-teacher writes it)`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as TeacherRecord;
}

/** The folders under `dir` (default data/teachers) that hold a shipped teacher's record. */
export function shippedTeacherFolders(dir = SHIPPED_TEACHERS_DIR): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((name) => !name.startsWith('.')).map((name) => path.join(dir, name))
    .filter((folder) => fs.existsSync(path.join(folder, TEACHER_FILE))).sort();
}
