/** `--init <name>`: a shipped teacher (data/teachers/<name>/) by name, while a path that exists always wins. */
import { strict as assert } from 'assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveInitTarget, shippedTeachers } from '../lib/teachers/shipped';

describe('shipped teachers', () => {
  let root: string;
  let shipped: string;
  let cwd: string;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-shipped-'));
    shipped = path.join(root, 'teachers');
    fs.mkdirSync(path.join(shipped, 'mini-teacher'), { recursive: true });
    fs.mkdirSync(path.join(root, 'work', 'runs', 'own'), { recursive: true });
    cwd = process.cwd();
    process.chdir(path.join(root, 'work'));
  });
  after(() => {
    process.chdir(cwd);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('lists them and finds one by name', () => {
    assert.deepEqual(shippedTeachers(shipped), ['mini-teacher']);
    assert.equal(resolveInitTarget('mini-teacher', shipped), path.join(shipped, 'mini-teacher'));
  });

  it('prefers a path that exists, and leaves other targets as paths from the current directory', () => {
    fs.mkdirSync(path.join(root, 'work', 'mini-teacher'));
    assert.equal(resolveInitTarget('mini-teacher', shipped), path.join(fs.realpathSync(root), 'work', 'mini-teacher'));
    fs.rmdirSync(path.join(root, 'work', 'mini-teacher'));
    assert.equal(resolveInitTarget('runs/own', shipped), path.join(fs.realpathSync(root), 'work', 'runs', 'own'));
    assert.equal(resolveInitTarget('no-such-teacher', shipped), path.join(fs.realpathSync(root), 'work', 'no-such-teacher'));
  });
});
