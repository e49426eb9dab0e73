/**
 * Optimisers for training: Adam (EDM pretraining) and RAdam (ECT tuning), with EDM's learning-rate ramp-up.
 *
 * Non-finite gradients: the trainer never hands apply() one. Its one policy (lib/train/trainer.ts step, the
 * run's onNonFinite) stops or skips a step whose loss or gradient norm is NaN or infinite before the optimiser is
 * reached. Used alone, the optimiser does what EDM's and ECT's training loops do, torch.nan_to_num: NaN entries
 * become 0 and +-infinity +-1e5, alike in its three implementations (tfjs ops, the JavaScript loop and the
 * backends' update kernel), so that they stay interchangeable bit for bit.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { OptimizerConfig } from '../config/types';
import { validateOptimizerConfig } from '../config/schema';
import { backendHasKernel, indexedInputs, momentCoefficientList, MOMENT_UPDATE_KERNEL, type MomentUpdateAttrs } from '../backend/update-kernels';
import { onednnAddon } from '../backend/onednn';

/** Everything needed to resume an optimiser: the update count and its moment tensors. */
export interface OptimizerState {
  step: number;                   // updates applied so far
  slots: Map<string, tf.Tensor>;  // 'm/<param>' (first moment) and 'v/<param>' (second moment)
}

/** An optimiser that updates a fixed set of named variables in place. */
export interface Optimizer {
  /** Updates applied so far. */
  readonly step: number;
  /** The learning rate for a step taken after `imagesSeen` training images (with the linear ramp-up). */
  learningRate(imagesSeen: number): number;
  /** Applies one update from the gradients (NaN as 0, +-infinity as +-1e5: see the file's header); the caller keeps ownership of `grads`. */
  apply(grads: Map<string, tf.Tensor>, imagesSeen: number): void;
  /** A copy of the state; the caller disposes its tensors. */
  getState(): OptimizerState;
  /** Replaces the state by a copy of `state`; the caller keeps ownership of its tensors. */
  setState(state: OptimizerState): void;
  /** Frees the moment tensors (not the parameters). */
  dispose(): void;
  /**
   * For a replayed step (lib/train/step-replay.ts): the update kernel's coefficient list of the next step, taken
   * after `imagesSeen` images (what apply passes the backend's kernel), or null when apply would not use the kernel.
   */
  nextKernelCoefficients?(imagesSeen: number): number[] | null;
  /** Counts an update that a replayed step applied in place (the kernel's call, without apply). */
  countReplayedUpdate?(): void;
  /** The live moment tensors by slot name ('m/<param>', 'v/<param>'), to read (never dispose) them. */
  liveSlots?(): Map<string, tf.Tensor>;
}

/** Value that replaces an infinite gradient entry (with its sign), as in EDM and ECT (docs/method.md §6.5). */
const GRADIENT_INF_REPLACEMENT = 1e5;

/** RAdam uses the rectified adaptive step only once the variance estimate is tractable: rho_t > 5. */
const RADAM_RHO_THRESHOLD = 5;

/** One gradient entry with NaN -> 0 and +-infinity -> +-1e5. */
function sanitizedValue(x: number): number {
  if (Number.isNaN(x)) return 0;
  if (x === Infinity) return GRADIENT_INF_REPLACEMENT;
  if (x === -Infinity) return -GRADIENT_INF_REPLACEMENT;
  return x;
}

/**
 * Whether the current backend keeps tensors in JS typed arrays (cpu, and the onednn backend built on it).
 * There one fused loop per parameter is far faster than the ~15 separate element-wise kernels of an update
 * (25M parameters: ~8 s per RAdam step with kernels on 2 cores).
 */
export function hasJsTensorStorage(): boolean {
  return tf.backend() instanceof MathBackendCPU;
}

/**
 * A float32 tensor's values to read at once: where tensors live in JS memory (the cpu backend, and onednn, whose
 * reads copy its pooled arrays), the backend's own array, without a copy; dataSync elsewhere. Read it and let it
 * go: the array is the tensor's storage (never write to it) and is recycled once the tensor is disposed.
 */
export function peekFloat32(t: tf.Tensor): Float32Array {
  const backend = tf.backend();
  if (t.dtype === 'float32' && backend instanceof MathBackendCPU && backend.data.has(t.dataId)) {
    const values = backend.data.get(t.dataId).values;
    if (values instanceof Float32Array) return values;
  }
  return t.dataSync() as Float32Array;
}

