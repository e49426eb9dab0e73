/** Progress display of a training run: a cli-progress bar on a terminal, periodic log lines elsewhere. */
import * as os from 'os';
import { SingleBar } from 'cli-progress';
import { appliedThreadWait, contentionWarning, CoreLoadWatch, teamSize } from '../lib/backend/onednn/thread-wait';
import type { RunConfig } from '../lib/config/types';
import type { RunHooks } from '../lib/train/launch';
import type { StepStats } from '../lib/train/trainer';
import { watchStopRequests, type StopRequests } from './stop-requests';

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

/** How often a run looks at the other processes' use of the cores (TrainingProgress.watchLoad). */
const LOAD_CHECK_MS = 60_000;

/** Shows iteration, kimg, loss, stage, images/s and ETA. */
export class TrainingProgress {
  private readonly bar: SingleBar | null;
  private started = false;
  private readonly startIteration: number;
  private readonly startTime = Date.now();
  private loadWatch: CoreLoadWatch | null = null;
  private lastLoadCheck = 0;

  constructor(private readonly cfg: RunConfig, startIteration: number, interactive: boolean, private readonly log: (line: string) => void) {
    this.startIteration = startIteration;
    this.bar = interactive ? new SingleBar({
      format: '{bar} {value}/{total} it | {kimg} kimg | loss {loss} | stage {stage} | {ips} img/s | ETA {etaText}',
      barsize: 24, hideCursor: true, etaBuffer: 50, stream: process.stderr,
    }) : null;
  }

  /** Called after every step. */
  update(s: StepStats): void {
    const done = s.iteration - this.startIteration;
    const rate = done / Math.max((Date.now() - this.startTime) / 1000, 1e-9);
    const eta = (s.totalIters - s.iteration) / rate;
    const fields = { kimg: s.kimg.toFixed(s.kimg < 10 ? 2 : 1), loss: s.loss.toPrecision(4), stage: s.stage, ips: s.imgPerSec.toFixed(1), etaText: formatSeconds(eta) };
    if (this.bar) {
      if (!this.started) { this.bar.start(s.totalIters, s.iteration, fields); this.started = true; }
      this.bar.update(s.iteration, fields);
    } else if (s.iteration % this.cfg.logEvery === 0 || s.iteration === s.totalIters) {
      this.log(`iter ${s.iteration}/${s.totalIters} | ${fields.kimg} kimg | loss ${fields.loss} | stage ${fields.stage} | ${fields.ips} img/s | ETA ${fields.etaText}`);
    }
    this.watchLoad();
  }

  /**
   * Once a minute while the addon's OpenMP workers spin (lib/backend/onednn/thread-wait.ts): warns, once, when other
   * processes have come onto the cores since.
   */
  private watchLoad(now = Date.now()): void {
    if (appliedThreadWait()?.mode !== 'spin' || now - this.lastLoadCheck < LOAD_CHECK_MS) return;
    this.lastLoadCheck = now;
    if (!this.loadWatch) {
      this.loadWatch = new CoreLoadWatch();
      return;
    }
    const cpus = os.availableParallelism();
    const warning = contentionWarning(appliedThreadWait(), this.loadWatch.sample(), cpus, teamSize(process.env, cpus));
    if (warning) {
      this.note(`warning: ${warning}`);
      this.lastLoadCheck = Infinity;  // said once
    }
  }

  /** A message between bar updates (checkpoint written, evaluation progress...). */
  note(message: string, transient = false): void {
    if (this.bar && this.started) {
      if (transient) return;  // the bar keeps its line; transient notes only go to logs
      this.bar.stop();
      this.started = false;
    }
    if (!transient || !this.bar) this.log(message);
  }

  /** Ends the bar. */
  stop(): void {
    if (this.bar && this.started) this.bar.stop();
    this.started = false;
  }
}

/**
 * The hooks of a run on the command line: a progress bar (or log lines), and stop requests (Ctrl-C, SIGTERM:
 * cli/stop-requests.ts), after which the loop checkpoints and returns. Pass the command's own `stop` to learn
 * why it stopped (its exit status); without one, each run listens for them while it trains.
 */
export function commandLineHooks(progressBar: boolean, log: (line: string) => void, stop?: StopRequests): RunHooks {
  return {
    log,
    events: ({ cfg, trainer }) => {
      const requests = stop ?? watchStopRequests(log);
      const progress = new TrainingProgress(cfg, trainer.iteration, progressBar && Boolean(process.stderr.isTTY), log);
      return {
        onStep: (s) => progress.update(s),
        onInfo: (m) => progress.note(m),
        onEvalProgress: (label, done, total) => progress.note(`evaluating ${label}: ${done}/${total}`, true),
        shouldStop: () => requests.reason !== null,
        close: () => {
          progress.stop();
          if (!stop) requests.close();
        },
      };
    },
  };
}

/** Progress of a count of images (sampling, scoring): update(done) as they come, stop() at the end. */
export interface CountProgress { update(done: number): void; stop(): void }

/**
 * A cli-progress bar of `total` images with its ETA on a terminal (when `enabled`); elsewhere (a log file, a pipe)
 * a line at each tenth, so that a long job still says how far it is.
 */
export function countProgress(label: string, total: number, enabled: boolean, log: (line: string) => void): CountProgress {
  if (!enabled) return { update: () => undefined, stop: () => undefined };
  if (process.stderr.isTTY) {
    const bar = new SingleBar({ format: `${label} {bar} {value}/{total} images | {ips} img/s | ETA {eta_formatted}`, hideCursor: true, etaBuffer: 20, stream: process.stderr });
    const started = Date.now();
    bar.start(total, 0, { ips: '?' });
    return {
      update: (done) => bar.update(done, { ips: (done / Math.max((Date.now() - started) / 1000, 1e-9)).toFixed(1) }),
      stop: () => bar.stop(),
    };
  }
  const started = Date.now();
  let tenth = 0;
  return {
    update: (done) => {
      if (done * 10 < (tenth + 1) * total) return;
      tenth = Math.floor((done * 10) / total);
      const seconds = (Date.now() - started) / 1000;
      log(`${label} ${done}/${total} images | ${(done / Math.max(seconds, 1e-9)).toFixed(1)} img/s | ETA ${formatSeconds((seconds / done) * (total - done))}`);
    },
    stop: () => undefined,
  };
}
