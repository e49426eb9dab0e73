/** How the addon's OpenMP workers wait between kernels (lib/backend/onednn/thread-wait.ts): spin on idle cores, else sleep. */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CHOSEN_MARK, SPIN_COUNT, chooseThreadWait, contentionWarning, CoreLoadWatch, describeThreadWait, parseOwnJiffies, parseProcStat,
  sampleOtherBusyCores, teamSize, withoutChosenWait,
} from '../lib/backend/onednn/thread-wait';
import { loadAddon } from '../lib/backend/onednn/addon';

describe('OpenMP thread wait', () => {
  const idle = { env: {}, cpus: 2, threads: 2, otherBusyCores: 0.03 };

  it('spins where no other process used the cores at load, and sleeps where one did or the load is unknown', () => {
    const spin = chooseThreadWait(idle);
    assert.equal(spin.mode, 'spin');
    assert.equal(spin.setting, `GOMP_SPINCOUNT=${SPIN_COUNT}`);
    assert.match(describeThreadWait(spin), /^spin \(GOMP_SPINCOUNT=30000; other processes used 0\.03 of 2 CPUs at load\)$/);
    assert.equal(chooseThreadWait({ ...idle, otherBusyCores: 0.9 }).setting, 'OMP_WAIT_POLICY=PASSIVE');
    assert.equal(chooseThreadWait({ ...idle, otherBusyCores: null }).mode, 'sleep');
    // cores the team leaves free absorb other processes: 8 CPUs, a team of 2, 3 cores busy elsewhere
    assert.equal(chooseThreadWait({ ...idle, cpus: 8, otherBusyCores: 3 }).mode, 'spin');
    assert.equal(chooseThreadWait({ ...idle, cpus: 8, threads: 8, otherBusyCores: 1 }).mode, 'sleep');
  });

  it("follows the environment's own setting, but decides afresh on one a parent process chose", () => {
    for (const env of [{ OMP_WAIT_POLICY: 'ACTIVE' }, { GOMP_SPINCOUNT: '1000' }, { OMP_WAIT_POLICY: 'PASSIVE' }]) {
      const wait = chooseThreadWait({ ...idle, env });
      assert.equal(wait.mode, 'environment');
      assert.equal(wait.setting, Object.entries(env).map(([k, v]) => `${k}=${v}`)[0]);
    }
    const inherited = { GOMP_SPINCOUNT: String(SPIN_COUNT), [CHOSEN_MARK]: `GOMP_SPINCOUNT=${SPIN_COUNT}` };
    assert.equal(chooseThreadWait({ ...idle, env: inherited, otherBusyCores: 1.5 }).mode, 'sleep');
    // a value changed after the parent chose is the user's
    assert.equal(chooseThreadWait({ ...idle, env: { ...inherited, GOMP_SPINCOUNT: '5' } }).mode, 'environment');
  });

  it("gives a child program the environment without the addon's choice, and keeps the user's settings", () => {
    const ours = withoutChosenWait({ PATH: '/bin', GOMP_SPINCOUNT: '30000', [CHOSEN_MARK]: 'GOMP_SPINCOUNT=30000' });
    assert.deepEqual(ours, { PATH: '/bin' });
    const users = withoutChosenWait({ OMP_WAIT_POLICY: 'ACTIVE' });
    assert.deepEqual(users, { OMP_WAIT_POLICY: 'ACTIVE' });
  });

  it('reads the team size from OMP_NUM_THREADS, else every CPU', () => {
    assert.equal(teamSize({ OMP_NUM_THREADS: '3' }, 8), 3);
    assert.equal(teamSize({ OMP_NUM_THREADS: '4,2' }, 8), 4);
    assert.equal(teamSize({ OMP_NUM_THREADS: 'x' }, 8), 8);
    assert.equal(teamSize({}, 2), 2);
  });

  it("parses /proc/stat's busy and total jiffies and a process's own CPU time", () => {
    const stat = 'cpu  100 5 20 1000 7 1 2 3 0 0\ncpu0 50 2 10 500 3 1 1 2 0 0\ncpu1 50 3 10 500 4 0 1 1 0 0\nintr 1\n';
    assert.deepEqual(parseProcStat(stat), { busy: 128, all: 1138, cpus: 2 });
    assert.throws(() => parseProcStat('intr 1\n'), /no cpu line/);
    // a command name with spaces and a parenthesis; utime and stime are the 14th and 15th fields
    const self = '4242 (node (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 37 5 0 0 20 0 11 0 123 456 789';
    assert.equal(parseOwnJiffies(self), 42);
  });

  it("a run's later look at the cores: other processes' jiffies since the last look, less its own", () => {
    // two CPUs; between the looks 200 jiffies passed in all (100 a CPU), 130 busy of which this process took 40
    const files = [
      { stat: 'cpu  100 0 0 900 0 0 0 0 0 0\ncpu0 1\ncpu1 1\n', self: '1 (node) S 1 1 1 0 -1 0 0 0 0 0 10 0' },
      { stat: 'cpu  200 0 30 970 0 0 0 0 0 0\ncpu0 1\ncpu1 1\n', self: '1 (node) S 1 1 1 0 -1 0 0 0 0 0 40 10' },
    ];
    let i = 0;
    const watch = new CoreLoadWatch(() => files[Math.min(i++, files.length - 1)]);
    assert.equal(watch.sample(), 0.9);
    assert.equal(watch.sample(), null);  // no time passed since
    assert.equal(new CoreLoadWatch(() => null).sample(), null);
  });

  it('warns a spinning run once other processes use its cores, and only a spinning run it chose', () => {
    const spin = chooseThreadWait(idle);
    assert.match(contentionWarning(spin, 1.0, 2, 2) ?? '', /other processes are using 1\.0 of 2 CPUs.*OMP_WAIT_POLICY=PASSIVE/);
    assert.equal(contentionWarning(spin, 0.2, 2, 2), null);
    assert.equal(contentionWarning(spin, null, 2, 2), null);
    assert.equal(contentionWarning(spin, 3, 8, 2), null);  // cores the team leaves free
    assert.equal(contentionWarning(chooseThreadWait({ ...idle, otherBusyCores: 1 }), 1.5, 2, 2), null);  // sleeping already
    assert.equal(contentionWarning(chooseThreadWait({ ...idle, env: { OMP_WAIT_POLICY: 'ACTIVE' } }), 1.5, 2, 2), null);
    assert.equal(contentionWarning(undefined, 1.5, 2, 2), null);
  });

  const linux = fs.existsSync('/proc/stat');

  it("measures other processes' CPU use, not its own", function () {
    if (!linux) this.skip();
    const busy = sampleOtherBusyCores(50);
    assert.ok(busy !== null && busy >= 0 && busy <= os.availableParallelism() + 0.5, `read ${busy}`);
  });

  describe('in a process that loads the addon', () => {
    let burners: ChildProcess[] = [];
    afterEach(() => {
      for (const b of burners) b.kill('SIGKILL');
      burners = [];
    });

    /** The wait a fresh process chooses when it loads the addon, with `env` added to this one's. */
    function childChoice(env: NodeJS.ProcessEnv): { wait: string; env: Record<string, string | undefined> } {
      const script = `const { loadAddon } = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'backend', 'onednn', 'addon.js'))});
        const { appliedThreadWait, describeThreadWait } = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'backend', 'onednn', 'thread-wait.js'))});
        const { addon, reason } = loadAddon(); if (!addon) throw new Error(reason);
        console.log(JSON.stringify({ wait: describeThreadWait(appliedThreadWait()),
          env: { OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY, GOMP_SPINCOUNT: process.env.GOMP_SPINCOUNT } }));`;
      // a team of every CPU (a smaller OMP_NUM_THREADS here would leave cores free for the busy loops)
      const childEnv = { ...withoutChosenWait(process.env), ...env };
      delete childEnv.OMP_NUM_THREADS;
      const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: childEnv });
      assert.equal(child.status, 0, child.stderr);
      return JSON.parse(child.stdout.trim().split('\n').pop()!);
    }

    it('sleeps when other processes keep every core busy, and says so', function () {
      if (!linux || !loadAddon().addon) this.skip();
      this.timeout(60_000);
      // a busy loop per CPU, in processes of their own
      for (let i = 0; i < os.availableParallelism(); i++) burners.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);  // let them start
      const choice = childChoice({});
      assert.match(choice.wait, /^sleep \(OMP_WAIT_POLICY=PASSIVE; other processes used \d+\.\d\d of \d+ CPUs at load\)$/);
      assert.equal(choice.env.OMP_WAIT_POLICY, 'PASSIVE');
      assert.equal(choice.env.GOMP_SPINCOUNT, undefined);
    });

    it("takes the environment's setting as it is, without a parent's choice beside it", function () {
      if (!loadAddon().addon) this.skip();
      this.timeout(60_000);
      const choice = childChoice({ OMP_WAIT_POLICY: 'ACTIVE' });
      assert.equal(choice.wait, 'environment (OMP_WAIT_POLICY=ACTIVE; set by the environment)');
      assert.equal(choice.env.OMP_WAIT_POLICY, 'ACTIVE');
      assert.equal(choice.env.GOMP_SPINCOUNT, undefined);
      // a parent's spin count passed down would outrank ACTIVE in libgomp: it goes
      const inherited = childChoice({ OMP_WAIT_POLICY: 'ACTIVE', GOMP_SPINCOUNT: '30000', [CHOSEN_MARK]: 'GOMP_SPINCOUNT=30000' });
      assert.equal(inherited.wait, 'environment (OMP_WAIT_POLICY=ACTIVE; set by the environment)');
      assert.equal(inherited.env.GOMP_SPINCOUNT, undefined);
    });
  });
});
