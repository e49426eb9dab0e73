/**
 * Mocha's spec reporter, plus how long each test file took (its suites' wall time, hooks included), printed after
 * the summary, slowest first. `.mocharc.json` names it, so `npm test`, `npm run test:unit` and `.ci/run` show it.
 */
import * as path from 'node:path';
import Mocha from 'mocha';

const { EVENT_SUITE_BEGIN, EVENT_SUITE_END, EVENT_RUN_END } = Mocha.Runner.constants;

/** One line per test file, slowest first, under a line with the count and the sum. */
function fileDurationLines(seconds: Map<string, number>, root = process.cwd()): string[] {
  const rows = [...seconds.entries()].sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((sum, [, s]) => sum + s, 0);
  return [
    `test file durations (${rows.length} files, ${total.toFixed(1)} s):`,
    ...rows.map(([file, s]) => `${s.toFixed(1).padStart(8)} s  ${path.relative(root, file)}`),
  ];
}

class FileDurations extends Mocha.reporters.Spec {
  static readonly lines = fileDurationLines;

  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    const seconds = new Map<string, number>();
    const started = new Map<Mocha.Suite, number>();
    runner.on(EVENT_SUITE_BEGIN, (suite: Mocha.Suite) => {
      if (suite.file && suite.parent?.root) started.set(suite, Date.now());
    });
    runner.on(EVENT_SUITE_END, (suite: Mocha.Suite) => {
      const start = started.get(suite);
      if (start === undefined || !suite.file) return;
      seconds.set(suite.file, (seconds.get(suite.file) ?? 0) + (Date.now() - start) / 1000);
    });
    // after the spec reporter's own summary (its listener was registered first)
    runner.once(EVENT_RUN_END, () => {
      for (const line of fileDurationLines(seconds)) console.log(line);
    });
  }
}

export = FileDurations;
