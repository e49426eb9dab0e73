/**
 * bf16 mixed precision on the onednn backend: refused where it cannot run, and within tolerances derived from
 * bfloat16's rounding where it runs (single convolutions and their gradients, one whole training step), without
 * leaking tensors; matrix products stay float32 (lib/backend/onednn/precision.ts says why).
 *
 * The tolerances. bfloat16 keeps 8 significant bits (7 stored + the implicit one), so rounding a float32 to it
 * has a relative error of at most u = 2^-8 (round to nearest). A product of two rounded inputs is off by at most
 * (1 + u)^2 - 1 = 2u + u^2 relative, and oneDNN accumulates those products in float32, whose own rounding
 * (2^-24 per addition) is negligible next to u. So every output of a convolution or matrix product obeys
 *   |y_bf16 - y_fp32| <= (2u + u^2) * sum_k |a_k| |b_k|,
 * a per-element bound that holds whatever the data; the right side is the same operation run in fp32 on |a|, |b|.
 * A training step chains such products: a parameter's gradient crosses each product of the student's forward
 * pass at most once going forward and once going back, so its chain is at most D = L / 2 products long, with L
 * the bf16 products the step runs (counted by the addon: the student's forward convolutions, the target pass of
 * the same size and the two gradient products per forward convolution, L = 4 per convolution). Round-to-nearest errors are unbiased and
 * independent, so along a chain they add in quadrature: the step test allows a relative error of 2u sqrt(D) on
 * the loss and on the whole parameter update. A wrong layout, a stale buffer or fp32 silently used (bf16 must
 * change something) fail it; the rounding rule itself (to nearest, ties to even, not truncation, whose errors
 * the bounds above would still admit) is checked on exact cases.
 */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import seedrandom from 'seedrandom';
import { onednnAddon, tryRegisterOnednn } from '../lib/backend/onednn';
import { assertPrecisionAvailable, bf16Support, currentPrecision, withPrecision } from '../lib/backend/onednn/precision';
import { validateRunConfig } from '../lib/config/schema';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { Trainer } from '../lib/train/trainer';
import { flagOverrides } from '../lib/train/launch';
import { CONV_SAME_KERNEL, fusedConv2dSame, fusedGroupNorm, fusedGroupNormConv, normFeedsConvInBf16 } from '../lib/nn/fused';
import { conv2d, groupCount } from '../lib/nn/layers';
import { UNet } from '../lib/nn/unet';
import { TINY_NET, requireSystemPart, tinyRunConfig } from './helpers';
import { compareStepPrecisions, formatComparison } from '../bench/profile-step';
import { SMOKE_SHAPES } from '../bench/ect-step';
import '../lib/tf-gradients';

/** Unit roundoff of bfloat16: 8 significant bits, round to nearest. */
const BF16_U = 2 ** -8;
/** Relative error bound of one product of two bf16-rounded inputs. */
const PRODUCT_BOUND = 2 * BF16_U + BF16_U ** 2;

const ZEN5_FLAGS = ['fpu', 'sse2', 'avx', 'avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16'];
const SAPPHIRE_RAPIDS_FLAGS = ['avx2', 'fma', 'avx512f', 'amx_tile', 'amx_bf16', 'amx_int8'];
const ZEN3_FLAGS = ['fpu', 'sse2', 'avx', 'avx2', 'fma'];
const ZEN4_WITHOUT_BF16 = ['avx2', 'fma', 'avx512f', 'avx512_vnni'];

