/**
 * Training steps replayed without tfjs, on the onednn backend.
 *
 * An eager step spends a sixth of its time (res28-ch32, docs/benchmarks.md) in tfjs's op-by-op dispatch and autodiff
 * between its native kernels. Yet every step of one structure (StepHostInputs.structure) makes the same calls into the
 * addon, on the same shapes, in the same order; only a few inputs differ: the host arrays its tensors are made from
 * (batch, noise, per-example columns, embeddings), the dropout seeds, the optimiser's coefficients and the EMA decays.
 * So one eager step is recorded: every call with its arguments, its intermediates written into a scratch pool of their
 * own. A later step writes its inputs into the recorded host arrays, points the calls at the current weights,
 * moments and averages, patches the seeds and coefficients, and runs the calls again in order. The update kernels then
 * write the state in place (their loops read each element before writing it), so the tfjs variables keep their arrays.
 *
 * Nothing is trusted on faith: the step after a recording runs both ways, the replay on a copy of the state and the
 * eager step for real, and the recording is used only when the two agree bit for bit (loss, gradient norm, every
 * weight, moment and average); else the run stays eager and says why. The first step of each structure (ECT's
 * stages, batches with or without r = 0) is recorded and checked anew.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { filterIdentities, forgetPool, withOutputPool } from '../backend/onednn';
import type { OnednnAddon } from '../backend/onednn/addon';
import { ADDON_FUNCTIONS } from '../backend/onednn/addon';
import { FloatBufferPool } from '../backend/onednn/buffer-pool';
import { layerSeed } from '../nn/layers';
import { arraysNorm } from './optim';

/** An array a kernel reads or writes. */
type KernelArray = Float32Array | Int32Array | Uint8Array;
/** A host array a step's tensors are made from. */
export type HostArray = Float32Array | Uint8Array;

/** The arguments each recorded addon function writes (positions; a list argument's arrays are all written). */
export const WRITTEN_ARGUMENTS: Readonly<Record<string, readonly number[]>> = {
  convForward: [4, 9], convBackward: [6, 7, 8], convBackwardData: [3], convBackwardFilter: [3], matMul: [4],
  binary: [5], compare: [5], select: [3], unary: [2], scaledSum: [3], dropoutMask: [3], reduce: [4], transpose: [3],
  slice: [4], insert: [0], softmax: [3], groupNormForward: [8, 9], groupNormBackward: [9, 10, 11, 12],
  downsample2x: [3], upsample2x: [3], momentUpdate: [5, 6, 7], emaUpdate: [3], releaseFilter: [],
};

/** The argument that names a convolution's filter (0 or absent: no reordered copy is kept). */
const FILTER_ID_ARGUMENT: Readonly<Record<string, number>> = { convForward: 8, convBackward: 3, convBackwardData: 5 };

/** Addon functions that only answer questions (a new pool chunk asks addressOffset): not part of a step's work. */
const QUERIES = new Set<string>(['addressOffset', 'cachedFilters', 'cachedPrimitives', 'threads', 'version', 'convExecutions',
  'bf16Executions', 'effectiveIsa', 'convImplementation', 'matMulImplementation', 'setVerbose', 'sumOfSquares', 'firstNonFinite']);

/** One recorded call: the addon function's name and its arguments (lists and shape arrays copied). */
export interface RecordedCall { name: string; args: unknown[] }

/**
 * Runs body with every call into the addon recorded (the calls still run). `unexpected` names functions called that
 * are neither step work nor queries (a recording that has them cannot be replayed).
 */
export function recordAddonCalls<T>(addon: OnednnAddon, body: () => T): { result: T; calls: RecordedCall[]; unexpected: Set<string> } {
  const calls: RecordedCall[] = [];
  const unexpected = new Set<string>();
  const table = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = new Map<string, (...args: unknown[]) => unknown>();
  for (const name of ADDON_FUNCTIONS) {
    const original = table[name];
    originals.set(name, original);
    if (QUERIES.has(name)) continue;
    table[name] = (...args: unknown[]) => {
      if (name in WRITTEN_ARGUMENTS) calls.push({ name, args: args.map((a) => (Array.isArray(a) ? a.slice() : a)) });
      else unexpected.add(name);
      return original.apply(addon, args);
    };
  }
  try {
    return { result: body(), calls, unexpected };
  } finally {
    for (const [name, original] of originals) table[name] = original;
  }
}

/** Where an array sits in the recorded calls: argument `arg` of call `call`, or item `item` of that list argument. */
interface Place { call: number; arg: number; item: number }