/**
 * How updates are computed: 'tensor' with tfjs kernels, 'fused' in one JS loop per parameter (works on any
 * backend via dataSync, fast where tensors live in JS memory), 'auto' fused exactly there.
 */
export type UpdateKernel = 'auto' | 'tensor' | 'fused';

/**
 * Replaces NaN entries of a gradient by 0 and +-infinity by +-1e5 (torch.nan_to_num as in EDM and ECT).
 * Returns a new tensor; the input is not disposed. `kernel` as in createOptimizer.
 */
export function sanitizeGradient(g: tf.Tensor, kernel: UpdateKernel = 'auto'): tf.Tensor {
  const fused = kernel === 'fused' || (kernel === 'auto' && hasJsTensorStorage());
  if (!fused || g.dtype !== 'float32') {
    return tf.tidy(() => {
      const noNaN = tf.where(tf.isNaN(g), tf.zerosLike(g), g);
      const capped = tf.mul(tf.sign(noNaN), GRADIENT_INF_REPLACEMENT);
      return tf.where(tf.isInf(noNaN), capped, noNaN);
    });
  }
  const values = g.dataSync() as Float32Array;
  const clean = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) clean[i] = sanitizedValue(values[i]);
  return tf.tensor(clean, g.shape, 'float32');
}

/**
 * The global L2 norm of a set of gradients, NaN or infinite when any entry is. Where tensors live in JS memory
 * one loop over the arrays, in float64 (no kernel calls, no overflow for finite float32 entries); elsewhere one
 * fused sum of squares read once (float32, so a norm above ~1e19 reads as infinite: a blow-up either way).
 */
export function gradientNorm(grads: Iterable<tf.Tensor>): number {
  const all = [...grads];
  if (hasJsTensorStorage() && all.every((g) => g.dtype === 'float32')) return arraysNorm(all.map(peekFloat32));
  if (all.length === 0) return 0;
  const total = tf.tidy(() => tf.addN(all.map((g) => tf.sum(tf.square(g)))));
  const value = total.dataSync()[0];
  total.dispose();
  return Math.sqrt(value);
}

/**
 * The L2 norm of arrays taken together, NaN or infinite when an entry is (gradientNorm's loop): summed in float64 by the
 * native addon where it is loaded (eight lanes per array, 6-10x the JavaScript loop's speed), else in their order.
 * The trainer reads the norm only for whether it is finite and to report it.
 */
export function arraysNorm(arrays: Iterable<Float32Array>): number {
  const addon = onednnAddon();
  return addon ? Math.sqrt(addon.sumOfSquares([...arrays])) : arraysNormInOrder(arrays);
}

/** arraysNorm without the addon: one float64 sum over the arrays in their order. */
export function arraysNormInOrder(arrays: Iterable<Float32Array>): number {
  let sumOfSquares = 0;
  for (const values of arrays) {
    for (let i = 0; i < values.length; i++) sumOfSquares += values[i] * values[i];
  }
  return Math.sqrt(sumOfSquares);
}

/**
 * EDM's learning-rate ramp-up: lr * min(imagesSeen / (rampupKimg * 1000), 1); rampupKimg = 0 means no ramp.
 * With decayKimg > 0 the rate then decays as EDM2's inverse square root, lr / sqrt(max(kimg / decayKimg, 1)):
 * constant up to decayKimg, half of it at 4x those images.
 */
export function rampedLearningRate(lr: number, rampupKimg: number, imagesSeen: number, decayKimg = 0): number {
  const kimg = Math.max(imagesSeen, 0) / 1000;
  const ramp = rampupKimg > 0 ? Math.min(kimg / rampupKimg, 1) : 1;
  const decay = decayKimg > 0 ? 1 / Math.sqrt(Math.max(kimg / decayKimg, 1)) : 1;
  return lr * ramp * decay;
}

/**
 * The learning rate of a step taken after `imagesSeen` images of a run planned for `runImages`: EDM's ramp-up and
 * EDM2's inverse square-root decay (rampedLearningRate), times a linear cool-down to zero over the run's last
 * cfg.cooldownFraction, as in warmup-stable-decay schedules: factor min(1, (1 - imagesSeen / runImages) / fraction).
 * Without runImages (an optimiser used alone) there is no cool-down.
 */
export function scheduledLearningRate(cfg: OptimizerConfig, imagesSeen: number, runImages?: number): number {
  const base = rampedLearningRate(cfg.lr, cfg.rampupKimg, imagesSeen, cfg.decayKimg ?? 0);
  const fraction = cfg.cooldownFraction ?? 0;
  if (!(fraction > 0) || runImages === undefined) return base;
  return base * Math.min(1, Math.max(0, (1 - imagesSeen / runImages) / fraction));
}