describe('bf16 precision: where it may run', () => {
  it('is accepted on CPUs with avx512_bf16 or amx_bf16, refused elsewhere with the reason', () => {
    assert.deepEqual(bf16Support(ZEN5_FLAGS), { ok: true, instructions: ['avx512_bf16'] });
    assert.deepEqual(bf16Support(SAPPHIRE_RAPIDS_FLAGS).instructions, ['amx_bf16']);
    for (const flags of [ZEN3_FLAGS, ZEN4_WITHOUT_BF16, []]) {
      const support = bf16Support(flags);
      assert.equal(support.ok, false);
      assert.match(support.reason ?? '', /no bf16 instructions \(neither amx_bf16 nor avx512_bf16/);
    }
  });

  it('assertPrecisionAvailable: fp32 always; bf16 only on onednn with the instructions (flags injected)', () => {
    assert.doesNotThrow(() => assertPrecisionAvailable('fp32', 'wasm', () => ZEN3_FLAGS));
    assert.doesNotThrow(() => assertPrecisionAvailable(undefined, 'cpu', () => []));
    assert.doesNotThrow(() => assertPrecisionAvailable('bf16', 'onednn', () => ZEN5_FLAGS));
    assert.throws(() => assertPrecisionAvailable('bf16', 'onednn', () => ZEN3_FLAGS), /--precision bf16 refused: this CPU has no bf16 instructions/);
    assert.throws(() => assertPrecisionAvailable('bf16', 'wasm', () => ZEN5_FLAGS), /runs on the onednn backend only \(this run uses 'wasm'\)/);
  });

  it('is a config field (default fp32, recorded) and a launcher flag; unknown values are refused', () => {
    assert.equal(tinyRunConfig('tune').precision, 'fp32');
    assert.equal(tinyRunConfig('tune', { precision: 'bf16' }).precision, 'bf16');
    assert.throws(() => validateRunConfig({ ...tinyRunConfig('tune'), precision: 'fp16' }), /precision/);
    const noField: Record<string, unknown> = { ...tinyRunConfig('tune') };
    delete noField.precision;
    assert.doesNotThrow(() => validateRunConfig(noField), 'configs recorded before the field stay valid');
    assert.deepEqual(flagOverrides({ precision: 'bf16' }).map((p) => ({ ...p })), [{ precision: 'bf16' }]);
  });

  it('withPrecision sets the kernels\' precision and restores it, also after a throw', () => {
    assert.equal(currentPrecision(), 'fp32');
    assert.equal(withPrecision('bf16', () => currentPrecision()), 'bf16');
    assert.throws(() => withPrecision('bf16', () => { throw new Error('inside'); }), /inside/);
    assert.equal(currentPrecision(), 'fp32');
  });

  it('a trainer refuses bf16 on a CPU without bf16 instructions (simulated) and on a backend other than onednn', async () => {
    const data = makeSyntheticDataset('train', { count: 8, height: 8, width: 8, channels: 1, seed: 1 });
    const cfg = tinyRunConfig('tune', { precision: 'bf16' });
    const previous = tf.getBackend();
    try {
      await tf.setBackend('cpu');
      await assert.rejects(Trainer.create(cfg, { runDir: null, dataset: data, cpuFlags: () => ZEN5_FLAGS }), /runs on the onednn backend only \(this run uses 'cpu'\)/);
      if ((await tryRegisterOnednn()).ok) {
        await tf.setBackend('onednn');
        await assert.rejects(Trainer.create(cfg, { runDir: null, dataset: data, cpuFlags: () => ZEN3_FLAGS }), /--precision bf16 refused: this CPU has no bf16 instructions/);
      }
    } finally {
      if (previous) await tf.setBackend(previous);
    }
  });
});

/** Inputs of the numeric tests, seeded. */
const rng = seedrandom('bf16-agreement');
/** Float32 values rounded to bfloat16 (to nearest, ties to even; the test's values are normal and finite). */
function roundedToBf16(values: Float32Array): Float32Array {
  const out = Float32Array.from(values);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) bits[i] = (((bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16) << 16) >>> 0;
  return out;
}

function randomTensor(shape: number[], scale = 1): tf.Tensor {
  const values = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (rng() * 2 - 1) * scale);
  return tf.tensor(values, shape);
}

/** Checks |bf16 - fp32| <= PRODUCT_BOUND * magnitude (+ a float32 accumulation slack) element by element; returns the worst ratio to the bound. */
function assertWithinProductBound(what: string, bf16: Float32Array, fp32: Float32Array, magnitude: Float32Array): number {
  let worst = 0;
  let differs = false;
  for (let i = 0; i < fp32.length; i++) {
    const bound = PRODUCT_BOUND * magnitude[i] + 1e-6 * magnitude[i] + 1e-30;
    const error = Math.abs(bf16[i] - fp32[i]);
    if (error !== 0) differs = true;
    assert.ok(error <= bound, `${what}: element ${i}: |${bf16[i]} - ${fp32[i]}| = ${error} > ${bound}`);
    worst = Math.max(worst, error / bound);
  }
  assert.ok(differs, `${what}: bf16 gave exactly the fp32 values, so the bf16 path did not run`);
  return worst;
}

