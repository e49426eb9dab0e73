/**
 * The trainer's one policy for a step whose loss or gradient norm is NaN or infinite: nothing of the step is
 * applied; onNonFinite 'stop' (the default) throws, 'skip' counts the batch as seen and skipped, and too many
 * skips in a row stop the run anyway. The optimiser never sees such a gradient.
 */
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import { makeSyntheticDataset } from '../lib/data/synthetic';
import { NonFiniteStepError, Trainer } from '../lib/train/trainer';
import { tinyRunConfig, useTestBackend } from './helpers';

const tinyData = () => makeSyntheticDataset('train', { count: 32, height: 8, width: 8, channels: 1, seed: 1 });

/** Everything a step may change: weights, EMA, optimiser moments and counters. */
function state(trainer: Trainer): Record<string, unknown> {
  const values = (tensors: Map<string, tf.Tensor>) => Object.fromEntries([...tensors].map(([name, t]) => [name, Array.from(t.dataSync())]));
  const optimizer = trainer.optimizer.getState();
  const slots = values(optimizer.slots);
  optimizer.slots.forEach((t) => t.dispose());
  return {
    params: values(trainer.net.params), ema: values(trainer.ema.weights), slots, optimizerStep: optimizer.step,
    iteration: trainer.iteration, imagesSeen: trainer.imagesSeen, skipped: trainer.skippedSteps,
  };
}

/** A batch of NaN images, whose loss is NaN. */
const nanBatch = () => tf.fill([4, 8, 8, 1], NaN) as tf.Tensor4D;

/** Counts the optimiser's updates. */
function countApplies(trainer: Trainer): () => number {
  let calls = 0;
  const apply = trainer.optimizer.apply.bind(trainer.optimizer);
  trainer.optimizer.apply = (grads, imagesSeen) => {
    calls++;
    apply(grads, imagesSeen);
  };
  return () => calls;
}

describe('non-finite steps', () => {
  before(useTestBackend);

  it('stop (the default): throws naming the iteration and the loss, and changes no weight, moment or counter', async () => {
    const trainer = await Trainer.create(tinyRunConfig('pretrain'), { runDir: null, dataset: tinyData() });
    assert.equal(trainer.cfg.onNonFinite, 'stop');
    const good = trainer.loader.next().images;
    trainer.step(good);
    const applies = countApplies(trainer);
    const before = state(trainer);
    const bad = nanBatch();
    assert.throws(() => trainer.step(bad), (err: unknown) => err instanceof NonFiniteStepError && err.iteration === 1 && Number.isNaN(err.loss)
      && !err.weights && !err.repeated && /^iteration 2: the loss is NaN; no weight was changed$/.test(err.message));
    assert.deepEqual(state(trainer), before);
    assert.equal(applies(), 0, 'the optimiser never saw the gradient');
    tf.dispose([good, bad]);
    trainer.dispose();
  });

  it('skip: a finite loss with an infinite gradient norm is skipped and counted too, the weights untouched', async () => {
    const trainer = await Trainer.create(tinyRunConfig('tune', { onNonFinite: 'skip' }), { runDir: null, dataset: tinyData() });
    const good = trainer.loader.next().images;
    const applies = countApplies(trainer);
    // this step's loss stays finite but one parameter's gradient is infinite: an extra term of value 0 and derivative Infinity
    const prepare = trainer.loss.prepare.bind(trainer.loss);
    const zeroWithInfiniteSlope = tf.customGrad((...inputs) => {
      const x = inputs[0] as tf.Tensor;
      return { value: tf.scalar(0), gradFunc: (dy: tf.Tensor) => tf.mul(dy, tf.fill(x.shape, Infinity)) };
    });
    let poison = true;
    trainer.loss.prepare = (net, x0, ctx) => {
      const step = prepare(net, x0, ctx);
      if (!poison) return step;
      poison = false;
      const first = [...net.params.values()][0];
      return { loss: () => tf.add(step.loss(), zeroWithInfiniteSlope(first) as tf.Scalar) as tf.Scalar, dispose: () => step.dispose() };
    };
    const before = state(trainer);
    const loss = trainer.step(good);
    const after = state(trainer);
    assert.ok(Number.isFinite(loss), `the loss is finite (${loss})`);
    assert.equal(trainer.skippedSteps, 1, 'counted as skipped');
    assert.equal(applies(), 0, 'the optimiser never saw the gradient');
    assert.deepEqual({ ...after, iteration: 0, imagesSeen: 0, skipped: 0 }, { ...before, iteration: 0, imagesSeen: 0, skipped: 0 }, 'weights, EMA and moments unchanged');
    assert.equal(trainer.iteration, 1, 'the batch counts as a step');
    assert.equal(trainer.imagesSeen, 4, 'and its images as seen');
    trainer.step(good);
    assert.equal(applies(), 1, 'the next finite step is applied');
    assert.equal(trainer.skippedSteps, 1);
    good.dispose();
    trainer.dispose();
  });

  it('skip: ten non-finite batches in a row stop the run anyway; a finite one between starts the count again', async () => {
    const trainer = await Trainer.create(tinyRunConfig('pretrain', { onNonFinite: 'skip', iters: 100 }), { runDir: null, dataset: tinyData() });
    const good = trainer.loader.next().images;
    const bad = nanBatch();
    for (let i = 0; i < 9; i++) assert.ok(Number.isNaN(trainer.step(bad)));
    assert.equal(trainer.skippedSteps, 9);
    trainer.step(good);
    for (let i = 0; i < 9; i++) trainer.step(bad);
    assert.equal(trainer.skippedSteps, 18, 'nine more, after the finite step');
    assert.throws(() => trainer.step(bad), (err: unknown) => err instanceof NonFiniteStepError && err.repeated && /the last 10 batches were all non-finite/.test(err.message));
    assert.equal(trainer.skippedSteps, 18, 'the batch that stops the run is not counted as skipped');
    tf.dispose([good, bad]);
    trainer.dispose();
  });
});
