/** The DDPM++ UNet (EDM's SongUNet) of docs/method.md §3, or EDM's NCSN++ setting of it: raw network F(c_in x, c_noise), NHWC. */
import * as tf from '@tensorflow/tfjs-core';
import type { NetworkConfig, Precision } from '../config/types';
import { planUNet, type BlockPlan, type UNetPlan } from './architecture';
import { scaledSum } from './fused';
import { currentPrecision, withPrecision } from './precision';
import {
  conv2d, convDownFused, DropoutMasks, fourierEmbedding, fourierEmbeddingValues, groupNorm, groupNormConv, isTensor, linear, ParamFactory, positionalEmbedding,
  positionalEmbeddingValues, resample2x, selfAttention, silu, type WeightSource,
} from './layers';

export { DropoutMasks } from './layers';

const SKIP_SCALE = Math.SQRT1_2;   // residual sums are scaled by sqrt(1/2)
const ATTN_GAIN = Math.sqrt(0.2);  // EDM's init gain for the qkv projection
const ZERO_INIT = 1e-5;            // EDM's "init_zero": tiny xavier weights on the last layer of a branch
const FOURIER_SCALE = 16;          // EDM's FourierEmbedding: frequencies ~ N(0, 16^2)

/**
 * Precision of the convolutions that read the network's input (the input convolution; NCSN++'s first residual-encoder
 * convolution), whatever the run's precision. ECT's loss is the distance between the network at x_t and at x_r, two
 * inputs that differ by (t - r) times the noise; late in training r is so close to t that rounding the input to
 * bfloat16's 8 significant bits erases much of that difference. Measured (bench/bf16-loss-floor.ts on the Fashion-MNIST
 * recipe's final weights, stage 7): with every convolution in bf16 the loss is 1.91x the fp32 one; with these in
 * float32, 1.06x, and the output convolution in float32 as well changes nothing more (docs/benchmarks.md). They are
 * among the cheapest convolutions of the network (1 or 3 input channels).
 */
export const INPUT_LAYERS_PRECISION: Precision = 'fp32';

/**
 * Class labels of a batch, as every function of the library takes them: one integer class id in
 * [0, net.labelDim) per image. The UNet turns them into EDM's one-hot class_labels; nothing else does.
 */
export type ClassLabels = ArrayLike<number>;

export interface ForwardOptions {
  training?: boolean;                // enables dropout and label dropout (then `dropout` holds the step's masks)
  dropout?: DropoutMasks;            // the training step's masks, seeded from (run seed, iteration, 'dropout' / 'label-dropout')
  weights?: Map<string, tf.Tensor>;  // run with other weights (for example the EMA) instead of the variables
  labels?: ClassLabels;              // class ids [B]: required by a conditional network (net.labelDim > 0), refused by another
  classInput?: Float32Array;         // the labels' class input computed ahead (UNet.classInputValues of these labels and masks)
}

/**
 * The noise embedding's input features computed on the host ahead of the pass ([B * features], UNet.noiseEmbeddingValues),
 * in place of c_noise: a training step computes every per-step host array before its kernels run (lib/train/step-replay.ts).
 */
export class HostNoiseEmbedding {
  constructor(readonly values: Float32Array, readonly batch: number) {}
}

/** What creates the parameters: a ParamFactory, or a counter of their sizes. */
interface ParameterSink { add(...args: Parameters<ParamFactory['add']>): unknown }

/** The UNet: its parameters under stable names and a pure forward function. */
export class UNet {
  readonly plan: UNetPlan;
  readonly params: Map<string, tf.Variable>;

  constructor(readonly cfg: NetworkConfig, seed: number) {
    this.plan = planUNet(cfg);
    const factory = new ParamFactory(seed);
    this.createParams(factory);
    this.params = factory.params;
  }

  /** Number of scalar parameters. */
  paramCount(): number {
    let total = 0;
    for (const p of this.params.values()) total += p.size;
    return total;
  }

  /** Shapes of every parameter, by name (for checkpoint validation). */
  paramShapes(): Map<string, { shape: number[] }> {
    return new Map([...this.params].map(([name, p]) => [name, { shape: p.shape.slice() }]));
  }

