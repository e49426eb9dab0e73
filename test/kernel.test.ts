/**
 * Each checkout's own Jupyter kernel (scripts/register-kernel.js, scripts/jupyter.js): a name derived from the checkout,
 * kernel specs under its build/jupyter that JUPYTER_PATH puts first, so a notebook naming `tslab` runs the tslab of the
 * checkout it runs from, whatever other clones registered; `npm run jupyter` adds --allow-root as root.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { requireSystemPart } from './helpers';

const root = path.resolve(__dirname, '..', '..');
// plain JavaScript scripts shared with npm
// eslint-disable-next-line @typescript-eslint/no-require-imports
const kernels = require(path.join(root, 'scripts', 'register-kernel.js')) as {
  checkoutKernelName(checkout?: string): string;
  writeCheckoutKernels(checkout?: string): { dir: string; names: string[] };
  jupyterEnv(env?: NodeJS.ProcessEnv, checkout?: string): NodeJS.ProcessEnv;
  listedKernels(python: string, env?: NodeJS.ProcessEnv): Record<string, { binary: string; dir: string }>;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const jupyter = require(path.join(root, 'scripts', 'jupyter.js')) as { jupyterArgs(isRoot: boolean, extra?: string[]): string[] };
const PYTHON = process.env.ECT_PYTHON ?? '/usr/bin/python3';

/** A second checkout: its own folder whose tslab is the real one, run with a variable saying which checkout it is. */
function fakeCheckout(base: string, name: string): string {
  const checkout = path.join(base, name);
  fs.mkdirSync(path.join(checkout, 'node_modules', '.bin'), { recursive: true });
  const binary = path.join(checkout, 'node_modules', '.bin', 'tslab');
  fs.writeFileSync(binary, `#!/bin/sh\nECT_TEST_CHECKOUT=${name} exec ${JSON.stringify(path.join(root, 'node_modules', '.bin', 'tslab'))} "$@"\n`);
  fs.chmodSync(binary, 0o755);
  return checkout;
}

describe('kernels: one per checkout', function () {
  this.timeout(300000);
  let base: string;
  before(() => { base = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-kernels-')); });
  after(() => fs.rmSync(base, { recursive: true, force: true }));

  it('derives a kernel name from the checkout: stable, and different for clones of the same folder name', () => {
    const a = path.join(base, 'one', 'ect-workbench');
    const b = path.join(base, 'two', 'ect-workbench');
    assert.match(kernels.checkoutKernelName(a), /^ect-tslab-ect-workbench-[0-9a-f]{8}$/);
    assert.equal(kernels.checkoutKernelName(a), kernels.checkoutKernelName(a));
    assert.notEqual(kernels.checkoutKernelName(a), kernels.checkoutKernelName(b));
  });

  it('npm run jupyter adds --allow-root as root only', () => {
    assert.deepEqual(jupyter.jupyterArgs(true), ['notebook', '--no-browser', '--allow-root']);
    assert.deepEqual(jupyter.jupyterArgs(false, ['--port', '9999']), ['notebook', '--no-browser', '--port', '9999']);
    assert.deepEqual(jupyter.jupyterArgs(true, ['--allow-root']), ['notebook', '--no-browser', '--allow-root']);
  });

  it('under each checkout\'s JUPYTER_PATH, `tslab` is that checkout\'s tslab, and a notebook runs on it', function () {
    requireSystemPart(this, 'jupyter');
    const one = fakeCheckout(base, 'clone-one');
    const two = fakeCheckout(base, 'clone-two');
    for (const checkout of [one, two]) {
      const { names } = kernels.writeCheckoutKernels(checkout);
      const listed = kernels.listedKernels(PYTHON, kernels.jupyterEnv(process.env, checkout));
      for (const name of names) assert.equal(listed[name]?.binary, path.join(checkout, 'node_modules', '.bin', 'tslab'), `${name} under ${checkout}`);
    }
    // a notebook naming the kernel `tslab`, executed under the second clone's environment, reports that clone
    const nb = {
      cells: [{ cell_type: 'code', id: 'c1', metadata: {}, execution_count: null, outputs: [], source: ['console.log(`checkout ${process.env.ECT_TEST_CHECKOUT}`);'] }],
      metadata: { kernelspec: { name: 'tslab', display_name: 'TypeScript', language: 'typescript' } },
      nbformat: 4, nbformat_minor: 5,
    };
    const file = path.join(base, 'which.ipynb');
    fs.writeFileSync(file, JSON.stringify(nb));
    const run = spawnSync(process.env.ECT_NBCONVERT ?? 'jupyter-nbconvert', ['--to', 'notebook', '--execute', '--ExecutePreprocessor.kernel_name=tslab', '--output', 'which-out.ipynb', file],
      { cwd: base, encoding: 'utf8', env: { ...kernels.jupyterEnv(process.env, two), PYDEVD_DISABLE_FILE_VALIDATION: '1' } });
    assert.equal(run.status, 0, run.stderr);
    const executed = JSON.parse(fs.readFileSync(path.join(base, 'which-out.ipynb'), 'utf8')) as { cells: Array<{ outputs: Array<{ text?: string[] }> }> };
    assert.match(executed.cells[0].outputs.map((o) => (o.text ?? []).join('')).join(''), /checkout clone-two/);
  });
});
