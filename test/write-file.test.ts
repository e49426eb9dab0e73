/**
 * A full disk: writes name their file and the problem, metrics rows are appended whole or not at all and a torn
 * last row is dropped, locks are never left empty and an unreadable lock is taken over. The disk is made to fill
 * by a stand-in for fs.writeSync / fs.writeFileSync that writes part of its bytes and then fails with ENOSPC.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { appendWhole, writeError, writeFileAtomic, writeFileNamed } from '../lib/write-file';
import { appendMetricsRow, readMetrics, truncateMetrics } from '../lib/train/metrics-log';
import { acquireRunLock } from '../lib/runs/lock';
import { LOCK_FILE } from '../lib/runs/folder';

const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ect-write-'));

function noSpace(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
}

/** Runs `body` with a disk that takes `room` more bytes (through fs.writeSync and fs.writeFileSync), then fills. */
function withFullDisk<T>(room: number, body: () => T): T {
  // the module object itself: `import * as fs` gives read-only bindings of it
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mutable = require('node:fs') as { writeSync: unknown; writeFileSync: unknown };
  const { writeSync } = fs;
  const { writeFileSync } = fs;
  let left = room;
  mutable.writeSync = (fd: number, buffer: Buffer | string, offset?: number, length?: number, position?: number | null) => {
    const bytes = typeof buffer === 'string' ? Buffer.from(buffer) : buffer.subarray(offset ?? 0, (offset ?? 0) + (length ?? buffer.length - (offset ?? 0)));
    if (left <= 0) throw noSpace();
    const n = Math.min(left, bytes.length);
    left -= n;
    return writeSync(fd, bytes, 0, n, position ?? null);
  };
  mutable.writeFileSync = (file: string, data: string | Uint8Array) => {
    const bytes = Buffer.from(data);
    const fd = fs.openSync(file, 'w');
    try {
      writeSync(fd, bytes, 0, Math.min(left, bytes.length));
    } finally {
      fs.closeSync(fd);
    }
    if (bytes.length > left) { left = 0; throw noSpace(); }
    left -= bytes.length;
  };
  try {
    return body();
  } finally {
    mutable.writeSync = writeSync;
    mutable.writeFileSync = writeFileSync;
  }
}

describe('writes on a full disk', () => {
  it('name the file and the problem (Node says only "ENOSPC ... write")', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a.txt');
    assert.throws(() => withFullDisk(3, () => writeFileNamed(file, 'hello')), (err: Error) => {
      assert.equal(err.message, `cannot write ${file}: no space left on the device (ENOSPC)`);
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      return true;
    });
    assert.match(writeError('x.csv', Object.assign(new Error('EROFS'), { code: 'EROFS' })).message, /^cannot write x\.csv: the file system is read-only \(EROFS\)$/);
    // the real device that is always full
    if (fs.existsSync('/dev/full')) assert.throws(() => writeFileNamed('/dev/full', 'x'), /^Error: cannot write \/dev\/full: no space left on the device \(ENOSPC\)$/);
    fs.rmSync(dir, { recursive: true });
  });

  it('atomic writes leave the old file and no temporary file', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'config.json');
    writeFileAtomic(file, '{"old": true}\n');
    assert.throws(() => withFullDisk(5, () => writeFileAtomic(file, '{"new": true, "longer": "than the room left"}\n')), /cannot write .*config\.json: no space left/);
    assert.equal(fs.readFileSync(file, 'utf8'), '{"old": true}\n');
    assert.deepEqual(fs.readdirSync(dir), ['config.json']);
    fs.rmSync(dir, { recursive: true });
  });

  it('appends whole lines or nothing: a row cut short by the disk is cut back', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'log.csv');
    fs.writeFileSync(file, 'a,b\n1,2\n');
    assert.throws(() => withFullDisk(4, () => appendWhole(file, '3,4444444\n')), /cannot write .*log\.csv: no space left/);
    assert.equal(fs.readFileSync(file, 'utf8'), 'a,b\n1,2\n');
    appendWhole(file, '3,4\n');
    assert.equal(fs.readFileSync(file, 'utf8'), 'a,b\n1,2\n3,4\n');
    fs.rmSync(dir, { recursive: true });
  });
});