  /**
   * F(x, c_noise): x is the c_in-scaled input [B, H, W, C]; cNoise is [B], a tensor or host values (then the noise
   * embedding is computed in float64, see positionalEmbedding). Returns [B, H, W, C]. Call inside tf.tidy (or dispose the result).
   */
  forward(x: tf.Tensor4D, cNoise: tf.Tensor1D | ArrayLike<number> | HostNoiseEmbedding, opts: ForwardOptions = {}): tf.Tensor4D {
    const [batch, h, w, c] = x.shape;
    if (h !== this.cfg.resolution || w !== this.cfg.resolution || c !== this.cfg.imageChannels) {
      throw new Error(`UNet expects [B, ${this.cfg.resolution}, ${this.cfg.resolution}, ${this.cfg.imageChannels}] input, got [${x.shape}]`);
    }
    const noiseCount = isTensor(cNoise) ? cNoise.shape[0] : cNoise instanceof HostNoiseEmbedding ? cNoise.batch : cNoise.length;
    if (noiseCount !== batch) throw new Error(`c_noise has ${noiseCount} entries for a batch of ${batch}`);
    const labelIds = this.checkLabels(opts.labels, batch);
    const weights = this.weightSource(opts.weights);
    const training = opts.training ?? false;
    const useDropout = training && this.cfg.dropout > 0;
    const useLabelDropout = training && this.cfg.labelDropout > 0;
    // no hidden random state: a training pass with dropout takes the step's masks from its loss
    if ((useDropout || useLabelDropout) && !opts.dropout) {
      throw new Error(`UNet: a training pass with ${useDropout ? 'dropout' : 'label dropout'} needs the step's DropoutMasks (opts.dropout)`);
    }
    const masks = useDropout ? opts.dropout : undefined;
    return tf.tidy(() => {
      // noise embedding: positional features (+ the label embedding) -> Linear -> SiLU -> Linear -> SiLU
      let emb = cNoise instanceof HostNoiseEmbedding
        ? tf.tensor2d(cNoise.values, [batch, cNoise.values.length / batch])
        : this.plan.arch.embedding === 'fourier'
          ? fourierEmbedding(cNoise, weights('map.noise.freqs'))
          : positionalEmbedding(cNoise, this.plan.noiseChannels);
      if (labelIds) {
        // EDM: emb += map_label(class_labels * sqrt(label_dim)), with one-hot class_labels zeroed where label dropout drops them
        let classes: tf.Tensor2D;
        if (opts.classInput) {
          if (opts.classInput.length !== batch * this.cfg.labelDim) throw new Error(`UNet: a class input of ${opts.classInput.length} values for ${batch} x ${this.cfg.labelDim}`);
          classes = tf.tensor2d(opts.classInput, [batch, this.cfg.labelDim]);
        } else {
          const oneHot = tf.cast(tf.oneHot(tf.tensor1d(labelIds, 'int32'), this.cfg.labelDim), 'float32');
          classes = tf.mul(oneHot, Math.sqrt(this.cfg.labelDim)) as tf.Tensor2D;
          if (useLabelDropout) classes = tf.mul(classes, (opts.dropout as DropoutMasks).labelMask(batch)) as tf.Tensor2D;
        }
        emb = tf.add(emb, linear(weights, 'map.label', classes)) as tf.Tensor2D;
      }
      emb = silu(linear(weights, 'map.layer0', emb)) as tf.Tensor2D;
      emb = silu(linear(weights, 'map.layer1', emb)) as tf.Tensor2D;

      // The convolutions that read the input itself run in float32 also in bf16 (see INPUT_LAYERS_PRECISION)
      let hidden = withPrecision(INPUT_LAYERS_PRECISION, () => conv2d(weights, this.plan.inputConv.name, x));
      const skips: tf.Tensor4D[] = [hidden];
      let aux = x;  // NCSN++'s residual encoder: the input, carried down beside the blocks
      // Each block in its own tidy: what the block made and no later op needs is freed at its end, not at the end of
      // the whole pass (under a gradient tape, what backward needs is kept by the tape's own saved copies).
      for (const block of this.plan.encoder) {
        const input = hidden;
        hidden = tf.tidy(() => this.block(weights, block, input, emb, masks));
        if (block.auxResidual) {
          const name = block.auxResidual.name, source = aux;  // the input itself only in the first such block
          const residual = withPrecision(source === x ? INPUT_LAYERS_PRECISION : currentPrecision(),
            () => convDownFused(weights, name, source, this.plan.arch.resampleTaps));
          hidden = aux = scaledSum(hidden, residual, SKIP_SCALE);
        }
        skips.push(hidden);
      }
      for (const block of this.plan.decoder) {
        const input = hidden;
        const skip = block.concatSkip ? skips.pop() as tf.Tensor4D : null;
        hidden = tf.tidy(() => this.block(weights, block, skip ? tf.concat([input, skip], 3) : input, emb, masks));
      }
      const out = this.plan.output.name;
      return groupNormConv(weights, `${out}.norm`, hidden, { silu: true }, `${out}.conv`);
    });
  }

