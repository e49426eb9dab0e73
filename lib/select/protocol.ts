/**
 * The selection protocol (docs/selection.md): every choice of what to report (the checkpoint and EMA, t_mid) is
 * made on validation samples (the training split, noise seed 1), and the test split (noise seed 0) is scored once,
 * for what was chosen and, beside it, for the run's last checkpoint as it is. The record says the rule that chose.
 */

/** Where samples are scored: a dataset split and the noise seed the images are drawn from. */
export interface ScoringReference {
  split: 'train' | 'test';
  seed: number;
  n: number;
}

/** One way of sampling a run: a checkpoint (the run's own EMA or a post-hoc one), a sampler and its t_mid. */
export interface Candidate {
  name: string;               // e.g. 'posthoc sigma_rel 0.050' or 'run EMA'
  checkpoint: string;
  sigmaRel: number | null;    // the EMA width (null: the run's own EMA when it is not a power one)
  steps: 1 | 2;
  midT: number | null;        // 2 steps: the intermediate time
}

/** A candidate's score on a reference. */
export interface Scored {
  candidate: Candidate;
  reference: ScoringReference;
  fd: number;                 // the primary Fréchet distance (fd_fmnist or FID)
  metrics: Record<string, number>;
}

/** Scores a candidate on a reference: generation, features and distances (lib/metrics/evaluate.ts in practice). */
export type CandidateScorer = (candidate: Candidate, reference: ScoringReference) => Promise<{ fd: number; metrics: Record<string, number> }>;

/** What the protocol is asked to choose among. */
export interface SelectionSpec {
  candidates: Candidate[];     // every way of sampling to consider, 1- and 2-step
  last: Candidate[];           // the run's last checkpoint with its own EMA and t_mid: always scored on test too
  lastLabel?: string;          // what `last` is, for the rule in words (default: 'the last checkpoint as the run left it')
  validation: ScoringReference;
  test: ScoringReference;
}

/** The outcome: the validation table, the choice per sampler and the test scores, with the rule in words. */
export interface SelectionResult {
  rule: string;
  validation: Scored[];
  chosen: Record<'1step' | '2step', Scored | null>;   // the validation row chosen (null: no candidate of that sampler)
  test: Array<Scored & { role: 'chosen' | 'last' }>;
}

/** The lowest-fd score of a sampler; ties go to the earlier candidate (the list's order is the tie-break). */
export function chooseLowest(scores: Scored[], steps: 1 | 2): Scored | null {
  let best: Scored | null = null;
  for (const s of scores) if (s.candidate.steps === steps && (best === null || s.fd < best.fd)) best = s;
  return best;
}

/** The rule in words, for records: what was compared on which samples. */
export function describeRule(spec: SelectionSpec): string {
  const widths = [...new Set(spec.candidates.map((c) => (c.sigmaRel === null ? 'the run EMA' : c.sigmaRel.toString())))];
  const midTs = [...new Set(spec.candidates.filter((c) => c.steps === 2).map((c) => c.midT))];
  const checkpoints = new Set(spec.candidates.map((c) => c.checkpoint)).size;
  return `lowest fd on validation (${spec.validation.n} samples of noise seed ${spec.validation.seed} against the ${spec.validation.split} split) ` +
    `over ${checkpoints} checkpoint(s) of EMA width(s) ${widths.join(', ')}` + (midTs.length ? ` and, for 2 steps, t_mid ${midTs.join(', ')}` : '') +
    `; the choice scored once on test (${spec.test.n} samples of noise seed ${spec.test.seed} against the ${spec.test.split} split), beside ${spec.lastLabel ?? 'the last checkpoint as the run left it'}`;
}

/**
 * Runs the protocol: scores every candidate on validation, chooses the lowest fd per sampler, then scores the chosen
 * and the last checkpoint's samplers on test, once each. The test split is never looked at before the choice, and
 * refused as the validation reference (as are validation latents equal to the test's).
 */
export async function runSelection(spec: SelectionSpec, score: CandidateScorer, onInfo: (line: string) => void = () => {}): Promise<SelectionResult> {
  if (spec.validation.split === 'test') throw new Error('selection: the validation reference must not be the test split');
  if (spec.validation.seed === spec.test.seed) throw new Error(`selection: validation and test draw from the same noise seed ${spec.test.seed}; choose another validation seed`);
  if (spec.candidates.length === 0) throw new Error('selection: no candidates to choose among');
  const validation: Scored[] = [];
  for (const candidate of spec.candidates) {
    const { fd, metrics } = await score(candidate, spec.validation);
    validation.push({ candidate, reference: spec.validation, fd, metrics });
    onInfo(`validation ${describeCandidate(candidate)}: fd ${fd.toPrecision(5)}`);
  }
  const chosen = { '1step': chooseLowest(validation, 1), '2step': chooseLowest(validation, 2) };
  const test: SelectionResult['test'] = [];
  for (const pick of [chosen['1step'], chosen['2step']]) {
    if (!pick) continue;
    const { fd, metrics } = await score(pick.candidate, spec.test);
    test.push({ candidate: pick.candidate, reference: spec.test, fd, metrics, role: 'chosen' });
    onInfo(`test, chosen ${describeCandidate(pick.candidate)}: fd ${fd.toPrecision(5)}`);
  }
  for (const candidate of spec.last) {
    const { fd, metrics } = await score(candidate, spec.test);
    test.push({ candidate, reference: spec.test, fd, metrics, role: 'last' });
    onInfo(`test, last ${describeCandidate(candidate)}: fd ${fd.toPrecision(5)}`);
  }
  return { rule: describeRule(spec), validation, chosen, test };
}

/** A candidate in a few words. */
export function describeCandidate(c: Candidate): string {
  return `${c.name}, ${c.steps} step${c.steps === 1 ? '' : `s, t_mid ${c.midT}`}`;
}
