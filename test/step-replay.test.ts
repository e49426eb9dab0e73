/**
 * Replayed training steps (lib/train/step-replay.ts) against eager ones: the same losses, weights, moments and
 * averages bit for bit, no tensor left behind, non-finite batches skipped alike, a failed check turning replays off.
 */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs-core';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { denoise } from '../lib/edm/precond';
import { NonFiniteStepError, Trainer } from '../lib/train/trainer';
import { NotReplayable, StepRecording, recordAddonCalls, WRITTEN_ARGUMENTS } from '../lib/train/step-replay';
import { ADDON_FUNCTIONS } from '../lib/backend/onednn/addon';
import { bf16Support, machineCpuFlags, onednnAddon } from '../lib/backend/onednn';
import type { RunKind } from '../lib/config/types';
import type { StepHostInputs } from '../lib/training-loss';
import { requireSystemPart, TINY_NET, tinyRunConfig, useTestBackend } from './helpers';

const tinyData = () => makeSyntheticDataset('train', { count: 32, height: 8, width: 8, channels: 1, seed: 3 });

async function trainerFor(kind: RunKind, stepReplay: boolean, patch: Record<string, unknown> = {}): Promise<Trainer> {
  return Trainer.create(tinyRunConfig(kind, { iters: 100, ect: { stageIters: 5 }, ...patch }), { runDir: null, dataset: tinyData(), stepReplay });
}

/** One step on the trainer's next batch (the batch freed after). */
function step(trainer: Trainer): number {
  const batch = trainer.loader.next();
  try {
    return trainer.step(batch.images, batch.labels);
  } finally {
    batch.images.dispose();
  }
}

/** Every weight, moment and average of a trainer, as bytes by name. */
function stateBytes(trainer: Trainer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const add = (prefix: string, tensors: Map<string, tf.Tensor>) => {
    for (const [name, t] of tensors) out.set(`${prefix}/${name}`, Buffer.from((t.dataSync() as Float32Array).buffer));
  };
  add('param', trainer.net.params);
  add('ema', trainer.ema.weights);
  for (const [group, weights] of Object.entries(trainer.posthoc?.groups() ?? {})) add(group, weights);
  const opt = trainer.optimizer.getState();
  add('opt', opt.slots);
  opt.slots.forEach((t) => t.dispose());
  return out;
}

/** Makes the host inputs a replay is given (never those of the trainer's eager steps) pass through `alter` first. */
function alterHostInputs(trainer: Trainer, alter: (host: StepHostInputs) => void): void {
  const loss = trainer.loss as { hostInputs: NonNullable<Trainer['loss']['hostInputs']> };
  const hostInputs = loss.hostInputs.bind(loss);
  loss.hostInputs = (net, shape, ctx) => {
    const host = hostInputs(net, shape, ctx);
    alter(host);
    return host;
  };
}

function assertSameState(a: Trainer, b: Trainer, when: string): void {
  const [sa, sb] = [stateBytes(a), stateBytes(b)];
  assert.deepEqual([...sa.keys()], [...sb.keys()]);
  for (const [key, bytes] of sa) assert.ok(bytes.equals(sb.get(key)!), `${when}: ${key} differs between the replayed and the eager run`);
  assert.equal(a.optimizer.step, b.optimizer.step, `${when}: optimiser step count`);
}