/** The scalars of one update that are the same for every parameter. */
interface StepCoefficients {
  momentumScale: number;   // multiplies m
  adaptive: boolean;       // whether the step divides by sqrt(v)
  sqrtVScale: number;      // denominator = sqrt(v) * sqrtVScale + eps
}

/** Adam (torch.optim.Adam as used by EDM): step = lr * m_hat / (sqrt(v_hat) + eps). */
function adamCoefficients(cfg: OptimizerConfig, lr: number, step: number): StepCoefficients {
  const biasCorrection1 = 1 - cfg.beta1 ** step;
  const biasCorrection2 = 1 - cfg.beta2 ** step;
  return { momentumScale: lr / biasCorrection1, adaptive: true, sqrtVScale: 1 / Math.sqrt(biasCorrection2) };
}

/** RAdam's length of the approximated simple moving average at step t: rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t). */
export function radamRho(beta2: number, step: number): { rhoInf: number; rhoT: number } {
  const rhoInf = 2 / (1 - beta2) - 1;
  const rhoT = rhoInf - (2 * step * beta2 ** step) / (1 - beta2 ** step);
  return { rhoInf, rhoT };
}

/**
 * RAdam (torch.optim.RAdam, no weight decay): if rho_t > 5,
 * step = lr * r_t * m_hat * sqrt(1 - beta2^t) / (sqrt(v) + eps) with
 * r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)); otherwise step = lr * m_hat.
 * (As in torch, eps is added to sqrt(v) before the bias correction of v, unlike Adam.)
 */
function radamCoefficients(cfg: OptimizerConfig, lr: number, step: number): StepCoefficients {
  const biasCorrection1 = 1 - cfg.beta1 ** step;
  const biasCorrection2 = 1 - cfg.beta2 ** step;
  const { rhoInf, rhoT } = radamRho(cfg.beta2, step);
  if (rhoT <= RADAM_RHO_THRESHOLD) {
    return { momentumScale: lr / biasCorrection1, adaptive: false, sqrtVScale: 1 };
  }
  const rectification = Math.sqrt(((rhoT - 4) * (rhoT - 2) * rhoInf) / ((rhoInf - 4) * (rhoInf - 2) * rhoT));
  // lr * r_t * sqrt(bc2) / bc1 * m / (sqrt(v) + eps)
  return {
    momentumScale: (lr * rectification * Math.sqrt(biasCorrection2)) / biasCorrection1,
    adaptive: true,
    sqrtVScale: 1,
  };
}

/** Adam-family optimiser with per-parameter first and second moments kept as tensors. */
class MomentOptimizer implements Optimizer {
  private stepCount = 0;
  private readonly firstMoment = new Map<string, tf.Tensor>();
  private readonly secondMoment = new Map<string, tf.Tensor>();

  constructor(private readonly cfg: OptimizerConfig, private readonly params: Map<string, tf.Variable>, private readonly kernel: UpdateKernel,
              private readonly runImages?: number) {
    for (const [name, param] of params) {
      this.firstMoment.set(name, tf.keep(tf.zerosLike(param)));
      this.secondMoment.set(name, tf.keep(tf.zerosLike(param)));
    }
  }

  get step(): number {
    return this.stepCount;
  }

  learningRate(imagesSeen: number): number {
    return scheduledLearningRate(this.cfg, imagesSeen, this.runImages);
  }

  apply(grads: Map<string, tf.Tensor>, imagesSeen: number): void {
    for (const [name, grad] of grads) {
      const param = this.params.get(name);
      if (param === undefined) throw new Error(`optimizer: gradient for unknown parameter '${name}'`);
      if (!tf.util.arraysEqual(grad.shape, param.shape)) {
        throw new Error(`optimizer: gradient for '${name}' has shape [${grad.shape}], parameter has [${param.shape}]`);
      }
    }
    const step = this.stepCount + 1;
    const coefficients = this.coefficients(imagesSeen);
    const fused = this.kernel === 'fused' || (this.kernel === 'auto' && hasJsTensorStorage());
    // fused: the backend's own update kernel where it has one (native, threaded, every parameter in one call), else
    // the JavaScript loop. Parameters without a gradient this step keep their value and moments (as torch skips them).
    if (this.usesKernel()) {
      this.kernelUpdate(grads, coefficients);
      this.stepCount = step;
      return;
    }
    const update = fused ? this.fusedUpdate : this.tensorUpdate;
    for (const [name, grad] of grads) {
      const param = this.params.get(name)!;
      const oldM = this.firstMoment.get(name)!;
      const oldV = this.secondMoment.get(name)!;
      const [m, v] = update.call(this, param, grad, oldM, oldV, coefficients);
      oldM.dispose();
      oldV.dispose();
      // kept: the moments outlive any tf.tidy the caller runs apply() in
      this.firstMoment.set(name, tf.keep(m));
      this.secondMoment.set(name, tf.keep(v));
    }
    this.stepCount = step;
  }