  /**
   * The noise embedding's features of host c_noise values, as forward computes them from host values (with `weights`'
   * frequencies for the Fourier embedding): forward given them as a HostNoiseEmbedding makes the same pass.
   */
  noiseEmbeddingValues(cNoise: ArrayLike<number>, weights?: Map<string, tf.Tensor>): HostNoiseEmbedding {
    const values = this.plan.arch.embedding === 'fourier'
      ? fourierEmbeddingValues(cNoise, this.weightSource(weights)('map.noise.freqs').dataSync())
      : positionalEmbeddingValues(cNoise, this.plan.noiseChannels);
    return new HostNoiseEmbedding(values, cNoise.length);
  }

  /**
   * The class input forward makes of class ids, on the host: EDM's one-hot class_labels times sqrt(labelDim), zeroed
   * for the images whose labels `dropout` drops (a training pass with label dropout): the same float32 values, so forward
   * given them as opts.classInput makes the same pass. Null for an unconditional network.
   */
  classInputValues(labels: ClassLabels | undefined, batch: number, dropout?: DropoutMasks, training = false): Float32Array | null {
    const labelIds = this.checkLabels(labels, batch);
    if (!labelIds) return null;
    const dim = this.cfg.labelDim;
    const scale = Math.fround(Math.sqrt(dim));
    const keep = training && this.cfg.labelDropout > 0 && dropout ? dropout.labelKeep(batch) : null;
    const values = new Float32Array(batch * dim);
    labelIds.forEach((id, b) => { values[b * dim + id] = keep ? scale * keep[b] : scale; });
    return values;
  }

  /** True when the network has a label embedding (net.labelDim > 0) and so needs class labels. */
  get conditional(): boolean {
    return this.cfg.labelDim > 0;
  }

  /** Frees the parameters. */
  dispose(): void {
    for (const p of this.params.values()) p.dispose();
  }

  /**
   * Checks a batch's class ids against the network (forward turns them into EDM's one-hot class_labels, the one place
   * that does): null for an unconditional network. A conditional network without labels, an unconditional one with
   * labels, or an id that is not a class is an error.
   */
  private checkLabels(labels: ClassLabels | undefined, batch: number): Int32Array | null {
    const classes = this.cfg.labelDim;
    if (!classes) {
      if (labels) throw new Error('UNet: class labels given, but this network is unconditional (net.labelDim 0)');
      return null;
    }
    if (!labels) throw new Error(`UNet: this network is class-conditional (net.labelDim ${classes}) and needs a class label per image`);
    if (labels.length !== batch) throw new Error(`UNet: ${labels.length} class labels for a batch of ${batch}`);
    const ids = Int32Array.from(labels);
    const bad = ids.findIndex((id, i) => id !== labels[i] || id < 0 || id >= classes);
    if (bad >= 0) throw new Error(`UNet: class label ${labels[bad]} (image ${bad}) is not a class id in 0..${classes - 1}`);
    return ids;
  }

  private weightSource(override?: Map<string, tf.Tensor>): WeightSource {
    const table: Map<string, tf.Tensor> = override ?? this.params;
    return (name: string) => {
      const value = table.get(name);
      if (!value) throw new Error(`UNet: no weight named ${name}`);
      return value;
    };
  }

  /** One residual block: GN-SiLU-(resample)-conv, add embedding, GN-SiLU-dropout-conv, shortcut, attention. */
  private block(w: WeightSource, plan: BlockPlan, x: tf.Tensor4D, emb: tf.Tensor2D, masks?: DropoutMasks): tf.Tensor4D {
    const resample = (t: tf.Tensor4D) => (plan.resample === 'none' ? t : resample2x(t, plan.resample, this.plan.arch.resampleTaps));
    const name = plan.name;
    let h = plan.resample === 'none'
      ? groupNormConv(w, `${name}.norm0`, x, { silu: true }, `${name}.conv0`)
      : conv2d(w, `${name}.conv0`, resample(groupNorm(w, `${name}.norm0`, x, { silu: true })));
    // the embedding's per-channel shift is added inside the norm and dropout applied by it: silu(GroupNorm(h + affine(emb))) * mask
    const mask = masks?.mask(`${name}.dropout`, h.shape);
    h = groupNormConv(w, `${name}.norm1`, h, { shift: linear(w, `${name}.affine`, emb), silu: true, mask }, `${name}.conv1`);
    const shortcut = plan.skipConv ? conv2d(w, `${name}.skip`, resample(x)) : x;
    h = scaledSum(h, shortcut, SKIP_SCALE);
    if (plan.attention) h = scaledSum(h, selfAttention(w, `${name}.attn`, h), SKIP_SCALE);
    return h;
  }

