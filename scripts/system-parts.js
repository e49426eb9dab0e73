#!/usr/bin/env node
/**
 * The one list of system packages the workbench uses, each part with what it is for, which commands need
 * it, what is slower or skipped without it, and how to tell that it is present. scripts/setup.js installs
 * from it, .ci/run reads its package names (`node scripts/system-parts.js packages test`) and the tests
 * skip a suite whose part is missing (test/helpers.ts). ECT_MISSING_PARTS=a,b makes parts look missing
 * (to exercise those paths); CI=true turns a missing part into a failure.
 *
 *   node scripts/system-parts.js [list]              every part, whether it is present, and its packages
 *   node scripts/system-parts.js packages <command>  the Debian packages a command needs, space-separated
 *   node scripts/system-parts.js missing <command>   the parts a command needs that are missing, one per line
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
/** Debian's own Python, where Debian's Jupyter and PyTorch live (a pyenv python3 on PATH does not see them). */
const SYSTEM_PYTHON = process.env.ECT_PYTHON || '/usr/bin/python3';
const FASHION_MNIST_DIRS = [path.join(ROOT, 'data', 'fashion-mnist'), '/usr/share/datasets/fashion-mnist'];
const FASHION_MNIST_STEMS = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];
const ONEDNN_HEADER_DIRS = ['/usr/include/oneapi/dnnl', '/usr/local/include/oneapi/dnnl', process.env.DNNL_INCLUDE_DIR || ''];

/** True when `command` runs (found on PATH and exits 0 with `args`). */
function runs(command, args) {
  const result = spawnSync(command, args, { stdio: 'ignore', timeout: 60000 });
  return !result.error && result.status === 0;
}

/** True when the system Python imports every module named. */
function pythonImports(modules) {
  return fs.existsSync(SYSTEM_PYTHON) && runs(SYSTEM_PYTHON, ['-c', `import ${modules.join(', ')}`]);
}

/** The folder holding all four Fashion-MNIST files (plain or .gz), or undefined. */
function fashionMnistDir() {
  return FASHION_MNIST_DIRS.find((dir) =>
    FASHION_MNIST_STEMS.every((stem) => fs.existsSync(path.join(dir, stem)) || fs.existsSync(path.join(dir, `${stem}.gz`))));
}