/** What the trainer knows of the step it recorded, besides its calls. */
export interface RecordedStepFacts {
  calls: RecordedCall[];
  unexpected: Set<string>;
  structure: string;
  host: Map<string, HostArray>;            // the arrays the step's tensors were made from (the batch as 'x0')
  stateBeforeArrays: Map<KernelArray, string>;  // the state's arrays before the step, to their keys ('param/<name>', 'm/<name>', 'ema0/<name>', ...)
  stateAfter: Map<string, KernelArray>;    // the state's arrays after the step, by key
  loss: Float32Array;                      // the array the loss scalar was written to
  dropoutLayers: string[];                 // the layers whose dropout masks the step made, in order
  dropoutSeed: number;                     // the step's dropout seed
  scratchBytesInUse: number;               // what the scratch pool still hands out after the step (must be 0)
}

/** The inputs of one replayed step. */
export interface ReplayInputs {
  structure: string;
  host: Map<string, HostArray>;
  state: Map<string, tf.Tensor>;
  dropoutSeed: number;
  momentCoefficients: number[];
  emaBetas: number[];
}

/** What a replayed step did: its loss and gradient norm, and whether its update was applied. */
export interface ReplayOutcome { loss: number; gradNorm: number; applied: boolean }

/** Why a recording cannot be replayed. */
export class NotReplayable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotReplayable';
  }
}

/** A recorded step, ready to replay. */
export class StepRecording {
  verified = false;

  private constructor(
    readonly structure: string,
    private readonly addon: OnednnAddon,
    private readonly calls: RecordedCall[],
    private readonly updatesFrom: number,                 // calls[updatesFrom..] apply the update (moments, weights, averages)
    private readonly hostSlots: Map<string, HostArray>,   // the recorded host arrays the calls read, by name
    private readonly statePlaces: Map<string, Place[]>,   // where each state array sits in the calls
    private readonly dropoutCalls: Array<{ call: number; layer: string }>,
    private readonly momentCall: number,
    private readonly emaCalls: number[],
    private readonly lossArray: Float32Array,
  ) {
    for (const { name, args } of calls) {
      const id = FILTER_ID_ARGUMENT[name] === undefined ? 0 : args[FILTER_ID_ARGUMENT[name]];
      if (typeof id === 'number' && id > 0) this.filterIds.add(id);
    }
  }

  /** The filter identities the recorded convolutions use (their reordered copies are kept by the addon). */
  private readonly filterIds = new Set<number>();