describe('replayed training steps (onednn)', function () {
  this.timeout(120_000);
  before(async function () {
    requireSystemPart(this, 'native');
    await useTestBackend();
    if (tf.getBackend() !== 'onednn') this.skip();
  });

  // the synthetic dataset's 10 classes: a class-conditional tiny network with label dropout
  const conditional = { net: { ...TINY_NET, labelDim: 10, labelDropout: 0.3 } };
  // the power-function EMA of the annealed recipe, with two tracked post-hoc EMAs: three EMA updates a step
  const posthoc = { ema: { beta: null, sigmaRel: 0.1, posthoc: { sigmaRels: [0.05, 0.1], snapshotEvery: 5 } } };
  const cases = [['tune', {}, ''], ['pretrain', {}, ''], ['tune', conditional, ', class-conditional'], ['pretrain', conditional, ', class-conditional'],
    ['tune', posthoc, ', post-hoc EMAs tracked']] as const;
  for (const [kind, patch, what_] of cases) {
    const what = `${kind}${what_}`;
    it(`${what}: replayed steps give the eager steps' losses, weights, moments and EMA bit for bit, and free their tensors`, async () => {
      const replayed = await trainerFor(kind, true, patch), eager = await trainerFor(kind, false, patch);
      try {
        let tensorsAfterWarmup = 0;
        for (let i = 0; i < 12; i++) {
          const [lr, le] = [step(replayed), step(eager)];
          assert.ok(Object.is(lr, le), `step ${i}: loss ${lr} replayed, ${le} eager`);
          if (i === 5) tensorsAfterWarmup = tf.memory().numTensors;
        }
        assert.equal(tf.memory().numTensors, tensorsAfterWarmup, 'replayed steps leave no tensor behind');
        const status = replayed.stepReplayStatus();
        assert.equal(status.mode, 'replaying', `replays were turned off: ${status.reason}`);
        // tuning: stages of 5 iterations, each a structure recorded and checked anew
        assert.ok(status.structures.length >= 1, 'at least one structure was recorded, checked and replayed');
        assert.equal(eager.stepReplayStatus().mode, 'eager');
        assertSameState(replayed, eager, 'after 12 steps');
        const notes = replayed.takeNotes();
        assert.equal(notes.length, 1, `one note, that steps are replayed: ${notes.join(' | ')}`);
        assert.match(notes[0], /^iteration \d+: training steps are replayed natively from now on/);
        assert.deepEqual(eager.takeNotes(), []);
      } finally {
        replayed.dispose();
        eager.dispose();
      }
    });
  }

  it('bf16 steps replay bit for bit too (where the CPU has bf16 instructions)', async function () {
    if (!bf16Support(machineCpuFlags()).ok) this.skip();
    const replayed = await trainerFor('tune', true, { precision: 'bf16' }), eager = await trainerFor('tune', false, { precision: 'bf16' });
    try {
      for (let i = 0; i < 8; i++) assert.ok(Object.is(step(replayed), step(eager)), `step ${i}`);
      assert.ok(replayed.stepReplayStatus().structures.length >= 1, `bf16 steps were not replayed: ${replayed.stepReplayStatus().reason}`);
      assertSameState(replayed, eager, 'after 8 bf16 steps');
    } finally {
      replayed.dispose();
      eager.dispose();
    }
  });

  it('sampling between replayed steps sees the EMA as it is (no stale reordered filters)', async () => {
    const replayed = await trainerFor('tune', true), eager = await trainerFor('tune', false);
    const x = tf.randomNormal([2, 8, 8, 1], 0, 1, 'float32', 11) as tf.Tensor4D;
    const sample = (t: Trainer) => tf.tidy(() => denoise(t.net, x, 2.5, { edm: t.cfg.edm, mode: 'eval', weights: t.ema.weights }).dataSync() as Float32Array);
    try {
      for (let i = 0; i < 6; i++) { step(replayed); step(eager); }
      assert.deepEqual(sample(replayed), sample(eager));
      for (let i = 0; i < 2; i++) { step(replayed); step(eager); }
      assert.equal(replayed.stepReplayStatus().mode, 'replaying');
      assert.deepEqual(sample(replayed), sample(eager), 'the second sampling uses the updated EMA');
    } finally {
      x.dispose();
      replayed.dispose();
      eager.dispose();
    }
  });

  it('a non-finite batch is skipped by a replayed step as by an eager one', async () => {
    const patch = { onNonFinite: 'skip', ect: { stageIters: 1000 } };
    const replayed = await trainerFor('tune', true, patch), eager = await trainerFor('tune', false, patch);
    try {
      for (let i = 0; i < 5; i++) { step(replayed); step(eager); }
      assert.ok(replayed.stepReplayStatus().structures.length >= 1);
      for (const t of [replayed, eager]) {
        const batch = t.loader.next();
        const broken = tf.tidy(() => tf.mul(batch.images, NaN) as tf.Tensor4D);
        assert.ok(Number.isNaN(t.step(broken, batch.labels)));
        broken.dispose();
        batch.images.dispose();
      }
      assert.equal(replayed.skippedSteps, 1);
      assert.equal(eager.skippedSteps, 1);
      for (let i = 0; i < 2; i++) assert.ok(Object.is(step(replayed), step(eager)));
      assertSameState(replayed, eager, 'after a skipped batch');
      assert.equal(replayed.stepReplayStatus().mode, 'replaying');
    } finally {
      replayed.dispose();
      eager.dispose();
    }
  });

  it('an update that overflows the weights stops a replayed step, naming the tensor', async () => {
    const replayed = await trainerFor('tune', true, { ect: { stageIters: 1000 } });
    try {
      // until the next step is of a structure already checked (its replay then runs alone, not beside an eager step)
      const nextStructure = () => replayed.loss.hostInputs!(replayed.net, [4, 8, 8, 1], { seed: replayed.cfg.seed, iteration: replayed.iteration }).structure;
      for (let i = 0; i < 20 && !replayed.stepReplayStatus().structures.some((s) => s.startsWith(`${nextStructure()},`)); i++) step(replayed);
      assert.ok(replayed.stepReplayStatus().structures.some((s) => s.startsWith(`${nextStructure()},`)), 'the next step is replayed');
      // a learning rate far too high: the replay takes its coefficients from the optimiser
      const coefficients = replayed.optimizer.nextKernelCoefficients!.bind(replayed.optimizer);
      replayed.optimizer.nextKernelCoefficients = (imagesSeen) => coefficients(imagesSeen)!.map((c, i) => (i === 3 ? Infinity : c));
      let thrown: unknown;
      try { step(replayed); } catch (error) { thrown = error; }
      assert.ok(thrown instanceof NonFiniteStepError && thrown.weights, `a NonFiniteStepError about the weights, got ${thrown}`);
      assert.match((thrown as Error).message, /the update made params\/\S+ NaN or infinite/);
    } finally {
      replayed.dispose();
    }
  });

  it('a replay that differs from the eager step turns replays off, says why, and the run goes on eagerly', async () => {
    const replayed = await trainerFor('tune', true, { ect: { stageIters: 1000 } }), eager = await trainerFor('tune', false, { ect: { stageIters: 1000 } });
    // the replay is given other noise than the eager step draws: the check must catch it
    alterHostInputs(replayed, (host) => { (host.arrays.get('noise') as Float32Array)[0] += 1; });
    try {
      for (let i = 0; i < 5; i++) assert.ok(Object.is(step(replayed), step(eager)), `step ${i}`);
      const status = replayed.stepReplayStatus();
      assert.equal(status.mode, 'eager');
      assert.match(status.reason ?? '', /differs from the eager one/);
      assert.match(replayed.takeNotes().join('\n'), /run eagerly from now on/);
      assertSameState(replayed, eager, 'after the failed check');
    } finally {
      replayed.dispose();
      eager.dispose();
    }
  });

  it('a replay that fails during the check turns replays off, and the step runs eagerly', async () => {
    const replayed = await trainerFor('tune', true, { ect: { stageIters: 1000 } }), eager = await trainerFor('tune', false, { ect: { stageIters: 1000 } });
    alterHostInputs(replayed, (host) => { host.arrays.delete('noise'); });
    try {
      for (let i = 0; i < 5; i++) assert.ok(Object.is(step(replayed), step(eager)), `step ${i}`);
      assert.match(replayed.stepReplayStatus().reason ?? '', /failed: replay: the host array noise is missing/);
      assertSameState(replayed, eager, 'after the failed replay');
    } finally {
      replayed.dispose();
      eager.dispose();
    }
  });

  it('records what a step calls and refuses what it cannot replay', () => {
    const addon = onednnAddon()!;
    // every addon function is either recorded (with the arguments it writes) or a query
    const recorded = ADDON_FUNCTIONS.filter((name) => name in WRITTEN_ARGUMENTS);
    assert.ok(recorded.includes('convForward') && recorded.includes('momentUpdate') && recorded.includes('select'));
    const out = new Float32Array(4);
    const { calls, unexpected } = recordAddonCalls(addon, () => {
      addon.unary(0, new Float32Array(4), out, 0);
      addon.measureFmaRate('fp32', 1, 0.001, 1);
      return addon.threads();
    });
    assert.deepEqual(calls.map((c) => c.name), ['unary']);
    assert.deepEqual([...unexpected], ['measureFmaRate']);
    assert.equal(typeof addon.unary, 'function');
    const facts = {
      calls, unexpected, structure: 's', host: new Map(), stateBeforeArrays: new Map(), stateAfter: new Map(),
      loss: out, dropoutLayers: [], dropoutSeed: 0, scratchBytesInUse: 0,
    };
    assert.throws(() => StepRecording.fromStep(addon, facts), (e: Error) => e instanceof NotReplayable && /measureFmaRate/.test(e.message));
    assert.throws(() => StepRecording.fromStep(addon, { ...facts, unexpected: new Set() }), /update kernel/);
    assert.throws(() => StepRecording.fromStep(addon, { ...facts, unexpected: new Set(), scratchBytesInUse: 64 }), /outlive it/);
  });
});
