/** `ect posthoc-ema` (reconstruct EMAs of other widths from a run's snapshots) and `ect select` (the selection protocol). */
import { Command, Option } from 'commander';
import { BACKEND_CHOICES } from '../../lib/backend/select';
import { startBackend } from '../../lib/backend/select';
import { reconstructPosthocEma, writePosthocEma } from '../../lib/select/posthoc-ema';
import { selectForRun } from '../../lib/select/run-selection';
import { readSeedScores, readTeacherScore, seedSummaryMarkdown, seedSummaryTable } from '../../lib/results/seed-summary';
import { HEADLINE_TARGETS } from '../../lib/results/headline';
import { VALIDATION_SAMPLE_SEED } from '../../lib/config/defaults';
import { DEFAULT_SAMPLE_SEED } from '../../lib/sample';
import { MAX_SIGMA_REL } from '../../lib/config/schema';
import { integer, positiveInteger } from '../options';

/** A comma-separated list of numbers, each checked by `ok`. */
function numberList(flag: string, must: string, ok: (x: number) => boolean) {
  return (text: string): number[] => {
    const values = text.split(',').map((part) => Number(part.trim()));
    const bad = values.filter((x) => !Number.isFinite(x) || !ok(x));
    if (text.trim() === '' || bad.length) throw new Error(`${flag} ${text}: a comma-separated list of ${must}`);
    return values;
  };
}

const sigmaRelList = (flag: string) => numberList(flag, `relative EMA widths in (0, ${MAX_SIGMA_REL.toFixed(4)})`, (x) => x > 0 && x < MAX_SIGMA_REL);

interface PosthocFlags { run: string; sigmaRel: number[]; iteration?: number; backend?: string }
interface SelectFlags {
  run: string; sigmaRel: number[]; midT: number[]; iterations: number[]; at?: number; valN: number; testN: number; valSeed: number; testSeed: number; batch: number;
  classifier?: string; inception?: string; cacheDir?: string; backend?: string;
}