  /** The scalars of the next update, taken after `imagesSeen` images. */
  private coefficients(imagesSeen: number): StepCoefficients {
    const step = this.stepCount + 1;
    const lr = this.learningRate(imagesSeen);
    return this.cfg.name === 'adam' ? adamCoefficients(this.cfg, lr, step) : radamCoefficients(this.cfg, lr, step);
  }

  /** Whether apply runs the backend's update kernel (one call over every parameter). */
  private usesKernel(): boolean {
    const fused = this.kernel === 'fused' || (this.kernel === 'auto' && hasJsTensorStorage());
    return fused && backendHasKernel(MOMENT_UPDATE_KERNEL);
  }

  nextKernelCoefficients(imagesSeen: number): number[] | null {
    if (!this.usesKernel()) return null;
    const { beta1, beta2, eps } = this.cfg;
    return momentCoefficientList({ beta1, beta2, eps, ...this.coefficients(imagesSeen), infReplacement: GRADIENT_INF_REPLACEMENT });
  }

  countReplayedUpdate(): void {
    this.stepCount += 1;
  }

  liveSlots(): Map<string, tf.Tensor> {
    const slots = new Map<string, tf.Tensor>();
    for (const [name, m] of this.firstMoment) slots.set(`m/${name}`, m);
    for (const [name, v] of this.secondMoment) slots.set(`v/${name}`, v);
    return slots;
  }

  /** One parameter's update with tfjs kernels; returns the new moments. */
  private tensorUpdate(param: tf.Variable, grad: tf.Tensor, oldM: tf.Tensor, oldV: tf.Tensor, c: StepCoefficients): [tf.Tensor, tf.Tensor] {
    const { beta1, beta2, eps } = this.cfg;
    return tf.tidy(() => {
      const g = sanitizeGradient(grad, 'tensor');
      const newM = tf.add(tf.mul(oldM, beta1), tf.mul(g, 1 - beta1));           // m_t = beta1 m + (1 - beta1) g
      const newV = tf.add(tf.mul(oldV, beta2), tf.mul(tf.square(g), 1 - beta2)); // v_t = beta2 v + (1 - beta2) g^2
      let update = tf.mul(newM, c.momentumScale);
      if (c.adaptive) update = tf.div(update, tf.add(tf.mul(tf.sqrt(newV), c.sqrtVScale), eps));
      param.assign(tf.sub(param, update));
      return [newM, newV];
    });
  }

