/** Notebook 05's t_mid study: one path in both modes; full mode reads the committed rows and never recomputes them. */
import { strict as assert } from 'assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { notebookPaths } from '../lib/env';
import { ensureMidTStudy, midTTable, readEvaluationTable, SMALL_MID_T } from '../lib/results';

describe('the t_mid study of notebook 05', () => {
  const demo = { teacher: 'unused', teacherRun: 'unused', student: 'no-such-run' };

  it('full mode returns the committed midt.csv, whose rows make a table ordered by t_mid', async () => {
    const file = await ensureMidTStudy('full', notebookPaths('full'), demo);
    assert.equal(path.relative(path.resolve(__dirname, '..', '..'), file).split(path.sep).join('/'), 'results/long/recipe/midt.csv');
    const table = midTTable(readEvaluationTable(file));
    const midT = table.array('mid_t') as number[];
    assert.ok(midT.length >= 3, `${midT.length} t_mid values`);
    assert.deepEqual([...midT].sort((a, b) => a - b), midT);
  });

  it('full mode names the command when the committed file is missing, and trains or scores nothing', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-midt-'));
    try {
      await assert.rejects(ensureMidTStudy('full', notebookPaths('full', root), demo), /midt\.csv: missing .*ect\.js eval --checkpoint/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('small mode reuses a study it made before, and its miniature spans the paper\'s t_mid', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-midt-'));
    try {
      const paths = notebookPaths('small', root);
      const file = path.join(paths.runs, 'demo', 'midt.csv');
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, 'checkpoint,iter,sampler,mid_t,n,reference,fd_fmnist_2step\nc,6,2step,2,100,x,450\nc,6,2step,0.2,100,x,407\n');
      assert.equal(await ensureMidTStudy('small', paths, demo), file);   // the student 'no-such-run' is never loaded
      assert.deepEqual(midTTable(readEvaluationTable(file)).array('mid_t'), [0.2, 2]);
      assert.ok(SMALL_MID_T[0] < 0.821 && SMALL_MID_T.includes(0.821) && SMALL_MID_T[SMALL_MID_T.length - 1] > 0.821);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
