/**
 * Gradients of a scalar with respect to variables, like tf.variableGrads, holding less memory while they run.
 *
 * tfjs's backward pass keeps every gradient it computes (of every activation, not just of the variables) and
 * every tensor the forward pass saved for backward until the whole pass ends, so the memory of a training step
 * peaks at the end of backward with all activations and all their gradients alive at once. A PyTorch step
 * frees each activation's gradient once the op that produced the activation has consumed it, and each saved
 * tensor once its op's backward has run. This does the same on tfjs's own tape: the same gradient functions,
 * called in the same order, so the gradients are the same numbers; only the moment tensors are freed differs.
 *
 * It reads tfjs's engine state (the tape and its scopes), an internal interface: `leanGradientsSupported`
 * checks it is there, and `leanVariableGrads` falls back to tf.variableGrads when it is not, or inside another
 * gradient computation (higher-order gradients need the tape kept).
 */
import * as tf from '@tensorflow/tfjs-core';

/** One node of tfjs's gradient tape (tfjs-core tape.ts), the fields this file uses. */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient?: (dys: Array<tf.Tensor | null>) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/** The parts of tfjs's Engine this file uses. */
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(name: string | (() => T), f?: () => T): T;
}

function engineInternals(): EngineInternals {
  return tf.engine() as unknown as EngineInternals;
}

/** True when this tfjs exposes the engine internals the lean pass needs (checked on the running version). */
export function leanGradientsSupported(): boolean {
  const e = engineInternals() as unknown as Record<string, unknown>;
  const state = e.state as Record<string, unknown> | undefined;
  return typeof e.scopedRun === 'function' && typeof e.startTape === 'function' && typeof e.endTape === 'function' &&
    typeof e.tidy === 'function' && state !== undefined && typeof state.gradientDepth === 'number';
}

/**
 * The tape nodes on a path from some x to y, with inputs not depending on any x pruned (what tfjs's own
 * getFilteredNodesXToY returns; written again here because tfjs does not export it).
 */
export function nodesFromXsToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((input) => fromX.has(input.id))) {
      nodesFromX.add(node.id);
      for (const output of node.outputs) fromX.add(output.id);
    }
  }
  const toY = new Set<number>([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((output) => toY.has(output.id))) {
      nodesToY.add(node.id);
      for (const input of Object.values(node.inputs)) toY.add(input.id);
    }
  }
  const filtered: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, input] of Object.entries(node.inputs)) if (fromX.has(input.id)) inputs[name] = input;
    filtered.push({ ...node, inputs });
  }
  return filtered;
}

/**
 * Backpropagates through `nodes` (in tape order) from dy(y) = 1, freeing each activation's gradient after its
 * producing node has used it and each saved tensor after the last node that saved it; returns the gradient of
 * each x (null where y does not depend on it). Runs inside the caller's tidy.
 */
function backpropagate(engine: EngineInternals, nodes: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): Array<tf.Tensor | null> {
  const gradients = new Map<number, tf.Tensor>([[y.id, tf.onesLike(y)]]);
  const keep = new Set(xs.map((x) => x.id));
  // A saved tensor can be shared by several nodes (custom gradients keep their saved tensors rather than clone them).
  const savedUses = new Map<tf.Tensor, number>();
  for (const node of nodes) for (const t of node.saved ?? []) savedUses.set(t, (savedUses.get(t) ?? 0) + 1);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    const inputGradients = node.gradient(node.outputs.map((o) => gradients.get(o.id) ?? null));
    for (const [name, x] of Object.entries(node.inputs)) {
      if (!(name in inputGradients)) {
        throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGradients)}.`);
      }
      const dx = engine.tidy(() => inputGradients[name]());
      if (dx.dtype !== 'float32') {
        throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' must have 'float32' dtype, but has '${dx.dtype}'`);
      }
      if (!tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', ` +
          `which does not match the shape of the input '${x.shape}'`);
      }
      const before = gradients.get(x.id);
      if (before) {
        gradients.set(x.id, tf.add(before, dx));
        before.dispose();
        dx.dispose();
      } else {
        gradients.set(x.id, dx);
      }
    }
    // Every consumer of this node's outputs came later on the tape and has run: their gradients are spent.
    for (const output of node.outputs) {
      if (keep.has(output.id)) continue;
      gradients.get(output.id)?.dispose();
      gradients.delete(output.id);
    }
    for (const t of node.saved ?? []) {
      const left = (savedUses.get(t) ?? 1) - 1;
      savedUses.set(t, left);
      if (left === 0) t.dispose();
    }
  }
  return xs.map((x) => gradients.get(x.id) ?? null);
}

/** Which backward pass trainers use: 'lean' (the default) or 'tfjs' (tf.variableGrads, for comparisons). */
let gradientPass: 'lean' | 'tfjs' = 'lean';

/** Sets the backward pass of every later step; returns the previous one. */
export function setGradientPass(pass: 'lean' | 'tfjs'): 'lean' | 'tfjs' {
  const before = gradientPass;
  gradientPass = pass;
  return before;
}

/**
 * tf.variableGrads(f, varList) with the lean backward pass: { value, grads } keyed by variable name, the
 * value and gradients kept (the caller disposes them), everything else freed. Non-trainable variables get no
 * gradient; a variable f does not depend on gets none either.
 */
export function leanVariableGrads(f: () => tf.Scalar, varList: tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const engine = engineInternals();
  if (gradientPass === 'tfjs' || !leanGradientsSupported() || engine.state.gradientDepth !== 0) {
    return tf.variableGrads(f, varList) as { value: tf.Scalar; grads: tf.NamedTensorMap };
  }
  const trainable = varList.filter((v) => v.trainable);
  if (!trainable.length) throw new Error('leanVariableGrads: no trainable variables to differentiate with respect to');
  const y = engine.scopedRun(() => engine.startTape(), () => engine.endTape(), () => engine.tidy('forward', f));
  if (!(y instanceof tf.Tensor) || y.rank !== 0) throw new Error('leanVariableGrads: f() must return a scalar tensor');
  return engine.tidy('backward', () => {
    const tape = engine.state.activeTape ?? [];
    let grads: Array<tf.Tensor | null>;
    try {
      grads = backpropagate(engine, nodesFromXsToY(tape, trainable, y), trainable, y);
    } catch (error) {
      y.dispose();  // made outside this tidy: nothing else would free it
      throw error;
    } finally {
      // what tfjs does after a first-order pass: free every saved tensor (a no-op for those already freed) and drop the tape
      for (const node of tape) for (const t of node.saved ?? []) t.dispose();
      engine.state.activeTape = null;
    }
    const named: tf.NamedTensorMap = {};
    trainable.forEach((v, i) => { if (grads[i]) named[v.name] = grads[i] as tf.Tensor; });
    return { value: y as tf.Scalar, grads: named } as unknown as tf.TensorContainer;
  }) as unknown as { value: tf.Scalar; grads: tf.NamedTensorMap };
}