  /** Builds a recording from an eager step's calls, or throws NotReplayable saying what stands in the way. */
  static fromStep(addon: OnednnAddon, facts: RecordedStepFacts): StepRecording {
    const refuse = (why: string): never => { throw new NotReplayable(why); };
    if (facts.unexpected.size) refuse(`the step called ${[...facts.unexpected].join(', ')}, which a recording does not replay`);
    if (facts.scratchBytesInUse !== 0) refuse(`${facts.scratchBytesInUse} bytes of the step's intermediates outlive it`);
    const calls = facts.calls;
    const updatesFrom = calls.findIndex((c) => c.name === 'momentUpdate' || c.name === 'emaUpdate');
    if (updatesFrom < 0 || calls[updatesFrom].name !== 'momentUpdate') refuse('the step did not run the optimiser\'s update kernel first among its updates');
    const momentCall = updatesFrom;
    const emaCalls: number[] = [];
    for (let i = updatesFrom + 1; i < calls.length; i++) {
      if (calls[i].name === 'emaUpdate') emaCalls.push(i);
      else if (calls[i].name !== 'releaseFilter') refuse(`the step called ${calls[i].name} after its update`);
    }

    const statePlaces = new Map<string, Place[]>();
    const placeState = (key: string | undefined, place: Place, group: string) => {
      if (key === undefined || !key.startsWith(group)) refuse(`call ${place.call} (${calls[place.call].name}) reads an array that is not the ${group} state it should be`);
      const list = statePlaces.get(key as string) ?? [];
      list.push(place);
      statePlaces.set(key as string, list);
    };
    // the update: thetas, m, v before (1, 3, 4) and after (5, 6, 7), paired by position
    const moment = calls[momentCall].args;
    const lists = [1, 2, 3, 4, 5, 6, 7].map((a) => moment[a] as Float32Array[]);
    const groups = ['param/', 'm/', 'v/'];
    lists[0].forEach((_, i) => {
      [[1, 5, 0], [3, 6, 1], [4, 7, 2]].forEach(([before, after, g]) => {
        const key = facts.stateBeforeArrays.get((moment[before] as Float32Array[])[i]);
        placeState(key, { call: momentCall, arg: before, item: i }, groups[g]);
        if (facts.stateAfter.get(key as string) !== (moment[after] as Float32Array[])[i]) refuse(`the update does not write ${key}'s new values where the step left them`);
        placeState(key, { call: momentCall, arg: after, item: i }, groups[g]);
      });
    });
    const newParams = new Map<KernelArray, string>(lists[4].map((a, i) => [a, facts.stateBeforeArrays.get(lists[0][i]) as string]));
    emaCalls.forEach((c, j) => {
      const [currents, targets, nexts] = [1, 2, 3].map((a) => calls[c].args[a] as Float32Array[]);
      currents.forEach((current, i) => {
        const key = facts.stateBeforeArrays.get(current);
        placeState(key, { call: c, arg: 1, item: i }, `ema${j}/`);
        placeState(newParams.get(targets[i]), { call: c, arg: 2, item: i }, 'param/');
        if (facts.stateAfter.get(key as string) !== nexts[i]) refuse(`EMA update ${j} does not write ${key}'s new values where the step left them`);
        placeState(key, { call: c, arg: 3, item: i }, `ema${j}/`);
      });
    });

    // before the update: every array read is an intermediate (written earlier), a parameter, a host array, or a constant
    const hostNames = new Map<KernelArray, string>([...facts.host].map(([name, array]) => [array, name]));
    const hostSlots = new Map<string, HostArray>();
    const written = new Set<KernelArray>();
    const constants = new Map<KernelArray, KernelArray>();
    const dropoutCalls: Array<{ call: number; layer: string }> = [];
    for (let c = 0; c < updatesFrom; c++) {
      const { name, args } = calls[c];
      const writes = WRITTEN_ARGUMENTS[name] ?? [];
      if (name === 'momentUpdate' || name === 'emaUpdate') refuse(`the step called ${name} twice`);
      args.forEach((arg, a) => {
        if (!isKernelArray(arg)) return;
        if (writes.includes(a)) {
          if (facts.stateBeforeArrays.has(arg) || hostNames.has(arg)) refuse(`call ${c} (${name}) writes into a weight or a host array`);
          written.add(arg);
          return;
        }
        if (written.has(arg)) return;
        const stateKey = facts.stateBeforeArrays.get(arg);
        if (stateKey !== undefined) return placeState(stateKey, { call: c, arg: a, item: -1 }, 'param/');
        const hostName = hostNames.get(arg);
        if (hostName !== undefined) {
          // a copy of its own: the original may be a pooled array that another tensor takes once the step is over
          let slot = hostSlots.get(hostName);
          if (!slot) hostSlots.set(hostName, slot = (arg as HostArray).slice());
          args[a] = slot;
          return;
        }
        // made in JavaScript during the step and the same every step (a scalar, zeros): a copy of its own
        let copy = constants.get(arg);
        if (!copy) constants.set(arg, copy = arg.slice());
        args[a] = copy;
      });
      if (name === 'dropoutMask') {
        const layer = facts.dropoutLayers[dropoutCalls.length];
        if (layer === undefined || args[0] !== layerSeed(facts.dropoutSeed, layer)) refuse(`dropout mask ${dropoutCalls.length} is not seeded as the step's layer ${layer ?? '(none)'}`);
        dropoutCalls.push({ call: c, layer });
      }
    }
    if (dropoutCalls.length !== facts.dropoutLayers.length) refuse(`the step made ${facts.dropoutLayers.length} dropout masks, ${dropoutCalls.length} natively`);
    if (!written.has(facts.loss)) refuse('the loss was not computed by the recorded kernels');
    for (const gradient of lists[1]) if (!written.has(gradient)) refuse('a gradient was not computed by the recorded kernels');
    return new StepRecording(facts.structure, addon, calls, updatesFrom, hostSlots, statePlaces, dropoutCalls, momentCall, emaCalls, facts.loss);
  }