describe('bf16 precision on the onednn backend', function () {
  let previousBackend = 'cpu';

  before(async function () {
    requireSystemPart(this, 'native');
    const status = await tryRegisterOnednn();
    assert.ok(status.ok, `the oneDNN addon does not load: ${status.reason}`);
    if (!bf16Support(readFlags()).ok) {
      console.log('    skipped: this CPU has no bf16 instructions (the refusal is tested above with simulated flags)');
      this.skip();
    }
    previousBackend = tf.getBackend() ?? 'cpu';
    await tf.setBackend('onednn');
  });

  after(async () => {
    await tf.setBackend(previousBackend);
  });

  it('convolutions (forward, input and filter gradients) stay within the per-element bound of bf16 rounding', () => {
    const addon = onednnAddon();
    assert.ok(addon);
    for (const [x, w, stride] of [[[2, 9, 9, 5], [3, 3, 5, 7], 1], [[3, 8, 8, 16], [3, 3, 16, 32], 1], [[2, 8, 8, 8], [1, 1, 8, 24], 2]] as const) {
      tf.tidy(() => {
        const xs = randomTensor([...x]), ws = randomTensor([...w], 0.5), dy = randomTensor([x[0], Math.ceil(x[1] / stride), Math.ceil(x[2] / stride), w[3]]);
        // y and both gradients of sum(conv(x, w) * dy)
        const run = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => {
          const f = (p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, stride, 'same'), d));
          const [gx, gw] = tf.grads(f)([a, b]);
          return [tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, 'same'), gx, gw].map((t) => t.dataSync() as Float32Array);
        };
        const before = addon.bf16Executions();
        const bf16 = withPrecision('bf16', () => run(xs, ws, dy));
        assert.ok(addon.bf16Executions() - before >= 3, 'forward, input gradient and filter gradient all ran in bf16');
        const fp32 = run(xs, ws, dy);
        const magnitude = run(tf.abs(xs), tf.abs(ws), tf.abs(dy));  // sum |a| |b| for each output: the same bilinear maps on |inputs|
        ['forward', 'input gradient', 'filter gradient'].forEach((name, i) => assertWithinProductBound(`conv ${x} * ${w} ${name}`, bf16[i], fp32[i], magnitude[i]));
      });
    }
  });

  it('3x3 and 1x1 filter gradients of the addon\'s own (bf16): run where they apply, agree with float64 sums of the rounded inputs, bias included, the same bits twice; other shapes keep oneDNN\'s', () => {
    const addon = onednnAddon();
    assert.ok(addon);
    const random = seedrandom('own-filter-gradient');
    const values = (n: number) => Float32Array.from({ length: n }, () => random() * 2 - 1);
    // [batch, size, in channels, out channels, stride, filter size]: 16, 32 and 64-wide tiles, two 64-channel tiles, 1x1
    const applies = [[4, 7, 32, 64, 1, 3], [2, 5, 16, 16, 1, 3], [6, 6, 48, 32, 1, 3], [2, 4, 16, 128, 1, 3], [4, 6, 48, 32, 1, 1]];
    // an odd batch, 8 input channels, 48 output channels, a stride of 2: oneDNN's filter gradient
    const fallsBack = [[3, 7, 16, 16, 1, 3], [4, 7, 8, 16, 1, 3], [2, 5, 16, 48, 1, 3], [4, 8, 16, 16, 2, 3]];
    for (const [batch, size, inC, outC, stride, k] of [...applies, ...fallsBack]) {
      const out = Math.ceil(size / stride), taps = k * k;
      // "same" padding: (k - 1) / 2 on each side at stride 1; 0 before and 1 after for 3x3 at stride 2 (even size)
      const padBefore = stride === 1 ? (k - 1) / 2 : 0, padAfter = stride === 1 ? (k - 1) / 2 : 1;
      const g = [batch, size, size, inC, out, out, outC, k, k, stride, stride, 1, 1, padBefore, padBefore, padAfter, padAfter];
      const x = values(batch * size * size * inC), dy = values(batch * out * out * outC), filter = values(taps * inC * outC);
      const run = () => {
        const dfilter = new Float32Array(taps * inC * outC), dbias = new Float32Array(outC);
        addon.convBackward(g, dy, filter, 0, x, null, null, dfilter, dbias, 1);
        return { dfilter, dbias };
      };
      const before = addon.bf16FilterGradientRuns();
      const ours = run();
      const ran: number = addon.bf16FilterGradientRuns() - before;
      const own = applies.some((shape) => shape.join() === [batch, size, inC, outC, stride, k].join());
      assert.equal(ran, own ? 1 : 0, `${g.slice(0, 7)} stride ${stride}: the addon's kernel ${own ? 'runs' : 'does not run'}`);
      if (!own) continue;
      const again = run();
      assert.deepEqual(again.dfilter, ours.dfilter, 'the same bits on a second run');
      assert.deepEqual(again.dbias, ours.dbias);
      // float64 sums of the bf16-rounded inputs; float32 accumulation over at most batch x pixels terms per output
      const rx = roundedToBf16(x), rdy = roundedToBf16(dy);
      const accumulation = batch * size * size * 2 ** -24;
      for (let kh = 0; kh < k; kh++) for (let kw = 0; kw < k; kw++) for (let ci = 0; ci < inC; ci++) for (let co = 0; co < outC; co++) {
        let sum = 0, magnitude = 0;
        for (let n = 0; n < batch; n++) for (let y = 0; y < size; y++) for (let xx = 0; xx < size; xx++) {
          const yi = y + kh - padBefore, xi = xx + kw - padBefore;
          if (yi < 0 || yi >= size || xi < 0 || xi >= size) continue;
          const product = rx[((n * size + yi) * size + xi) * inC + ci] * rdy[((n * size + y) * size + xx) * outC + co];
          sum += product;
          magnitude += Math.abs(product);
        }
        const got = ours.dfilter[((kh * k + kw) * inC + ci) * outC + co];
        assert.ok(Math.abs(got - sum) <= accumulation * magnitude + 1e-30, `dfilter[${kh},${kw},${ci},${co}] of ${g.slice(0, 7)}: ${got} vs ${sum}`);
      }
      for (let co = 0; co < outC; co++) {
        let sum = 0, magnitude = 0;
        for (let i = co; i < rdy.length; i += outC) { sum += rdy[i]; magnitude += Math.abs(rdy[i]); }
        assert.ok(Math.abs(ours.dbias[co] - sum) <= accumulation * magnitude, `dbias[${co}] of ${g.slice(0, 7)}: ${ours.dbias[co]} vs ${sum}`);
      }
      // oneDNN's primitive on the same rounded inputs (ECT_BF16_FILTER_GRADIENT=onednn) agrees to float32 accumulation too
      process.env.ECT_BF16_FILTER_GRADIENT = 'onednn';
      let theirs: { dfilter: Float32Array; dbias: Float32Array };
      try {
        const count = addon.bf16FilterGradientRuns();
        theirs = run();
        assert.equal(addon.bf16FilterGradientRuns(), count, 'the switch runs oneDNN\'s');
      } finally {
        delete process.env.ECT_BF16_FILTER_GRADIENT;
      }
      const scale = Math.max(...ours.dfilter.map(Math.abs));
      ours.dfilter.forEach((v, i) => assert.ok(Math.abs(v - theirs.dfilter[i]) <= 2 * accumulation * batch * size * size * scale,
        `oneDNN and ours differ at ${i} of ${g.slice(0, 7)}: ${theirs.dfilter[i]} vs ${v}`));
    }
  });

  it('rounds inputs to the nearest bfloat16, ties to even, NaN and infinities kept, subnormals to zero (exact cases through a 1x1 convolution)', () => {
    // bfloat16 has 7 stored mantissa bits: next to 1 it holds 1, 1 + 2^-7, 1 + 2^-6, ...; a 1x1 convolution with the
    // filter [1, 0] over the channels [x, 0] returns x's rounded values exactly (one product each, accumulated in
    // float32). Two channels, since VDPBF16PS multiplies channel pairs: with one channel oneDNN pairs a pixel with
    // the next one and a padded zero weight, so an infinite neighbour would make 0 x inf = NaN.
    const cases: Array<[number, number]> = [
      [1 + 2 ** -8 + 2 ** -10, 1 + 2 ** -7],   // above the midpoint: up (truncation would give 1)
      [1 + 2 ** -8 - 2 ** -12, 1],             // below the midpoint: down
      [1 + 2 ** -8, 1],                        // tie: to the even neighbour 1
      [1 + 3 * 2 ** -8, 1 + 2 ** -6],          // tie: to the even neighbour 1 + 2^-6, not 1 + 2^-7
      [-(1 + 2 ** -8 + 2 ** -10), -(1 + 2 ** -7)],  // the sign does not change the magnitude's rounding
      [1000 + 2, 1000],                        // 1000..1008 step 8 near 2^10: 1002 rounds down, 1006 up
      [1000 + 6, 1008],
      [Infinity, Infinity],                    // infinities stay infinite
      [3.4028234663852886e38, Infinity],       // the largest float32 is above bfloat16's largest: up to infinity
      [1e-39, 0],                              // float32 subnormals (|x| < 2^-126) become zero (VCVTNEPS2BF16 does)
    ];
    const convolve = (values: number[]) => tf.tidy(() => withPrecision('bf16', () => Array.from(tf.conv2d(
      tf.tensor4d(values.flatMap((v) => [v, 0]), [1, 1, values.length, 2]), tf.tensor4d([1, 0], [1, 1, 2, 1]), 1, 'same').dataSync())));
    const got = convolve(cases.map(([x]) => x));
    cases.forEach(([x, want], i) => assert.equal(got[i], Math.fround(want), `${x} rounded to ${got[i]}, want ${want}`));
    assert.ok(Number.isNaN(convolve([NaN])[0]), 'NaN stays NaN');
  });

  it('the addon rounds a matrix product\'s inputs the same way when asked (precision 1)', () => {
    const addon = onednnAddon()!;
    const a = Float32Array.from([1 + 2 ** -8 + 2 ** -10, 1 + 3 * 2 ** -8, 1e-39]), b = Float32Array.of(1), c = new Float32Array(3);
    addon.matMul([1, 1, 3, 1, 1, 0, 0], a, b, null, c, 0, 0, 1);
    assert.deepEqual(Array.from(c), [1 + 2 ** -7, 1 + 2 ** -6, 0]);
  });

  it('matrix products run in float32 in bf16 (bit-identical to fp32), with transposes and broadcast batches', () => {
    const addon = onednnAddon()!;
    for (const [a, b, ta, tb] of [[[4, 17, 33], [4, 33, 9], false, false], [[2, 40, 16], [2, 40, 24], true, false], [[64, 32], [48, 32], false, true]] as const) {
      tf.tidy(() => {
        const as = randomTensor([...a]), bs = randomTensor([...b]);
        const run = (p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, ta, tb).dataSync() as Float32Array;
        const before = addon.bf16Executions();
        const bf16 = withPrecision('bf16', () => run(as, bs));
        assert.equal(addon.bf16Executions(), before, 'no bf16 primitive ran');
        assert.deepEqual(bf16, run(as, bs), `matMul ${a} x ${b}`);
      });
    }
  });

  it('1x1 convolutions: one matrix product in fp32, the bf16 convolution kernels in bf16, within the bound', () => {
    const addon = onednnAddon()!;
    tf.tidy(() => {
      const xs = randomTensor([2, 5, 5, 6]), ws = randomTensor([1, 1, 6, 4], 0.5), bias = randomTensor([4]), dy = randomTensor([2, 5, 5, 4]);
      const weights = (filter: tf.Tensor) => (name: string) => (name === 'skip.weight' ? filter : bias);
      const run = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => {
        const f = (p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(conv2d(weights(q), 'skip', p as tf.Tensor4D), d));
        const { value, grads } = tf.valueAndGrads(f)([a, b]);
        return [value, ...grads].map((t) => t.dataSync() as Float32Array);
      };
      const [convBefore, bf16Before] = [addon.convExecutions(), addon.bf16Executions()];
      const fp32 = run(xs, ws, dy);
      assert.equal(addon.convExecutions(), convBefore, 'fp32: no convolution primitive (a matrix product)');
      const bf16 = withPrecision('bf16', () => run(xs, ws, dy));
      assert.equal(addon.bf16Executions() - bf16Before, 3, 'bf16: forward, input gradient and filter gradient primitives, all bf16');
      assert.equal(addon.convExecutions() - convBefore, 3);
      const magnitude = run(tf.abs(xs), tf.abs(ws), tf.abs(dy));
      ['sum', 'input gradient', 'filter gradient'].forEach((name, i) => assertWithinProductBound(`1x1 conv ${name}`, bf16[i], fp32[i], magnitude[i]));
      assert.ok(bf16.some((values, i) => values.some((v, j) => v !== fp32[i][j])), 'bf16 changed nothing');
    });
  });

  it('the convolutions reading the network input stay float32 in bf16, forward and backward, for both architectures', () => {
    const addon = onednnAddon()!;
    for (const arch of ['ddpmpp', 'ncsnpp'] as const) {
      const net = new UNet({ ...TINY_NET, arch, dropout: 0 }, 5);
      tf.tidy(() => {
        const x = randomTensor([2, 8, 8, 1]), noise = tf.tensor1d([0.3, -0.2]);
        const [convBefore, bf16Before] = [addon.convExecutions(), addon.bf16Executions()];
        withPrecision('bf16', () => net.forward(x as tf.Tensor4D, noise).dataSync());
        const fp32Forward = (addon.convExecutions() - convBefore) - (addon.bf16Executions() - bf16Before);
        // the input convolution; NCSN++ also its first residual-encoder convolution, which reads the input too
        assert.equal(fp32Forward, arch === 'ncsnpp' ? 2 : 1, `${arch}: float32 forward convolutions`);
        const [convMid, bf16Mid] = [addon.convExecutions(), addon.bf16Executions()];
        withPrecision('bf16', () => tf.grad((p: tf.Tensor) => tf.sum(net.forward(p as tf.Tensor4D, noise)))(x).dataSync());
        const fp32WithBackward = (addon.convExecutions() - convMid) - (addon.bf16Executions() - bf16Mid);
        // their backward primitives (input and filter gradients, the input's gradient taken here) in float32 too
        assert.equal(fp32WithBackward, 3 * fp32Forward, `${arch}: float32 primitives forward and backward`);
      });
      net.dispose();
    }
  });

  it('the UNet\'s convolution op keeps a bf16 copy of its input for backward (half the bytes), and its gradients stay within the bound', () => {
    const addon = onednnAddon()!;
    tf.tidy(() => {
      const xs = randomTensor([2, 7, 7, 6]), ws = randomTensor([3, 3, 6, 5], 0.5), bias = randomTensor([5]), dy = randomTensor([2, 7, 7, 5]);
      const run = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => {
        const f = (p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) => tf.sum(tf.mul(fusedConv2dSame(p as tf.Tensor4D, q as tf.Tensor4D, r), d));
        const { value, grads } = tf.valueAndGrads(f)([a, b, bias]);
        return [value, ...grads].map((t) => t.dataSync() as Float32Array);
      };
      // what the op saves: watch the tensors kept across the forward pass under a tape
      const savedDtypes = (precision: 'fp32' | 'bf16') => withPrecision(precision, () => {
        let dtypes: string[] = [];
        tf.grad((p: tf.Tensor) => {
          const y = fusedConv2dSame(p as tf.Tensor4D, ws as tf.Tensor4D, bias);
          const tape = (tf.engine() as unknown as { state: { activeTape: Array<{ saved?: tf.Tensor[] }> } }).state.activeTape;
          dtypes = tape.flatMap((node) => (node.saved ?? []).map((t) => `${t.dtype}[${t.shape}]`));
          return tf.sum(y);
        })(xs);
        return dtypes;
      });
      assert.deepEqual(savedDtypes('fp32'), ['float32[2,7,7,6]', 'float32[3,3,6,5]'], 'fp32 keeps x');
      assert.deepEqual(savedDtypes('bf16'), [`int32[${xs.size / 2}]`, 'float32[3,3,6,5]'], `bf16 keeps the ${xs.size} bf16 values of x in ${xs.size / 2} int32 elements`);
      // without a tape (sampling) no copy is made: the kernel hands back x itself
      const untaped = withPrecision('bf16', () => tf.engine().runKernel(CONV_SAME_KERNEL, { x: xs, filter: ws, bias }, { forBackward: false }) as tf.Tensor[]);
      assert.equal(untaped[1].dtype, 'float32');
      assert.equal(untaped[1].dataId, xs.dataId);
      const convBefore = addon.convExecutions(), bf16Before = addon.bf16Executions();
      const bf16 = withPrecision('bf16', () => run(xs, ws, dy));
      assert.equal(addon.bf16Executions() - bf16Before, 3, 'forward, input gradient and filter gradient in bf16');
      assert.equal(addon.convExecutions() - convBefore, 3);
      const fp32 = run(xs, ws, dy);
      const magnitude = run(tf.abs(xs), tf.abs(ws), tf.abs(dy));
      // the bias gradient is the bf16 dy summed (one rounding per term: within the same bound)
      ['sum', 'input gradient', 'filter gradient', 'bias gradient'].forEach((name, i) => assertWithinProductBound(`fused conv ${name}`, bf16[i], fp32[i], magnitude[i]));
    });
  });

  it('GroupNorm feeding a convolution: GroupNorm writes the bf16 input itself, and the op gives the composition\'s numbers bit for bit', () => {
    const addon = onednnAddon()!;
    // channel counts with a compiled channel loop (32) and without (12); 3x3 and 1x1 filters; with and without the
    // embedding shift and the dropout mask
    const cases = [
      { x: [2, 6, 6, 32], k: 3, cout: 16, shift: true, mask: true },
      { x: [3, 5, 5, 12], k: 3, cout: 8, shift: false, mask: false },
      { x: [2, 4, 4, 32], k: 1, cout: 24, shift: true, mask: false },
    ];
    for (const c of cases) {
      tf.tidy(() => {
        const [b, , , ch] = c.x;
        const x = randomTensor(c.x, 2), gamma = randomTensor([ch]), beta = randomTensor([ch], 0.5);
        const filter = randomTensor([c.k, c.k, ch, c.cout], 0.5), bias = randomTensor([c.cout]);
        const shift = c.shift ? randomTensor([b, ch]) as tf.Tensor2D : undefined;
        const mask = c.mask ? tf.tensor(Float32Array.from({ length: x.size }, () => (rng() < 0.8 ? 1.25 : 0)), c.x) : undefined;
        const dy = randomTensor([...c.x.slice(0, 3), c.cout]);
        const attrs = { groups: groupCount(ch), eps: 1e-6, silu: true };
        const inputs = [x, gamma, beta, ...(shift ? [shift] : []), filter, bias];
        const run = (fused: boolean) => withPrecision('bf16', () => {
          const f = (...t: tf.Tensor[]) => {
            const [xi, gi, bi] = t;
            const si = shift ? t[3] as tf.Tensor2D : undefined;
            const [fi, ci] = t.slice(-2);
            const y = fused ? fusedGroupNormConv(xi as tf.Tensor4D, gi, bi, attrs, si, mask, fi as tf.Tensor4D, ci)
              : fusedConv2dSame(fusedGroupNorm(xi as tf.Tensor4D, gi, bi, attrs, si, mask), fi as tf.Tensor4D, ci);
            return tf.sum(tf.mul(y, dy));
          };
          const bf16Before = addon.bf16Executions();
          const { value, grads } = tf.valueAndGrads(f)(inputs);
          assert.equal(addon.bf16Executions() - bf16Before, 3, 'the forward and both gradient primitives ran in bf16');
          return [value, ...grads].map((t) => Array.from(t.dataSync()));
        });
        const composed = run(false), fused = run(true);
        const names = ['sum', 'dx', 'dgamma', 'dbeta', ...(shift ? ['dshift'] : []), 'dfilter', 'dbias'];
        names.forEach((name, i) => assert.deepEqual(fused[i], composed[i], `${name} of [${c.x}] * ${c.k}x${c.k}: the fused op differs from the composition`));
      });
    }
  });

  it('the fused GroupNorm-convolution keeps only bf16 for backward and makes no float32 copy of the normalised input', () => {
    tf.tidy(() => {
      const x = randomTensor([2, 5, 5, 16]), gamma = randomTensor([16]), beta = randomTensor([16]);
      const filter = randomTensor([3, 3, 16, 8], 0.5), bias = randomTensor([8]);
      const attrs = { groups: groupCount(16), eps: 1e-6, silu: true };
      let saved: string[] = [];
      withPrecision('bf16', () => tf.grad((p: tf.Tensor) => {
        const y = fusedGroupNormConv(p as tf.Tensor4D, gamma, beta, attrs, undefined, undefined, filter as tf.Tensor4D, bias);
        const tape = (tf.engine() as unknown as { state: { activeTape: Array<{ saved?: tf.Tensor[] }> } }).state.activeTape;
        saved = tape.flatMap((node) => (node.saved ?? []).map((t) => `${t.dtype}[${t.shape}]`));
        return tf.sum(y);
      })(x));
      // x, gamma, beta, the statistics, the normalised input as bf16 (x.size values in x.size / 2 int32 elements), the filter
      assert.deepEqual(saved, ['float32[2,5,5,16]', 'float32[16]', 'float32[16]', 'float32[2,2,16]', `int32[${x.size / 2}]`, 'float32[3,3,16,8]']);
    });
    // the layer uses the op only in bf16 on a backend with the kernels; fp32 composes the two layers
    assert.equal(withPrecision('bf16', () => normFeedsConvInBf16()), true);
    assert.equal(normFeedsConvInBf16(), false);
  });

  it('GroupNorm\'s bf16 output rounds as oneDNN\'s conversion does: to nearest, ties to even, NaN and infinities kept, subnormals to zero', () => {
    const addon = onednnAddon()!;
    // gamma 0 makes y = beta exactly, so each channel's output is the value to round (the cases of the 1x1 convolution test above)
    const values = [1 + 2 ** -8 + 2 ** -10, 1 + 2 ** -8 - 2 ** -12, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8 + 2 ** -10), 1002, 1006,
      Infinity, 3.4028234663852886e38, 1e-39, -1e-39, NaN];
    const want = [1 + 2 ** -7, 1, 1, 1 + 2 ** -6, -(1 + 2 ** -7), 1000, 1008, Infinity, Infinity, 0, -0, NaN];
    // 28 channels: the cases in channels 0-11 and again in 16-27, the parts of a row converted 16 at a time (by the
    // instruction, where the addon is built for it) and one by one
    const channels = 28;
    const beta = new Float32Array(channels);
    beta.set(values, 0);
    beta.set(values, 16);
    const x = Float32Array.from({ length: 2 * channels }, (_, i) => i % 5), gamma = new Float32Array(channels);
    const out = new Int32Array(channels);  // 2 pixels x 28 channels, two bf16 values per element
    addon.groupNormForward([1, 2, channels, 7], x, null, null, gamma, beta, 1e-6, false, out, null);
    const bits = new Uint16Array(out.buffer);
    const asFloat = (b: number) => new Float32Array(new Uint32Array([b << 16]).buffer)[0];
    for (let p = 0; p < 2; p++) {
      for (const offset of [0, 16]) {
        want.forEach((w, i) => {
          const at = p * channels + offset + i;
          const got = asFloat(bits[at]);
          if (Number.isNaN(w)) assert.ok(Number.isNaN(got) && (bits[at] & 0x40) !== 0, `NaN stays a quiet NaN, got ${got} (channel ${offset + i})`);
          else assert.ok(Object.is(got, Math.fround(w)), `${values[i]} rounded to ${got}, want ${w} (channel ${offset + i})`);
        });
      }
    }
    // a bf16 output of the wrong length is refused with the reason
    assert.throws(() => addon.groupNormForward([1, 2, channels, 7], x, null, null, gamma, beta, 1e-6, false, new Int32Array(channels - 1), null),
      /bf16 copy of 56 values needs 28/);
  });

  it('one training step agrees with fp32 within 2u sqrt(L / 2), leaks no tensors, and keeps everything the optimiser sees fp32', async () => {
    const data = makeSyntheticDataset('train', { count: 16, height: 8, width: 8, channels: 1, seed: 3 });
    const make = async (precision: 'fp32' | 'bf16') => {
      const trainer = await Trainer.create(tinyRunConfig('tune', { precision, net: { ...TINY_NET, dropout: 0 } }), { runDir: null, dataset: data });
      // random weights everywhere (the zero-initialised output layer would stop every gradient behind it)
      let seed = 40;
      for (const p of trainer.net.params.values()) p.assign(tf.tidy(() => tf.randomNormal(p.shape, 0, 0.2, 'float32', seed++)));
      return trainer;
    };
    const fp32 = await make('fp32'), bf16 = await make('bf16');
    const snapshot = (t: Trainer) => [...t.net.params.values()].map((p) => p.dataSync().slice() as Float32Array);
    const start = snapshot(fp32);
    const { images } = fp32.loader.next();
    const addon = onednnAddon()!;
    const [convBefore, bf16Before] = [addon.convExecutions(), addon.bf16Executions()];
    const lossFp32 = fp32.step(images);
    const fp32Convolutions = addon.convExecutions() - convBefore;
    assert.ok(fp32Convolutions > 0 && addon.bf16Executions() === bf16Before, 'the fp32 step ran convolutions, none in bf16');
    const [runsBefore, convsBefore] = [addon.bf16Executions(), addon.convExecutions()];
    const lossBf16 = bf16.step(images);
    const products = addon.bf16Executions() - runsBefore;
    // every convolution primitive in bf16 but the input convolution's: its forward in the student and target passes
    // and its two gradient primitives, float32 (lib/nn/unet.ts INPUT_LAYERS_PRECISION)
    assert.equal(addon.convExecutions() - convsBefore - products, 4, 'all but the input convolution\'s 4 primitives ran in bf16');
    // the tiny net's 1x1 convolutions (residual skips, attention) are matrix products in fp32 and convolutions in bf16
    assert.ok(products + 4 > fp32Convolutions, `bf16 ran ${products + 4} convolution primitives, fp32 ${fp32Convolutions}: the 1x1 ones should be convolutions too`);
    const tolerance = 2 * BF16_U * Math.sqrt(products / 2);
    const lossError = Math.abs(lossBf16 - lossFp32) / Math.abs(lossFp32);
    assert.ok(lossError <= tolerance, `loss ${lossBf16} vs ${lossFp32}: relative error ${lossError} > ${tolerance} (L = ${products})`);
    // the update (new - old weights) over all parameters, compared as one vector
    const [afterFp32, afterBf16] = [snapshot(fp32), snapshot(bf16)];
    let diff = 0, norm = 0;
    start.forEach((s, i) => s.forEach((v, j) => {
      const uf = afterFp32[i][j] - v, ub = afterBf16[i][j] - v;
      diff += (uf - ub) ** 2;
      norm += uf ** 2;
    }));
    const updateError = Math.sqrt(diff / norm);
    assert.ok(norm > 0 && updateError <= tolerance, `update relative error ${updateError} > ${tolerance}`);
    assert.ok(lossError > 0 || updateError > 0, 'bf16 changed nothing: the bf16 path did not run');
    console.log(`      L = ${products} products; loss relative error ${lossError.toExponential(2)}, update ${updateError.toExponential(2)}, tolerance ${tolerance.toExponential(2)}`);
    // fp32 master weights, optimiser state and EMA: every tensor the step leaves behind is float32
    for (const p of bf16.net.params.values()) assert.equal(p.dtype, 'float32');
    // flat tensor count over further bf16 steps
    bf16.step(images);
    const count = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) bf16.step(images);
    assert.equal(tf.memory().numTensors, count, 'bf16 steps leak tensors');
    assert.equal(currentPrecision(), 'fp32', 'the step restores fp32 for everything outside it');
    images.dispose();
    fp32.dispose();
    bf16.dispose();
  });
});

