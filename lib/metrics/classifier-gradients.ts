/**
 * Gradients of the few kernels the Fashion-MNIST classifier trains through. tfjs-core's node bundle
 * registers no gradients and its `register_all_gradients` module is ESM that Node cannot load from
 * CommonJS, so we register our own, and only where none is registered already.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Sums a gradient over the axes that broadcasting added or stretched, back to `shape`. */
function reduceToShape(grad: tf.Tensor, shape: number[]): tf.Tensor {
  const lead = grad.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < grad.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && grad.shape[i] !== 1)) axes.push(i);
  }
  const summed = axes.length > 0 ? tf.sum(grad, axes) : grad;
  return tf.reshape(summed, shape);
}

const GRADIENTS: tf.GradConfig[] = [
  {
    kernelName: tf.Add,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved;
      return { a: () => reduceToShape(dy as tf.Tensor, a.shape), b: () => reduceToShape(dy as tf.Tensor, b.shape) };
    },
  },
  {
    kernelName: tf.Reshape,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({ x: () => tf.reshape(dy as tf.Tensor, saved[0].shape) }),
  },
  {
    kernelName: tf.Relu,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({ x: () => tf.mul(dy as tf.Tensor, tf.cast(tf.greater(saved[0], 0), 'float32')) }),
  },
  {
    kernelName: tf.BatchMatMul,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved;
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      if (transposeA || transposeB) throw new Error('classifier-gradients: transposed BatchMatMul is not supported');
      const g = dy as tf.Tensor;
      const swapLast = (t: tf.Tensor) => tf.transpose(t, [...t.shape.keys()].map((i) => (i < t.rank - 2 ? i : 2 * t.rank - 3 - i)));
      // C = A B: dA = dC B^T, dB = A^T dC (explicit transposes: wasm's transposed matMul is ~6x slower)
      return {
        a: () => tf.matMul(g, swapLast(b)),
        b: () => tf.matMul(swapLast(a), g),
      };
    },
  },
  {
    kernelName: tf.Max,
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved;
      const { reductionIndices } = attrs as unknown as { reductionIndices: number | number[] };
      const axes = tf.util.parseAxisParam(reductionIndices, x.shape);
      const keptShape = x.shape.map((size, i) => (axes.includes(i) ? 1 : size));
      // the gradient goes to every input equal to the maximum (ties share it, as in tfjs);
      // 1 - sign(max - x) instead of equal(): wasm's broadcasting equal is ~20x slower than sub
      const isMax = tf.sub(1, tf.sign(tf.sub(tf.reshape(y, keptShape), x)));
      return { x: () => tf.mul(tf.reshape(dy as tf.Tensor, keptShape), isMax) };
    },
  },
  {
    kernelName: tf.Concat,
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const { axis } = attrs as unknown as { axis: number };
      const concatAxis = tf.util.parseAxisParam(axis, saved[0].shape)[0];
      // slices rather than tf.split, which is far slower on wasm
      const begin = new Array<number>(saved[0].rank).fill(0);
      const grads: Record<string, () => tf.Tensor> = {};
      saved.forEach((input, i) => {
        const start = [...begin];
        grads[String(i)] = () => tf.slice(dy as tf.Tensor, start, input.shape);
        begin[concatAxis] += input.shape[concatAxis];
      });
      return grads;
    },
  },
  {
    kernelName: tf.Slice,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0];
      const { begin, size } = attrs as unknown as { begin: number[]; size: number[] };
      const [start, length] = tf.slice_util.parseSliceParams(x, begin, size);
      const paddings = x.shape.map((dim, i) => [start[i], dim - start[i] - length[i]] as [number, number]);
      return { x: () => tf.pad(dy as tf.Tensor, paddings) };
    },
  },
  {
    kernelName: tf.PadV2,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0];
      const { paddings } = attrs as unknown as { paddings: [number, number][] };
      return { x: () => tf.slice(dy as tf.Tensor, paddings.map((p) => p[0]), x.shape) };
    },
  },
];

/** Registers the gradients above for kernels that have none yet (idempotent). */
export function ensureClassifierGradients(): void {
  for (const config of GRADIENTS) {
    if (tf.getGradient(config.kernelName) === undefined) tf.registerGradient(config);
  }
}

/**
 * Mean softmax cross-entropy of logits against integer labels, with its own gradient
 * (softmax - onehot) / N so that the loss needs no further registered gradients.
 */
export function crossEntropyLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const [count, classes] = logits.shape;
  const oneHot = tf.oneHot(labels, classes);
  const lossFn = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [z, target] = args as tf.Tensor[];
    const save = args[2] as tf.GradSaveFunc;
    const logProbs = tf.logSoftmax(z);
    save([logProbs, target]);
    const value = tf.div(tf.neg(tf.sum(tf.mul(target, logProbs))), count) as tf.Scalar;
    return {
      value,
      gradFunc: (dy: tf.Scalar, saved: tf.Tensor[]) => {
        const [savedLogProbs, savedTarget] = saved;
        const dz = tf.mul(dy, tf.div(tf.sub(tf.exp(savedLogProbs), savedTarget), count));
        return [dz, tf.zerosLike(savedTarget)];
      },
    };
  });
  return lossFn(logits, oneHot) as tf.Scalar;
}