  /**
   * Replays the step on `inputs`: runs the calls up to the update, reads the loss and the gradient norm (NaN when the
   * loss is not finite), and applies the update in place only when `apply(loss, gradNorm)` says so.
   */
  replay(inputs: ReplayInputs, apply: (loss: number, gradNorm: number) => boolean): ReplayOutcome {
    if (inputs.structure !== this.structure) throw new Error(`replay: a step of structure '${inputs.structure}' given to the recording of '${this.structure}'`);
    this.bindState(inputs.state);
    // the filters' reordered copies kept under the recorded ids may be of other values: an earlier replay whose update
    // was skipped (or another recording's) left them, so every replay reorders its filters afresh, as an eager step does
    for (const id of this.filterIds) this.addon.releaseFilter(id);
    for (const [name, slot] of this.hostSlots) {
      const values = inputs.host.get(name);
      if (!values || values.length !== slot.length || values.constructor !== slot.constructor) {
        throw new Error(`replay: the host array ${name} is missing or not shaped as recorded (${slot.length} ${slot.constructor.name})`);
      }
      slot.set(values as never);
    }
    for (const { call, layer } of this.dropoutCalls) this.calls[call].args[0] = layerSeed(inputs.dropoutSeed, layer);
    this.run(0, this.updatesFrom);
    const loss = this.lossArray[0];
    const gradNorm = Number.isFinite(loss) ? arraysNorm(this.calls[this.momentCall].args[2] as Float32Array[]) : NaN;
    let applied = false;
    try {
      if (apply(loss, gradNorm)) {
        if (inputs.emaBetas.length !== this.emaCalls.length) throw new Error(`replay: ${inputs.emaBetas.length} EMA decays for ${this.emaCalls.length} recorded EMA updates`);
        this.calls[this.momentCall].args[0] = inputs.momentCoefficients.slice();
        this.emaCalls.forEach((c, j) => { this.calls[c].args[0] = inputs.emaBetas[j]; });
        this.run(this.updatesFrom, this.calls.length);
        applied = true;
      }
    } finally {
      forgetFilters(inputs.state);
    }
    return { loss, gradNorm, applied };
  }

  /** Points every place of a state array at the array its tensor holds now. */
  private bindState(state: Map<string, tf.Tensor>): void {
    const backend = tf.backend() as MathBackendCPU;
    for (const [key, places] of this.statePlaces) {
      const tensor = state.get(key);
      const values = tensor && backend.data.has(tensor.dataId) ? backend.data.get(tensor.dataId).values : undefined;
      if (!(values instanceof Float32Array)) throw new Error(`replay: the state ${key} is missing or not a float32 array of this backend`);
      for (const { call, arg, item } of places) {
        const args = this.calls[call].args;
        if (item < 0) args[arg] = values;
        else (args[arg] as Float32Array[])[item] = values;
      }
    }
  }

  private run(from: number, to: number): void {
    const table = this.addon as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (let c = from; c < to; c++) {
      const { name, args } = this.calls[c];
      table[name].apply(this.addon, args);
    }
  }
}

/** Drops the reordered filter copies kept for the state's tensors: a replay changed their values in place. */
export function forgetFilters(state: Map<string, tf.Tensor>): void {
  for (const tensor of state.values()) filterIdentities.forget(tensor.dataId);
}

function isKernelArray(value: unknown): value is KernelArray {
  return value instanceof Float32Array || value instanceof Int32Array || value instanceof Uint8Array;
}

/** Copies of the state's arrays, to put back with restoreState. */
export function snapshotState(state: Map<string, tf.Tensor>): Map<string, Float32Array> {
  const backend = tf.backend() as MathBackendCPU;
  return new Map([...state].map(([key, t]) => [key, (backend.data.get(t.dataId).values as Float32Array).slice()]));
}

/** Writes a snapshot back into the state's arrays (the same tensors, their values as they were). */
export function restoreState(state: Map<string, tf.Tensor>, snapshot: Map<string, Float32Array>): void {
  const backend = tf.backend() as MathBackendCPU;
  for (const [key, values] of snapshot) (backend.data.get(state.get(key)!.dataId).values as Float32Array).set(values);
  forgetFilters(state);
}

/** The first state key whose values differ bit for bit between the tensors and `expected` (null: none). */
export function firstDifference(state: Map<string, tf.Tensor>, expected: Map<string, Float32Array>): string | null {
  const backend = tf.backend() as MathBackendCPU;
  for (const [key, values] of expected) {
    const now = backend.data.get(state.get(key)!.dataId).values as Float32Array;
    const a = Buffer.from(now.buffer, now.byteOffset, now.byteLength), b = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    if (!a.equals(b)) return key;
  }
  return null;
}

/** The scratch pool a trainer's recordings keep their intermediates in; forget it when the trainer goes. */
export class ReplayScratch {
  readonly pool = new FloatBufferPool();

  constructor(addon: OnednnAddon) {
    this.pool.placeWith(addon);  // blocks on cache-line boundaries of the real address, as the backend's own pool
  }

  /** Runs fn with kernel outputs (but the updates') taken from the scratch pool. */
  run<T>(fn: () => T): T {
    return withOutputPool(this.pool, fn);
  }

  dispose(): void {
    forgetPool(this.pool);
  }
}
