/**
 * The one list of system parts (scripts/system-parts.js): what each npm script needs, and a suite whose part
 * is missing skipping with one line that names it and its install command, or failing under CI=true.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const partsScript = path.join(root, 'scripts', 'system-parts.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const parts = require(partsScript) as {
  PARTS: Array<{ name: string; what: string; packages: string[]; for: string[]; without: string }>;
  partsFor(command: string): Array<{ name: string }>;
};

/** Runs the fixture suite in a child mocha, outside the repository's .mocharc (so only the fixture runs). */
function runFixture(env: Record<string, string>) {
  const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
  const fixture = path.join(root, 'dist', 'test', 'fixtures', 'needs-jupyter.fixture.js');
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!('CI' in env)) delete childEnv.CI;
  return spawnSync(process.execPath, [mocha, '--reporter', 'spec', fixture], { cwd: os.tmpdir(), encoding: 'utf8', env: childEnv, timeout: 120000 });
}

describe('system parts', function () {
  this.timeout(120000);

  it('lists each part once, with what it is for, its packages and what is lost without it', () => {
    const names = parts.PARTS.map((p) => p.name);
    assert.equal(new Set(names).size, names.length);
    const packages = parts.PARTS.flatMap((p) => p.packages);
    assert.equal(new Set(packages).size, packages.length, 'a package is listed twice');
    for (const p of parts.PARTS) assert.ok(p.what && p.without && p.packages.length && p.for.length, p.name);
    // npm start installs only what the demo needs: no Jupyter, no Chromium
    assert.deepEqual(parts.partsFor('start').map((p) => p.name), ['native', 'dataset']);
    const forTest = parts.partsFor('test').map((p) => p.name);
    for (const name of ['native', 'dataset', 'jupyter', 'chromium']) assert.ok(forTest.includes(name), name);
  });

  it('.ci/run installs the packages of the same list (no second copy)', () => {
    const ciRun = fs.readFileSync(path.join(root, '.ci', 'run'), 'utf8');
    assert.match(ciRun, /node scripts\/system-parts\.js packages test/);
    for (const p of parts.PARTS) for (const pkg of p.packages) assert.ok(!ciRun.includes(pkg), `.ci/run names ${pkg} itself`);
    const printed = spawnSync(process.execPath, [partsScript, 'packages', 'test'], { encoding: 'utf8' });
    assert.equal(printed.status, 0);
    assert.deepEqual(printed.stdout.trim().split(' '), parts.partsFor('test').flatMap((p) => (p as unknown as { packages: string[] }).packages));
  });

  it('ECT_MISSING_PARTS makes a part look missing to `missing <command>`', () => {
    const run = spawnSync(process.execPath, [partsScript, 'missing', 'test'], { encoding: 'utf8', env: { ...process.env, ECT_MISSING_PARTS: 'chromium,jupyter' } });
    assert.equal(run.status, 0);
    const missing = run.stdout.trim().split('\n');
    assert.ok(missing.includes('chromium') && missing.includes('jupyter'), run.stdout);
    const unknown = spawnSync(process.execPath, [partsScript, 'packages', 'deploy'], { encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /no parts are listed for 'deploy'/);
  });

  it('a suite whose part is missing is skipped with one line naming the part and its install command', () => {
    const run = runFixture({ ECT_MISSING_PARTS: 'jupyter' });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    const lines = run.stdout.split('\n').filter((l) => /skipped: jupyter missing/.test(l));
    assert.equal(lines.length, 1, run.stdout);
    assert.match(lines[0], /apt-get install -y jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel/);
    assert.match(run.stdout, /0 passing/);
    assert.match(run.stdout, /1 pending/);
  });

  it('under CI=true a missing part fails the run instead', () => {
    const run = runFixture({ ECT_MISSING_PARTS: 'jupyter', CI: 'true' });
    assert.notEqual(run.status, 0);
    assert.match(run.stdout, /1 failing/);
    assert.match(run.stdout, /CI=true and a system part is missing: jupyter missing/);
  });
});