/** True when a program is installed: on PATH, or in /usr/sbin where Debian puts daemons (not on a user's PATH). */
function installed(program) {
  const dirs = [...(process.env.PATH || '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/sbin'];
  return dirs.some((dir) => fs.existsSync(path.join(dir, program)));
}

/** The Chromium binary the figure export and browser tests launch (lib/plots/render.ts looks in the same place). */
function chromiumBinary() {
  return process.env.CHROMIUM_PATH || '/usr/bin/chromium';
}

/**
 * The parts. `for` lists the npm scripts that need the part: start (the demo), test, notebooks (npm run
 * notebooks), jupyter (npm run jupyter), bench (npm run bench).
 */
const PARTS = [
  {
    name: 'native',
    what: 'oneDNN headers and a C++ toolchain, to build the oneDNN backend (native/), the fast CPU backend',
    packages: ['libdnnl-dev', 'g++', 'make'],
    for: ['start', 'test', 'notebooks', 'jupyter', 'bench'],
    without: 'training runs on the wasm backend (one thread, about 8x slower: the demo takes about 30 min instead of 3-5) and the onednn tests are skipped',
    present: () => ONEDNN_HEADER_DIRS.some((dir) => dir && fs.existsSync(path.join(dir, 'dnnl.hpp'))) && runs('g++', ['--version']) && runs('make', ['--version']),
  },
  {
    name: 'dataset',
    what: 'Fashion-MNIST (Zalando Research, MIT licence), the dataset of the demo, the tests and the CPU-sized experiments',
    packages: ['dataset-fashion-mnist'],
    for: ['start', 'test', 'notebooks', 'jupyter'],
    without: 'the demo cannot run (or put the four .gz files from github.com/zalandoresearch/fashion-mnist into data/fashion-mnist/) and the tests on the real data are skipped',
    present: () => Boolean(fashionMnistDir()),
  },
  {
    name: 'jupyter',
    what: "Jupyter's nbconvert, nbclient, jupyter-client and ipykernel, to execute the tslab notebooks headlessly",
    packages: ['jupyter-nbconvert', 'python3-nbclient', 'jupyter-client', 'python3-ipykernel'],
    for: ['test', 'notebooks', 'jupyter'],
    without: 'the notebook suite is skipped and `npm run notebooks` cannot run',
    present: () => pythonImports(['nbconvert', 'nbclient', 'jupyter_client', 'ipykernel']) && runs('jupyter-nbconvert', ['--version']),
  },
  {
    name: 'notebook-server',
    what: 'the Jupyter Notebook server, to open the notebooks in a browser',
    packages: ['jupyter-notebook'],
    for: ['jupyter'],
    without: '`npm run jupyter` cannot start (the notebooks still run headlessly with `npm run notebooks`)',
    present: () => pythonImports(['notebook']),
  },
  {
    name: 'chromium',
    what: 'Chromium, to export figures as PNG/SVG and for the browser checks',
    packages: ['chromium'],
    for: ['test', 'notebooks', 'jupyter'],
    without: 'figures are not saved as images and the browser tests are skipped',
    present: () => fs.existsSync(chromiumBinary()),
  },
  {
    name: 'slurm',
    what: "Slurm's controller, node daemon and commands (slurm-wlm) and its MUNGE authentication, to start a one-node test cluster (scripts/slurm-test-cluster.js) for `ect sweep run --executor slurm`",
    packages: ['slurm-wlm', 'munge'],
    for: ['test'],
    without: 'the Slurm sweep tests are skipped (`ect sweep plan`, `status` and `run --executor local` need no Slurm; on a cluster its own Slurm is used)',
    present: () => ['slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'sinfo', 'munged'].every(installed),
  },
  {
    name: 'torch',
    what: "PyTorch for the CPU: the benchmark's peer (bench/peer/ect_step_torch.py) and the writer of the EDM-pickle test fixtures",
    packages: ['python3-torch'],
    for: ['test', 'bench'],
    without: '`npm run bench` reports our speed without the ratio to PyTorch, and the EDM-import tests are skipped',
    present: () => pythonImports(['torch']),
  },
];

/** Parts that ECT_MISSING_PARTS pretends are missing. */
function simulatedMissing() {
  return new Set((process.env.ECT_MISSING_PARTS || '').split(',').map((s) => s.trim()).filter(Boolean));
}

/** The part of that name; throws on an unknown one. */
function part(name) {
  const found = PARTS.find((p) => p.name === name);
  if (!found) throw new Error(`unknown system part '${name}'; known: ${PARTS.map((p) => p.name).join(', ')}`);
  return found;
}

/** True when the part is on this machine (and not simulated missing). */
function isPresent(name) {
  return !simulatedMissing().has(name) && part(name).present();
}

/** The parts an npm script needs. */
function partsFor(command) {
  const needed = PARTS.filter((p) => p.for.includes(command));
  if (!needed.length) throw new Error(`no parts are listed for '${command}'; commands: start, test, notebooks, jupyter, bench`);
  return needed;
}

/** True when this machine can install Debian packages itself: root, a Debian/Ubuntu system, apt-get. */
function canUseApt() {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return isRoot && fs.existsSync('/etc/debian_version') && runs('apt-get', ['--version']);
}

/** The command a user runs to install parts (with sudo when not root). */
function installCommand(parts) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return `${isRoot ? '' : 'sudo '}apt-get install -y ${parts.flatMap((p) => p.packages).join(' ')}`;
}

/** One line naming a missing part, what is lost and the command that installs it (tests print it when they skip). */
function missingLine(name) {
  const p = part(name);
  return `${p.name} missing (${p.what}): ${p.without}. Install: ${installCommand([p])}`;
}

module.exports = { PARTS, SYSTEM_PYTHON, part, partsFor, isPresent, canUseApt, installCommand, missingLine, fashionMnistDir, chromiumBinary };

if (require.main === module) {
  const [verb = 'list', command] = process.argv.slice(2);
  try {
    if (verb === 'packages') {
      console.log(partsFor(command).flatMap((p) => p.packages).join(' '));
    } else if (verb === 'missing') {
      for (const p of partsFor(command)) if (!isPresent(p.name)) console.log(p.name);
    } else if (verb === 'list') {
      for (const p of PARTS) {
        console.log(`${isPresent(p.name) ? 'present' : 'MISSING'}  ${p.name.padEnd(16)} ${p.what}\n${' '.repeat(26)}packages: ${p.packages.join(' ')}; for npm ${p.for.join(', ')}`);
      }
    } else {
      throw new Error(`unknown verb '${verb}'; use list, packages <command> or missing <command>`);
    }
  } catch (error) {
    console.error(`system-parts: ${error.message}`);
    process.exit(2);
  }
}