describe('profile-step --compare: fp32 and bf16 steps in one process', function () {
  before(async function () {
    requireSystemPart(this, 'native');
    if (!(await tryRegisterOnednn()).ok || !bf16Support(readFlags()).ok) this.skip();
  });

  it('times both precisions by addon function and restores the addon afterwards', async () => {
    const previous = tf.getBackend() ?? 'cpu';
    await tf.setBackend('onednn');
    const addon = onednnAddon()!;
    const convForward = addon.convForward;
    try {
      const result = await compareStepPrecisions(SMOKE_SHAPES.tiny, 1, 1);
      for (const precision of ['fp32', 'bf16'] as const) {
        const r = result[precision];
        assert.ok(r.stepMs > 0 && r.byFunction.convForward > 0 && r.byFunction.matMul >= 0, JSON.stringify(r));
        assert.ok(Math.abs(r.outsideAddonMs + Object.values(r.byFunction).reduce((a, b) => a + b, 0) - r.stepMs) < 1e-6);
      }
      assert.equal(addon.convForward, convForward, 'the addon\'s functions are unwrapped');
      assert.match(formatComparison('tiny', result), /convForward .* outside the addon/s);
    } finally {
      await tf.setBackend(previous);
    }
  });
});

/** This machine's flags (the suite runs the numeric checks only where bf16 is native). */
function readFlags(): string[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../lib/machine/peak') as typeof import('../lib/machine/peak')).readCpuFacts().flags;
}
