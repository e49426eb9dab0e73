/**
 * A shipped teacher and a tuning run in a few lines of markdown, from their records (teacher.json, config.json and
 * metrics.csv): what they are, what they cost, and every quality number with its sample count and reference.
 */
import { repositoryRelativePath } from '../env';
import { resolveRunInit } from '../runs/folder';
import { type TeacherRecord } from '../teachers/record';
import type { RunRecord } from './runs';

const round = (value: number, digits = 3): string => Number(value.toPrecision(digits)).toString();

/** A shipped teacher: its training (iterations, images, FLOPs, time, machine), the command, and its headline Heun quality. */
export function teacherMarkdown(record: TeacherRecord, dir: string): string {
  const { training } = record;
  const headline = record.evaluations.headline;
  const hours = training.wallSeconds ? `, ${round(training.wallSeconds / 3600, 2)} h` : '';
  const machine = training.machine ? ` on ${training.machine.cores} cores (${training.machine.cpu})` : '';
  return [
    `**Teacher \`${record.name}\`** (\`${repositoryRelativePath(dir)}\`): EDM pretraining of a ${round(record.parameters / 1e6)}M-parameter UNet, `
      + `${record.iteration} iterations (${round(record.kimg)} kimg), ${training.flops.toExponential(2)} training FLOPs${hours}${machine} (${training.backend} backend), `
      + `from \`${training.command}\` at commit ${training.commit}; shipped as its EMA weights alone.`,
    `Its Heun sampler (${headline.networkEvaluations} network evaluations) gives ${headline.metric} = ${round(headline.value)} on ${headline.n} samples `
      + `against the ${headline.reference.images} ${headline.reference.split} images of ${headline.reference.dataset} `
      + `(Fréchet distance in the features of this project's ${headline.features} classifier; not FID).`,
  ].join('\n\n');
}

/** A tuning run: its preset, the checkpoint it started from, its ECT schedule and optimiser, its length, and its in-run evaluations. */
export function tuningRunMarkdown(run: RunRecord): string {
  const cfg = run.config;
  const last = run.metrics[run.metrics.length - 1];
  const ema = cfg.ema.beta !== undefined ? `EMA ${cfg.ema.beta}` : `EMA half-life ${cfg.ema.halfLifeKimg} kimg`;
  const evaluations = cfg.evalEvery > 0
    ? `In-run evaluations ${(cfg.evalGrowth ?? 1) > 1 ? `at ${cfg.evalEvery} kimg and every factor ${cfg.evalGrowth} beyond` : `every ${cfg.evalEvery} kimg`}: ${cfg.evalN} samples against the ${cfg.evalSplit} images.`
    : 'No in-run evaluations.';
  return `**ECT run \`${run.id}\`** (\`${repositoryRelativePath(run.dir)}\`): preset \`${cfg.name}\`${cfg.init ? `, tuned from \`${repositoryRelativePath(resolveRunInit(cfg.init, run.dir))}\`` : ''}; `
    + `q = ${cfg.ect.q}, a stage every ${cfg.ect.stageIters} iterations, ${cfg.ect.mapping} mapping, ${cfg.ect.weighting} weighting, `
    + `${cfg.optimizer.name} lr ${cfg.optimizer.lr}, ${ema}, dropout ${cfg.net.dropout}, batch ${cfg.batch}; `
    + `${last ? `${last.iter} of ${cfg.iters} iterations (${round(Number(last.kimg))} kimg)` : `${cfg.iters} iterations planned, none logged`}. ${evaluations}`;
}
