/** The test tiers: the unit tier's list (.mocharc.unit.js) and the reporter that prints each file's duration. */
import { strict as assert } from 'assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import FileDurations from './file-durations';

const root = path.resolve(__dirname, '..', '..');

describe('test tiers', () => {
  it('the unit tier names existing test files that need no dataset, browser, Jupyter, torch or cluster', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const unit = require(path.join(root, '.mocharc.unit.js')) as { unitFiles: string[]; spec: string[] };
    assert.ok(unit.unitFiles.length >= 10, `${unit.unitFiles.length} files`);
    for (const name of unit.unitFiles) {
      const source = path.join(root, 'test', `${name}.test.ts`);
      assert.ok(fs.existsSync(source), `${source} is missing`);
      const parts = [...fs.readFileSync(source, 'utf8').matchAll(/requireSystemPart\(this, ([^)]*)\)/g)].map((m) => m[1]);
      // the oneDNN addon is built by npm install itself; anything else is a system part the unit tier must not need
      assert.deepEqual(parts.filter((p) => p !== "'native'"), [], `${name} needs ${parts.join(', ')}`);
      if (name !== 'test-tiers') assert.doesNotMatch(fs.readFileSync(source, 'utf8'), /launchChromium|spawnSync\(/, `${name} starts a browser or a process`);
    }
    assert.equal(unit.spec.length, unit.unitFiles.length);
  });

  it('prints one duration line per file, slowest first, under their sum', () => {
    const lines = FileDurations.lines(new Map([[path.join(root, 'dist/test/a.test.js'), 1.25], [path.join(root, 'dist/test/b.test.js'), 12]]), root);
    assert.equal(lines[0], 'test file durations (2 files, 13.3 s):');
    assert.match(lines[1], /^ +12\.0 s {2}dist\/test\/b\.test\.js$/);
    assert.match(lines[2], /^ +1\.3 s {2}dist\/test\/a\.test\.js$/);
  });
});