  /** Number of scalar parameters of a network config, counted from its layer plan (no tensors are made). */
  static parameterCount(cfg: NetworkConfig): number {
    let total = 0;
    for (const { shape } of UNet.parameterShapes(cfg).values()) total += shape.reduce((a, b) => a * b, 1);
    return total;
  }

  /** The shape of every parameter of a network config, by name, from its layer plan (no tensors are made). */
  static parameterShapes(cfg: NetworkConfig): Map<string, { shape: number[] }> {
    const shapes = new Map<string, { shape: number[] }>();
    const recorder: ParameterSink = { add: (name, shape) => { shapes.set(name, { shape: [...shape] }); } };
    UNet.prototype.createParams.call({ cfg, plan: planUNet(cfg) }, recorder);
    return shapes;
  }

  private createParams(this: Pick<UNet, 'cfg' | 'plan'>, f: ParameterSink): void {
    const conv = (name: string, k: number, cin: number, cout: number, scale = 1) => {
      f.add(`${name}.weight`, [k, k, cin, cout], { kind: 'xavier', fanIn: cin * k * k, fanOut: cout * k * k, scale });
      f.add(`${name}.bias`, [cout], { kind: 'zeros' });
    };
    const dense = (name: string, cin: number, cout: number) => {
      f.add(`${name}.weight`, [cin, cout], { kind: 'xavier', fanIn: cin, fanOut: cout });
      f.add(`${name}.bias`, [cout], { kind: 'zeros' });
    };
    const norm = (name: string, c: number) => {
      f.add(`${name}.weight`, [c], { kind: 'ones' });
      f.add(`${name}.bias`, [c], { kind: 'zeros' });
    };
    const { plan } = this;
    // NCSN++'s stored random frequencies (EDM: randn * 16), created first only there, so DDPM++ weights keep their seeds
    if (plan.arch.embedding === 'fourier') f.add('map.noise.freqs', [plan.noiseChannels / 2], { kind: 'normal', scale: FOURIER_SCALE });
    dense('map.layer0', plan.noiseChannels, plan.embedChannels);
    dense('map.layer1', plan.embedChannels, plan.embedChannels);
    conv(plan.inputConv.name, 3, plan.inputConv.inChannels, plan.inputConv.outChannels);
    for (const block of [...plan.encoder, ...plan.decoder]) {
      const { name, inChannels: cin, outChannels: cout } = block;
      norm(`${name}.norm0`, cin);
      conv(`${name}.conv0`, 3, cin, cout);
      dense(`${name}.affine`, plan.embedChannels, cout);
      norm(`${name}.norm1`, cout);
      conv(`${name}.conv1`, 3, cout, cout, ZERO_INIT);
      if (block.skipConv) conv(`${name}.skip`, 1, cin, cout);
      if (block.auxResidual) conv(block.auxResidual.name, 3, block.auxResidual.inChannels, cout);
      if (block.attention) {
        norm(`${name}.attn.norm`, cout);
        conv(`${name}.attn.qkv`, 1, cout, cout * 3, ATTN_GAIN);
        conv(`${name}.attn.proj`, 1, cout, cout, ZERO_INIT);
      }
    }
    norm(`${plan.output.name}.norm`, plan.output.inChannels);
    conv(`${plan.output.name}.conv`, 3, plan.output.inChannels, plan.output.outChannels, ZERO_INIT);
    // EDM's map_label, created last so that the other weights are those of the unconditional network of the same seed.
    // Its outputs add to the positional embedding, whose halves are [cos, sin] here and [sin, cos] in EDM: an importer
    // swaps the halves of this layer's outputs as it swaps the rows of map.layer0.
    if (this.cfg.labelDim > 0) dense('map.label', this.cfg.labelDim, plan.noiseChannels);
  }
}