/** Adds `posthoc-ema` and `select` to the `ect` program. */
export function registerSelectCommands(program: Command): void {
  program.command('posthoc-ema')
    .description('reconstruct the EMA of other relative widths from the post-hoc snapshots of a run trained with ema.posthoc (Karras et al. 2024), as checkpoints that sample, evaluate and export like any other (posthoc-ema/ in the run folder)')
    .requiredOption('--run <dir>', 'the run folder (its posthoc/ holds the snapshots)')
    .requiredOption('--sigma-rel <list>', `relative EMA widths, comma-separated, e.g. 0.02,0.05,0.1 (each in (0, ${MAX_SIGMA_REL.toFixed(4)}); widths between the tracked ones reconstruct best)`, sigmaRelList('--sigma-rel'))
    .option('--iteration <n>', 'reconstruct at this snapshot\'s iteration, from the snapshots up to it (default: the last snapshot)', integer('--iteration'))
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND)').choices([...BACKEND_CHOICES]))
    .action(async (flags: PosthocFlags) => {
      await startBackend(flags.backend, console.log);
      for (const sigmaRel of flags.sigmaRel) {
        const rec = reconstructPosthocEma(flags.run, sigmaRel, flags.iteration);
        try {
          const file = writePosthocEma(flags.run, rec);
          console.log(`sigma_rel ${sigmaRel}: iteration ${rec.iteration}, ${rec.snapshots} snapshots, profile error ${rec.profileError.toExponential(2)} -> ${file}`);
        } finally {
          rec.weights.forEach((t) => t.dispose());
        }
      }
    });

  program.command('select')
    .description('the selection protocol (docs/selection.md): score the run\'s last checkpoint and post-hoc EMAs of the given widths, 1 step and 2 steps at each t_mid, on validation samples (the training split, another noise seed); score the lowest of each sampler once on the test split, beside the last checkpoint as the run left it; write selection/validation.csv, selection/selection.json and test rows in evaluations.csv')
    .requiredOption('--run <dir>', 'the run folder')
    .option('--sigma-rel <list>', 'post-hoc EMA widths to reconstruct and compare, comma-separated (needs a run trained with ema.posthoc); none: the run\'s own EMA only', sigmaRelList('--sigma-rel'), [])
    .option('--mid-t <list>', 't_mid candidates of 2-step sampling, comma-separated (default: the run\'s ect.midT)', numberList('--mid-t', 'positive times', (x) => x > 0), [])
    .option('--iterations <list>', 'snapshot iterations at which to reconstruct the --sigma-rel EMAs, comma-separated, so the training point is chosen on validation too (default: the last; the run\'s own EMA is the last checkpoint\'s)', numberList('--iterations', 'snapshot iterations', (x) => Number.isInteger(x) && x > 0), [])
    .option('--at <iteration>', 'select at this snapshot iteration instead of the run\'s end (the run may still be training): every --sigma-rel EMA reconstructed there, the run\'s own EMA width there scored beside the choice in place of the last checkpoint; records in selection/iter-<n>/, test rows with that iteration. One --at per point of a run\'s curve', positiveInteger('--at'))
    .option('--val-n <n>', 'samples per validation score', positiveInteger('--val-n'), 1000)
    .option('--test-n <n>', 'samples per test score', positiveInteger('--test-n'), 10000)
    .option('--val-seed <n>', 'noise seed of validation samples (must differ from --test-seed)', integer('--val-seed'), VALIDATION_SAMPLE_SEED)
    .option('--test-seed <n>', 'noise seed of test samples (the seed every reported number uses)', integer('--test-seed'), DEFAULT_SAMPLE_SEED)
    .option('--batch <n>', 'images per generation call (does not change the images)', positiveInteger('--batch'), 250)
    .option('--classifier <dir>', 'Fashion-MNIST feature classifier (default data/fmnist-classifier)')
    .option('--inception <dir>', 'Inception-v3 TF.js graph model for CIFAR-10 FID (default $ECT_INCEPTION_DIR)')
    .option('--cache-dir <dir>', 'reference statistics cache')
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (also ECT_BACKEND)').choices([...BACKEND_CHOICES]))
    .action(async (flags: SelectFlags) => {
      const backend = await startBackend(flags.backend, console.log);
      const outcome = await selectForRun({
        runDir: flags.run, sigmaRels: flags.sigmaRel, midTs: flags.midT, iterations: flags.iterations, at: flags.at, validationN: flags.valN, testN: flags.testN,
        validationSeed: flags.valSeed, testSeed: flags.testSeed, batch: flags.batch, classifierDir: flags.classifier,
        inceptionDir: flags.inception, cacheDir: flags.cacheDir, backend: backend.name, onInfo: console.log,
      });
      console.log(`rule: ${outcome.result.rule}`);
      for (const s of outcome.result.test) console.log(`test ${s.role.padEnd(6)} ${s.candidate.name}, ${s.candidate.steps} step(s)${s.candidate.midT === null ? '' : `, t_mid ${s.candidate.midT}`}: fd ${s.fd.toPrecision(5)}`);
      console.log(`wrote ${outcome.validationTable}, ${outcome.record}, ${outcome.evaluations}`);
    });

  program.command('seed-summary')
    .description('a recipe over training seeds: each seed\'s test fd from `ect select` (the choice and the last checkpoint), mean, spread and ratio to the teacher\'s Heun fd, as a markdown table')
    .requiredOption('--runs <list>', 'the runs of the seeds, comma-separated folders')
    .requiredOption('--teacher <file>', 'the teacher\'s `ect eval --steps heun --table` CSV on the same test samples (n and seed)')
    .action((flags: { runs: string; teacher: string }) => {
      const scores = flags.runs.split(',').flatMap((run) => readSeedScores(run.trim()));
      console.log(seedSummaryMarkdown(seedSummaryTable(scores, readTeacherScore(flags.teacher), HEADLINE_TARGETS)));
    });
}