describe('metrics.csv with a torn last row', () => {
  const header = 'iter,kimg,loss,lr,stage,img_per_s,wall_s';

  it('is read without the torn row, which a resume drops (saying so) before appending', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'metrics.csv');
    fs.writeFileSync(file, `${header}\n1,0.004,2.5,0.001,0,100,1\n2,0.008,2.4,0.0`);
    const read = readMetrics(file);
    assert.equal(read.rows.length, 1);
    assert.equal(read.torn, '2,0.008,2.4,0.0');
    const said = truncateMetrics(file, 1);
    assert.match(said ?? '', /metrics\.csv: dropped its torn last line "2,0\.008,2\.4,0\.0"/);
    assert.equal(fs.readFileSync(file, 'utf8'), `${header}\n1,0.004,2.5,0.001,0,100,1\n`);
    assert.equal(truncateMetrics(file, 1), undefined, 'nothing torn any more');
    fs.rmSync(dir, { recursive: true });
  });

  it('is replaced, not continued, when a row is appended after it', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'metrics.csv');
    fs.writeFileSync(file, `${header}\n1,0.004,2.5,0.001,0,100,1\n2,0.0`);
    appendMetricsRow(file, { iter: 2, kimg: 0.008, loss: 2.4, lr: 0.001, stage: 0, img_per_s: 100, wall_s: 2 });
    assert.deepEqual(readMetrics(file).rows.map((r) => r.iter), ['1', '2']);
    assert.equal(readMetrics(file).torn, undefined);
    fs.rmSync(dir, { recursive: true });
  });

  it('never gets a torn row from a full disk: the append fails whole and the file stays valid', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'metrics.csv');
    appendMetricsRow(file, { iter: 1, kimg: 0.004, loss: 2.5, lr: 0.001, stage: 0, img_per_s: 100, wall_s: 1 });
    const before = fs.readFileSync(file, 'utf8');
    assert.throws(() => withFullDisk(10, () => appendMetricsRow(file, { iter: 2, kimg: 0.008, loss: 2.4, lr: 0.001, stage: 0, img_per_s: 100, wall_s: 2 })),
      /cannot write .*metrics\.csv: no space left on the device/);
    assert.equal(fs.readFileSync(file, 'utf8'), before);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('run locks on a full disk', () => {
  it('leave no lock when the disk is full, and name the lock file', () => {
    const dir = tmpDir();
    assert.throws(() => withFullDisk(10, () => acquireRunLock(dir, 'test')), new RegExp(`cannot write ${path.join(dir, LOCK_FILE)}: no space left`));
    assert.deepEqual(fs.readdirSync(dir), [], 'neither a lock nor its temporary file');
    const lock = acquireRunLock(dir, 'test');
    const holder = JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { pid: number };
    assert.equal(holder.pid, process.pid);
    lock.release();
    fs.rmSync(dir, { recursive: true });
  });

  it('take over an empty or damaged lock (an older version on a full disk), saying so', () => {
    const dir = tmpDir();
    for (const content of ['', '{"pid": 12']) {
      fs.writeFileSync(path.join(dir, LOCK_FILE), content);
      const said: string[] = [];
      const lock = acquireRunLock(dir, 'test', (line) => said.push(line));
      assert.match(said.join('\n'), /taking over its lock .*\.lock, which could not be read \(empty or damaged\)/);
      assert.equal((JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { pid: number }).pid, process.pid);
      lock.release();
      assert.ok(!fs.existsSync(path.join(dir, LOCK_FILE)));
    }
    fs.rmSync(dir, { recursive: true });
  });
});
