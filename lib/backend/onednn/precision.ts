/**
 * bf16 mixed precision on the `onednn` backend: which precision the convolution and matrix-product kernels run
 * in, and whether bf16 may be chosen at all.
 *
 * In bf16 the kernels round their float32 inputs (activations, filters, incoming gradients) to bfloat16 and
 * oneDNN accumulates in float32 and writes float32 outputs; every tensor the rest of the program sees stays
 * float32, so master weights, gradients, optimiser state and EMA are float32 by construction. Layers may run a
 * convolution in float32 inside a bf16 step (withPrecision): the UNet does so for the convolutions that read its
 * input (lib/nn/unet.ts INPUT_LAYERS_PRECISION), and runs its 1x1 convolutions as bf16 convolutions rather than
 * float32 matrix products (lib/nn/fused.ts oneByOneAsConvolution). bf16 is allowed
 * only on the onednn backend and only where the CPU executes bf16 natively (the `avx512_bf16` or `amx_bf16`
 * flag): elsewhere oneDNN would emulate it, slower than float32, or have no implementation.
 */
import { readCpuFacts } from '../../machine/peak';
import { PRECISIONS, type Precision } from '../../config/types';
import { currentPrecision, withPrecision } from '../../nn/precision';

export { PRECISIONS, type Precision, currentPrecision, withPrecision };

/** The CPU flags bf16 is judged by: a function so tests hand in another machine's flags. */
export type CpuFlagsSource = () => string[];

/** This machine's CPU flags (/proc/cpuinfo 'flags'). */
export const machineCpuFlags: CpuFlagsSource = () => readCpuFacts().flags;

/** Flags of the instructions that execute bf16 arithmetic natively, in the order reports name them. */
export const BF16_CPU_FLAGS = ['amx_bf16', 'avx512_bf16'] as const;

/** Whether a CPU with these flags runs bf16 natively: the instruction flags it has, or why not. */
export function bf16Support(flags: readonly string[]): { ok: boolean; instructions: string[]; reason?: string } {
  const present = new Set(flags);
  const instructions = BF16_CPU_FLAGS.filter((f) => present.has(f));
  if (instructions.length) return { ok: true, instructions };
  return {
    ok: false, instructions,
    reason: `this CPU has no bf16 instructions (neither ${BF16_CPU_FLAGS.join(' nor ')} among its /proc/cpuinfo flags); ` +
      'oneDNN would emulate bf16, slower than fp32. Use --precision fp32 (the default)',
  };
}

/**
 * Throws a clear error unless `precision` can run here: fp32 always; bf16 only on the onednn backend and a CPU
 * with bf16 instructions (flags from `cpuFlags`, this machine's by default).
 */
export function assertPrecisionAvailable(precision: Precision | undefined, backendName: string, cpuFlags: CpuFlagsSource = machineCpuFlags): void {
  if (precision === undefined || precision === 'fp32') return;
  if (!(PRECISIONS as readonly string[]).includes(precision)) {
    throw new Error(`unknown precision '${precision}'; known: ${PRECISIONS.join(', ')}`);
  }
  if (backendName !== 'onednn') {
    throw new Error(`--precision bf16 runs on the onednn backend only (this run uses '${backendName}'); pass --backend onednn, or use --precision fp32`);
  }
  const support = bf16Support(cpuFlags());
  if (!support.ok) throw new Error(`--precision bf16 refused: ${support.reason}`);
}

/** The addon's precision code (native/src/onednn_ops.h Precision) for convolutions: 0 float32, 1 bf16. */
export function precisionCode(): number {
  return currentPrecision() === 'bf16' ? 1 : 0;
}

/**
 * The addon's precision code for matrix products: float32 in either precision. Measured on a Zen 5 with
 * avx512_bf16 (oneDNN 2.6, 2 threads; docs/benchmarks.md): the bf16 product with the conversion of its two
 * inputs was no faster than the float32 one on any product of the UNets (50176x64x64 1.08 against 1.13 ms,
 * its transposed-A weight gradient 4.2 against 2.5 ms, the 64x128x64 embedding products 0.10 against 0.04
 * ms), and the conversions alone took ~45 ms of a 470 ms res28-ch32 bf16 step. The addon still runs bf16
 * products when asked (addon.matMul's precision argument; test/bf16.test.ts checks its rounding).
 */
export function matMulPrecisionCode(): number {
  return 0;
}

