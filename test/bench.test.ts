/**
 * The benchmark harness itself (bench/train-step.ts, bench/workloads.ts): its flags, and a --quick smoke run on
 * the tiny shape whose printed report must have every row and column. No figure is asserted: timings are the
 * benchmark's business, on an idle machine.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { markdownTable, parseFlags, precisionRatioTable, precisionRatios, threadWaitSummary, unitsFor, unitsOf } from '../bench/train-step';
import { SMOKE_SHAPES } from '../bench/ect-step';
import { classifierFlopsPerImage, workloadFlopsPerImage, workloadProblem, WORKLOADS } from '../bench/workloads';
import { BENCH_SHAPES } from '../bench/ect-step';
import { formatVerbose, groupVerbose, parseVerbose } from '../bench/onednn-verbose';
import { formatReplay, measureReplay, measureWaits, opKind, parseProfileFlags, PROFILE_USAGE } from '../bench/profile-step';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../lib/backend/select';
import { onednnAddon } from '../lib/backend/onednn';
import { accountWaits, formatWaits, scheduleDelta } from '../bench/step-waits';
import { STEP_PRODUCTS, timeProduct } from '../bench/matmul-precision';
import { bf16Support } from '../lib/backend/onednn/precision';
import { readCpuFacts } from '../lib/machine/peak';
import { requireSystemPart } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(ROOT, 'dist', 'bench', 'train-step.js');

describe('benchmark flags and workloads', () => {
  it('--quick picks the smoke shape, every workload, one round and unit, no memory check; explicit flags win', () => {
    const quick = parseFlags(['--quick']);
    assert.deepEqual(quick.configs, Object.keys(SMOKE_SHAPES));
    assert.deepEqual(quick.workloads, [...WORKLOADS]);
    assert.equal(quick.rounds, 1);
    assert.equal(quick.steps, 1);
    assert.equal(quick.memorySteps, 0);
    const explicit = parseFlags(['--quick', '--rounds', '2', '--workloads', 'heun', '--precisions', 'fp32,bf16']);
    assert.equal(explicit.rounds, 2);
    assert.deepEqual(explicit.workloads, ['heun']);
    assert.deepEqual(explicit.precisions, ['fp32', 'bf16']);
    assert.deepEqual(parseFlags([]).workloads, ['train'], 'the default stays the training step alone');
    assert.throws(() => parseFlags(['--workloads', 'sample']), /unknown workload 'sample'/);
    assert.throws(() => parseFlags(['--precisions', 'fp16']), /unknown precision 'fp16'/);
  });

  it('times 10 res28-ch32 steps on the peer and onednn, 3 on wasm, 1 on cpu; --steps sets every side but cpu', () => {
    const flags = parseFlags([]);
    const steps = unitsOf(flags, 'train', 'res28-ch32');
    assert.equal(steps, 10);
    assert.deepEqual(['onednn', 'wasm', 'cpu'].map((b) => unitsFor(b, flags, 'train', 'res28-ch32', steps)), [10, 3, 1]);
    assert.equal(unitsFor('wasm', flags, '1step', 'res28-ch32', unitsOf(flags, '1step', 'res28-ch32')), 5);
    const given = parseFlags(['--steps', '6']);
    assert.deepEqual(['onednn', 'wasm', 'cpu'].map((b) => unitsFor(b, given, 'train', 'res28-ch32', unitsOf(given, 'train', 'res28-ch32'))), [6, 6, 1]);
  });

  it("sums up the rounds' OpenMP waits", () => {
    assert.equal(threadWaitSummary(['spin (GOMP_SPINCOUNT=30000; x)', 'spin (GOMP_SPINCOUNT=30000; y)', 'sleep (OMP_WAIT_POLICY=PASSIVE; z)']),
      'spin in 2 of 3 rounds, sleep in 1 of 3 rounds');
  });

  it('counts FLOPs per image: 4 passes per training step, 1, 2 and 35 per sampler, the classifier for features', () => {
    const shape = BENCH_SHAPES['res28-ch32'];
    const forward = workloadFlopsPerImage('1step', shape);
    assert.equal(workloadFlopsPerImage('train', shape), 4 * forward);
    assert.equal(workloadFlopsPerImage('2step', shape), 2 * forward);
    assert.equal(workloadFlopsPerImage('heun', shape), 35 * forward);
    // 28x28x16 3x3 conv on 1 channel, 14x14x32 3x3 conv on 16, 7*7*32 -> 128 dense: 2 flops per multiply-add
    assert.equal(classifierFlopsPerImage(), 2 * (28 * 28 * 16 * 9 + 14 * 14 * 32 * 9 * 16 + 7 * 7 * 32 * 128));
    assert.match(workloadProblem('features', BENCH_SHAPES['res32-ch64']) ?? '', /28x28x1 images/);
    assert.equal(workloadProblem('features', shape), null);
  });

  it('bf16 over fp32: per round for each backend and the peer, median and min-max; rounds missing a side left out', () => {
    const row = (backend: string, precision: 'fp32' | 'bf16', rounds: Array<number | null>, workload: 'train' | 'heun' = 'train') => ({
      backend, config: 'tiny', workload, precision, roundImgPerSec: rounds,
      imgPerSec: rounds.filter((v): v is number => v !== null).sort((a, b) => a - b)[1],
    });
    const ratios = precisionRatios([
      row('onednn', 'fp32', [100, 120, 110]), row('onednn', 'bf16', [150, 150, null]),
      row('pytorch (peer)', 'fp32', [50, 40, 60]), row('pytorch (peer) bf16', 'bf16', [100, 60, 90]),
      row('onednn', 'bf16', [10, 10, 10], 'heun'),  // no fp32 row: no ratio
    ]);
    assert.equal(ratios.length, 2);
    const ours = ratios.find((r) => r.backend === 'onednn')!;
    assert.deepEqual(ours.roundRatios, [1.5, 1.25, null]);
    assert.equal(ours.median, 1.375);
    assert.deepEqual(ours.range, [1.25, 1.5]);
    const peer = ratios.find((r) => r.backend === 'pytorch (peer)')!;
    assert.deepEqual(peer.roundRatios, [2, 1.5, 1.5]);
    assert.equal(peer.median, 1.5);
    assert.equal(peer.ofMedians, 90 / 50);
    const table = precisionRatioTable(ratios).split('\n');
    assert.equal(table.length, 4);
    assert.match(table[2], /^\| onednn \| tiny \| training step \| 1\.38x \(1\.25-1\.50\) \| 1\.36x \| 1\.50, 1\.25, - \|$/);
    assert.equal(precisionRatioTable([]), '');
  });

  it('the table has a precision, workload and RSS-vs-PyTorch column', () => {
    const table = markdownTable([{ backend: 'onednn', config: 'tiny', workload: 'heun', precision: 'bf16', imgPerSec: 2, rssToTorch: 0.5, note: 'x' }]);
    assert.match(table.split('\n')[0], /\| backend \| precision \| config \| workload \| img\/s \(median\) \|.*\| RSS vs PyTorch \|/);
    assert.match(table.split('\n')[2], /^\| onednn \| bf16 \| tiny \| Heun-35 generation \| 2\.00 \|.*\| 0\.50x \|/);
  });
});

describe('benchmark --quick smoke run', function () {
  this.timeout(15 * 60_000);

  before(function () {
    requireSystemPart(this, 'native', 'torch');
  });

  it('prints a report with a peer row and an onednn row for every workload and precision, and writes it', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-bench-'));
    try {
      const run = spawnSync(process.execPath, [SCRIPT, '--quick', '--workloads', '1step,heun,features', '--precisions', 'fp32,bf16', '--out', out],
        { encoding: 'utf8', timeout: 14 * 60_000 });
      assert.equal(run.status, 0, run.stderr);
      const lines = run.stdout.split('\n');
      assert.ok(lines.some((l) => /^\*\*--quick smoke run/.test(l)), 'the report says it is a smoke run');
      assert.ok(lines.some((l) => /^fp32 peak: /.test(l)) && lines.some((l) => /^bf16 peak: /.test(l)));
      // the machine line names the microarchitecture (two EPYC generations both call themselves 'AMD EPYC')
      if (/^(x64|ia32)$/.test(os.arch()) && fs.existsSync('/proc/cpuinfo')) assert.ok(lines.some((l) => /^Machine: .*\(.*family 0x[0-9a-f]+.*model 0x[0-9a-f]+.*\), \d+ logical CPUs/.test(l)), lines.slice(0, 6).join('\n'));
      assert.ok('cpuArch' in JSON.parse(fs.readFileSync(path.join(out, fs.readdirSync(out).find((f) => f.endsWith('.json'))!), 'utf8')).machine);
      assert.ok(lines.some((l) => /^Code: commit ([0-9a-f]{12}( \+ local changes)?|not a git checkout) /.test(l)), 'the report names the code it ran');
      const header = lines.findIndex((l) => l.startsWith('| backend | precision |'));
      assert.ok(header >= 0, 'a table');
      const columns = lines[header].split('|').length;
      const tableEnd = lines.findIndex((l, i) => i > header && !l.startsWith('|'));
      const rows = lines.slice(header + 2, tableEnd);
      for (const row of rows) assert.equal(row.split('|').length, columns, `row with a wrong column count: ${row}`);
      for (const workload of ['1-step generation', 'Heun-35 generation', 'features + fd']) {
        for (const precision of ['fp32', 'bf16']) {
          const of = rows.filter((r) => r.includes(`| ${precision} | tiny | ${workload} |`));
          assert.equal(of.length, 2, `${workload} ${precision}: a peer row and an onednn row`);
          assert.ok(of.some((r) => r.startsWith('| pytorch (peer)')), `${workload} ${precision}: peer row`);
          // our fp32 row is measured; a bf16 row is measured or says why not (a CPU without bf16)
          const ours = of.find((r) => r.startsWith('| onednn'))!;
          if (precision === 'fp32') assert.match(ours, /\| \d+\.\d\dx \| 1 \|/, `a ratio to the peer: ${ours}`);
          else assert.match(ours, /\| \d+\.\d\dx \| 1 \||refused: this CPU has no bf16 instructions/, ours);
        }
      }
      const files = fs.readdirSync(out);
      assert.ok(files.includes('train-step-latest.md'));
      const json = JSON.parse(fs.readFileSync(path.join(out, files.find((f) => f.endsWith('.json'))!), 'utf8'));
      assert.equal(json.quick, true);
      assert.match(json.code, /^[0-9a-f]{12}|^not a git checkout$/);
      assert.deepEqual(json.precisions, ['fp32', 'bf16']);
      assert.ok(json.roundsByConfig.tiny[0].workloads.heun.order.length === 4, 'peer and onednn in both precisions in the round');
      // bf16 over fp32: the peer always (autocast), ours where the CPU has bf16
      assert.ok(json.precisionRatios.some((r: { backend: string; workload: string }) => r.backend === 'pytorch (peer)' && r.workload === 'heun'));
      assert.ok(lines.some((l) => /^bf16 over fp32, the same backend in the same round/.test(l)), 'the report has the bf16 over fp32 table');
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('oneDNN verbose log summary', () => {
  const log = [
    'onednn_verbose,info,oneDNN v2.6.3 (commit N/A)',
    'onednn_verbose,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support',
    'onednn_verbose,info,prim_template:operation,engine,primitive,implementation,prop_kind,memory_descriptors,attributes,auxiliary,problem_desc,exec_time',
    'onednn_verbose,exec,cpu,convolution,brgconv:avx512_core_bf16,forward_training,src_bf16::blocked:acdb:f0 wei_bf16:p:blocked:AcdB16a16b2a:f0 bia_f32::blocked:a:f0 dst_f32::blocked:acdb:f0,,alg:convolution_direct,mb64_ic32oc32_ih28oh28kh3sh1dh0ph1_iw28ow28kw3sw1dw0pw1,1.5',
    'onednn_verbose,exec,cpu,convolution,brgconv:avx512_core_bf16,forward_training,src_bf16::blocked:acdb:f0 wei_bf16:p:blocked:AcdB16a16b2a:f0 bia_f32::blocked:a:f0 dst_f32::blocked:acdb:f0,,alg:convolution_direct,mb64_ic64oc64_ih14oh14kh3sh1dh0ph1_iw14ow14kw3sw1dw0pw1,2.5',
    'dnnl_verbose,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:cdba:f0 dst_bf16:p:blocked:AcdB16a16b2a:f0,,,32x32x3x3,0.25',
    'some other line, not a log line',
  ].join('\n');

  it('parses info and execution lines (both prefixes, padded descriptors) and groups them by implementation', () => {
    const parsed = parseVerbose(log);
    assert.deepEqual(parsed.info, ['oneDNN v2.6.3 (commit N/A)', 'cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support']);
    assert.equal(parsed.execs.length, 3);
    assert.deepEqual(parsed.execs[0].tensors.wei, { type: 'bf16', layout: 'AcdB16a16b2a(p)' });
    assert.deepEqual(parsed.execs[2].tensors.src, { type: 'f32', layout: 'cdba' });
    const groups = groupVerbose(parsed.execs);
    assert.equal(groups.length, 2);
    assert.deepEqual([groups[0].calls, groups[0].ms, groups[0].largest], [2, 4, 'mb64_ic64oc64_ih14oh14kh3sh1dh0ph1_iw14ow14kw3sw1dw0pw1']);
    assert.equal(groups[0].io, 'src bf16 acdb, wei bf16 AcdB16a16b2a(p), bia f32 a, dst f32 acdb');
    const text = formatVerbose(parsed, 'log');
    assert.match(text, /convolution +2 +4\.00 +94\.1%/);
    assert.match(text, /reorder +1 +0\.25 +5\.9%/);
  });
});

describe('step waits: native floor, waiting and JavaScript', () => {
  const step = (wallMs: number, times: number[]) => ({ wallMs, calls: times.map((ms, i) => ({ fn: i % 2 ? 'binary' : 'convForward', ms })) });

  it('takes each call\'s fastest time over the steps as its work and the rest as waiting', () => {
    const a = accountWaits([step(20, [5, 1, 6, 1]), step(25, [9, 1, 5, 2]), step(18, [5, 1, 5, 1])]);
    assert.equal(a.callsPerStep, 4);
    assert.equal(a.floorMs, 12);  // 5 + 1 + 5 + 1
    assert.deepEqual(a.perStep.map((s) => s.nativeMs), [13, 17, 12]);
    assert.deepEqual(a.perStep.map((s) => s.excessMs), [1, 5, 0]);
    assert.deepEqual(a.perStep.map((s) => s.outsideMs), [7, 8, 6]);
    const conv = a.byFunction.find((f) => f.fn === 'convForward');
    const binary = a.byFunction.find((f) => f.fn === 'binary');
    assert.deepEqual(conv, { fn: 'convForward', calls: 2, floorMs: 10, excessMs: 1 });  // excesses 1, 4, 0: median 1
    assert.deepEqual(binary, { fn: 'binary', calls: 2, floorMs: 2, excessMs: 0 });     // excesses 0, 1, 0
    assert.equal(a.byFunction[0].fn, 'convForward', 'largest floor first');
    const text = formatWaits('test', a, 12e9, 2000, [{ tid: 7, runMs: 30, waitMs: 3 }]);
    assert.match(text, /native floor \(each call's fastest time, summed\): 12\.0 ms, 1000 GFLOP\/s at it \(50\.0% of the measured 2000 GFLOP\/s peak\)/);
    assert.match(text, /thread 7 +10\.0 \/ +1\.0/);
  });

  it('refuses steps that made different calls, or a single step', () => {
    assert.throws(() => accountWaits([step(1, [1, 1])]), /at least 2 timed steps/);
    assert.throws(() => accountWaits([step(1, [1, 1]), step(1, [1, 1, 1])]), /step 1 made 3 native calls, step 0 made 2/);
    const swapped = step(1, [1, 1]);
    swapped.calls.reverse();
    assert.throws(() => accountWaits([step(1, [1, 1]), swapped]), /call 0 of step 1 is binary, of step 0 convForward/);
  });

  it('threads\' scheduler times are differences of two readings, busiest first, idle threads left out', () => {
    const before = new Map([[1, { runNs: 1e6, waitNs: 0 }], [2, { runNs: 5e6, waitNs: 1e6 }], [3, { runNs: 2e6, waitNs: 0 }]]);
    const after = new Map([[1, { runNs: 9e6, waitNs: 2e6 }], [2, { runNs: 6e6, waitNs: 1e6 }], [3, { runNs: 2e6, waitNs: 0 }], [4, { runNs: 3e6, waitNs: 5e5 }]]);
    assert.deepEqual(scheduleDelta(before, after), [
      { tid: 1, runMs: 8, waitMs: 2 }, { tid: 4, runMs: 3, waitMs: 0.5 }, { tid: 2, runMs: 1, waitMs: 0 },
    ]);
  });
});

describe('profile-step flags', () => {
  it('reads the backend, config, modes and values; refuses unknown flags, missing values and extra words', () => {
    const flags = parseProfileFlags(['wasm', 'res28-ch16', '--precision', 'bf16', '--waits', '4', '--verbose']);
    assert.equal(flags.backend, 'wasm');
    assert.equal(flags.config, 'res28-ch16');
    assert.equal(flags.precision, 'bf16');
    assert.equal(flags.waits, 4);
    assert.equal(flags.verbose, true);
    assert.equal(flags.replay, undefined);
    const defaults = parseProfileFlags(['--replay', '3']);
    assert.deepEqual([defaults.backend, defaults.config, defaults.precision, defaults.replay], ['onednn', 'res28-ch32', 'fp32', 3]);
    assert.throws(() => parseProfileFlags(['--wait', '3']), /unknown flag --wait \(--help lists the flags\)/);
    assert.throws(() => parseProfileFlags(['onednn', '--waits']), /--waits needs a value/);
    assert.throws(() => parseProfileFlags(['--waits', '--verbose']), /--waits needs a value/);
    assert.throws(() => parseProfileFlags(['--waits', '1']), /--waits must be a number of steps, 2 or more, got '1'/);
    assert.throws(() => parseProfileFlags(['--replay', 'x']), /--replay must be a positive number of steps/);
    assert.throws(() => parseProfileFlags(['onednn', 'res28-ch16', 'extra']), /at most a backend and a config/);
    for (const flag of ['--precision', '--verbose', '--peer', '--compare', '--time', '--waits', '--replay', '--python', '--help']) {
      assert.ok(PROFILE_USAGE.includes(flag), `--help explains ${flag}`);
    }
  });
});

describe('profile op kinds', () => {
  it('sorts kernels into op kinds', () => {
    const kinds = ['Conv2DBackpropFilter', 'EctConv2DSameGrad', '_FusedMatMul', 'EctGroupNormGrad', 'EctUpsample2x', 'EctMomentUpdate', 'Sum', 'Transpose',
      'Multiply', 'Softmax', 'Unheard'].map(opKind);
    assert.deepEqual(kinds, ['convolution', 'convolution', 'matmul', 'normalisation', 'resampling', 'optimiser/EMA', 'reduction', 'data movement', 'elementwise',
      'elementwise', 'other']);
  });
});

describe('profile-step --waits and --replay on the onednn backend', function () {
  let previous = 'cpu';
  before(async function () {
    requireSystemPart(this, 'native');
    previous = tf.getBackend() ?? 'cpu';
    await initBackend('onednn');
  });
  after(async () => { await tf.setBackend(previous); });

  it('--waits sees the same calls in every step; --replay runs one step\'s calls again and leaves the addon as it was', async () => {
    const shape = SMOKE_SHAPES.tiny;
    const addon = onednnAddon() as unknown as Record<string, unknown>;
    const before = { ...addon };
    const tensors = tf.memory().numTensors;
    const { account } = await measureWaits(shape, 2, 'fp32', 2, false);
    assert.ok(account.callsPerStep > 20 && account.floorMs > 0, `${account.callsPerStep} calls, floor ${account.floorMs}`);
    assert.ok(account.byFunction.some((f) => f.fn === 'convForward') && account.byFunction.some((f) => f.fn === 'convBackward'));
    const replay = await measureReplay(shape, 2);
    assert.equal(replay.calls, account.callsPerStep, 'the recorded step made the calls every timed step made');
    assert.equal(replay.replayMs.length, 2);
    assert.ok([...replay.eagerMs, ...replay.replayMs].every((ms) => ms > 0 && Number.isFinite(ms)));
    assert.match(formatReplay('tiny', replay, 1e9, 100), /native replay +median [\d.]+ ms \([\d.]+-[\d.]+\), \d+ GFLOP\/s, [\d.]+% of the measured 100 GFLOP\/s peak/);
    for (const [name, fn] of Object.entries(before)) assert.equal(addon[name], fn, `addon.${name} is the original again`);
    assert.equal(tf.memory().numTensors, tensors, 'the trainers were freed');
  });
});

describe('matmul-precision: float32 against bf16 products', function () {
  before(function () {
    requireSystemPart(this, 'native');
    if (!bf16Support(readCpuFacts().flags).ok) this.skip();  // no bf16 instructions: nothing to compare
  });

  it('times a product in both precisions (alternating) and lists the step\'s products with their shapes', () => {
    const { fp32Ms, bf16Ms } = timeProduct({ m: 32, k: 16, n: 8, transposeA: true, what: 'test' }, 3, 2);
    assert.ok(fp32Ms > 0 && bf16Ms > 0 && Number.isFinite(fp32Ms) && Number.isFinite(bf16Ms), `${fp32Ms} / ${bf16Ms}`);
    // the listed products are those of a res28-ch32 step at batch 64: pixel counts of its resolutions, or the batch
    for (const p of STEP_PRODUCTS) assert.ok([64, 64 * 28 * 28, 64 * 14 * 14, 64 * 7 * 7].includes(p.transposeA ? p.k : p.m), p.what);
  });
});