  /** fusedUpdate's loop run by the backend's own kernel over every parameter with a gradient, in one call (lib/backend/update-kernels.ts). */
  private kernelUpdate(grads: Map<string, tf.Tensor>, c: StepCoefficients): void {
    const names = [...grads.keys()];
    if (!names.length) return;
    const { beta1, beta2, eps } = this.cfg;
    const attrs: MomentUpdateAttrs = { beta1, beta2, eps, ...c, infReplacement: GRADIENT_INF_REPLACEMENT, count: names.length };
    const params = names.map((name) => this.params.get(name)!);
    const ms = names.map((name) => this.firstMoment.get(name)!), vs = names.map((name) => this.secondMoment.get(name)!);
    const inputs = indexedInputs({ param: params, grad: names.map((name) => grads.get(name)!), m: ms, v: vs });
    const outs = tf.engine().runKernel(MOMENT_UPDATE_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    const k = names.length;
    names.forEach((name, i) => {
      params[i].assign(outs[i]);
      outs[i].dispose();
      ms[i].dispose();
      vs[i].dispose();
      // kept: the moments outlive any tf.tidy the caller runs apply() in
      this.firstMoment.set(name, tf.keep(outs[k + i]));
      this.secondMoment.set(name, tf.keep(outs[2 * k + i]));
    });
  }

  /** The same update as tensorUpdate in one loop over the typed arrays (no float32 rounding of intermediates). */
  private fusedUpdate(param: tf.Variable, grad: tf.Tensor, oldM: tf.Tensor, oldV: tf.Tensor, c: StepCoefficients): [tf.Tensor, tf.Tensor] {
    const { beta1, beta2, eps } = this.cfg;
    // on cpu backends dataSync returns the backend's own arrays: read them, write only fresh ones
    const theta = param.dataSync() as Float32Array;
    const g = grad.dataSync() as Float32Array;
    const m = oldM.dataSync() as Float32Array;
    const v = oldV.dataSync() as Float32Array;
    const newTheta = new Float32Array(theta.length);
    const newM = new Float32Array(theta.length);
    const newV = new Float32Array(theta.length);
    for (let i = 0; i < theta.length; i++) {
      const gi = sanitizedValue(g[i]);
      const mi = beta1 * m[i] + (1 - beta1) * gi;
      const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
      const update = c.adaptive ? (c.momentumScale * mi) / (Math.sqrt(vi) * c.sqrtVScale + eps) : c.momentumScale * mi;
      newTheta[i] = theta[i] - update;
      newM[i] = mi;
      newV[i] = vi;
    }
    tf.tidy(() => param.assign(tf.tensor(newTheta, param.shape, 'float32')));
    return [tf.tensor(newM, param.shape, 'float32'), tf.tensor(newV, param.shape, 'float32')];
  }

  getState(): OptimizerState {
    const slots = new Map<string, tf.Tensor>();
    for (const [name, m] of this.firstMoment) slots.set(`m/${name}`, m.clone());
    for (const [name, v] of this.secondMoment) slots.set(`v/${name}`, v.clone());
    return { step: this.stepCount, slots };
  }

  setState(state: OptimizerState): void {
    if (!(Number.isInteger(state.step) && state.step >= 0)) throw new Error(`optimizer state: step must be an integer >= 0, got ${state.step}`);
    const problems: string[] = [];
    for (const [name, param] of this.params) {
      for (const prefix of ['m', 'v']) {
        const slot = state.slots.get(`${prefix}/${name}`);
        if (slot === undefined) problems.push(`missing slot ${prefix}/${name}`);
        else if (!tf.util.arraysEqual(slot.shape, param.shape)) problems.push(`slot ${prefix}/${name} has shape [${slot.shape}], parameter has [${param.shape}]`);
      }
    }
    for (const key of state.slots.keys()) {
      const name = key.slice(2);
      if (!(key.startsWith('m/') || key.startsWith('v/')) || !this.params.has(name)) problems.push(`unexpected slot ${key}`);
    }
    if (problems.length > 0) throw new Error(`optimizer state does not match the parameters: ${problems.join('; ')}`);
    for (const name of this.params.keys()) {
      this.firstMoment.get(name)!.dispose();
      this.secondMoment.get(name)!.dispose();
      this.firstMoment.set(name, tf.keep(state.slots.get(`m/${name}`)!.clone()));
      this.secondMoment.set(name, tf.keep(state.slots.get(`v/${name}`)!.clone()));
    }
    this.stepCount = state.step;
  }

  dispose(): void {
    for (const m of this.firstMoment.values()) m.dispose();
    for (const v of this.secondMoment.values()) v.dispose();
    this.firstMoment.clear();
    this.secondMoment.clear();
  }
}

/**
 * Creates the optimiser named by `cfg` ('adam' or 'radam') over the given float32 parameters, with zero moments.
 * `kernel` chooses how updates are computed (default 'auto': fused on cpu-storage backends, tfjs kernels elsewhere);
 * `runImages`, the images the run is planned for, places a cool-down (cfg.cooldownFraction).
 */
export function createOptimizer(cfg: OptimizerConfig, params: Map<string, tf.Variable>, kernel: UpdateKernel = 'auto', runImages?: number): Optimizer {
  validateOptimizerConfig(cfg);  // the same check as config resolution: a resolved config never fails here
  for (const [name, param] of params) {
    if (param.dtype !== 'float32') throw new Error(`optimizer: parameter '${name}' has dtype ${param.dtype}; only float32 is supported`);
  }
  if ((cfg.cooldownFraction ?? 0) > 0 && runImages === undefined) {
    throw new Error(`optimizer.cooldownFraction ${cfg.cooldownFraction}: a cool-down needs the run's planned length (runImages)`);
  }
  return new MomentOptimizer(cfg, params, kernel, runImages);
}
