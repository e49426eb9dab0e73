/**
 * The peak measured where the code runs: the rate of a multiply-add loop that touches no memory, on every
 * thread at once (native/src/peak_probe.cc). The computed peak (peak.ts) is cores x flops per cycle x a
 * reported clock; in a VM the reported clock is often the host's nominal rate while the cores boost above it,
 * so real kernels can exceed the computed figure (a "fraction of peak" over 100%). The measured rate is the
 * denominator a fraction of peak should use; the computed one stays beside it, and their ratio gives the
 * clock the cores actually ran at.
 */
import { loadAddon } from '../backend/onednn/addon';
import { bf16Peak, fp32Peak, type CpuFacts, type PeakEstimate } from './peak';

export interface MeasuredPeak {
  gflops: number | null;       // null when it could not be measured (no addon, no such instructions)
  kernel: string;              // the instruction measured, or why nothing was
  threads: number;
  impliedGhz: number | null;   // gflops / (cores x flops per cycle per core of the computed datapath)
  explanation: string;
}

export interface MeasureOptions {
  seconds?: number;   // length of one timed run
  repeats?: number;   // the best of this many runs counts
}

/** The clock implied by a measured rate and the computed datapath (null when the datapath is unknown). */
export function impliedClockGhz(gflops: number, computed: PeakEstimate): number | null {
  if (!computed.flopsPerCyclePerCore || computed.cores < 1) return null;
  return gflops / (computed.cores * computed.flopsPerCyclePerCore);
}

/**
 * Measures the fp32 or bf16 multiply-add rate on `threads` threads of the CPU `facts` describes (this one) and
 * sets it against the peak computed for them. Needs the oneDNN addon (it carries the loop); without it, or for
 * bf16 where the CPU has no avx512_bf16, gflops is null and the result says why. On a CPU with AMX the bf16 rate
 * is VDPBF16PS's, not the AMX tiles' that its computed bf16 peak counts.
 */
export function measurePeak(precision: 'fp32' | 'bf16', facts: CpuFacts, threads: number, options: MeasureOptions = {}): MeasuredPeak {
  const notMeasured = (why: string, kernel = 'none'): MeasuredPeak => ({ gflops: null, kernel, threads, impliedGhz: null, explanation: `not measured: ${why}` });
  if (precision === 'bf16' && !facts.flags.includes('avx512_bf16')) return notMeasured('no avx512_bf16 instructions');
  const { addon, reason } = loadAddon();
  if (!addon || typeof addon.measureFmaRate !== 'function') {
    return notMeasured(reason ?? 'the oneDNN addon predates the peak probe (rebuild it: npm run build:native)');
  }
  const computed = precision === 'bf16' ? bf16Peak(facts, threads) : fp32Peak(facts, threads);
  const rate = addon.measureFmaRate(precision, threads, options.seconds ?? 0.25, options.repeats ?? 3);
  if (!(rate.gflops > 0)) return notMeasured(rate.kernel, rate.kernel);
  const impliedGhz = impliedClockGhz(rate.gflops, computed);
  const versus = computed.gflops
    ? `; ${(rate.gflops / computed.gflops).toFixed(2)}x the computed ${computed.gflops.toFixed(1)} GFLOP/s` +
      (impliedGhz !== null && computed.clock ? `, so the cores ran at about ${impliedGhz.toFixed(2)} GHz against the ${computed.clock.ghz.toFixed(3)} GHz used there` : '')
    : impliedGhz !== null ? `; about ${impliedGhz.toFixed(2)} GHz on the computed datapath` : '';
  return {
    gflops: rate.gflops, kernel: rate.kernel, threads, impliedGhz,
    explanation: `${rate.gflops.toFixed(1)} GFLOP/s measured: ${threads} thread${threads === 1 ? '' : 's'} of independent ${rate.kernel} chains in registers, ` +
      `best of ${options.repeats ?? 3} runs of ${rate.seconds.toFixed(2)} s${versus}`,
  };
}

/**
 * The peak a fraction of peak is taken against: the measured one where it exists, the computed one otherwise,
 * with an explanation that gives both.
 */
export function peakForFractions(computed: PeakEstimate, measured: MeasuredPeak): PeakEstimate {
  if (measured.gflops === null) return { ...computed, explanation: `${computed.explanation} (computed; measured peak ${measured.explanation})` };
  // a VM's cores run at or above the clock cpuinfo reports, so a probe far below the computed rate was disturbed
  const disturbed = computed.gflops !== null && measured.gflops < DISTURBED_BELOW * computed.gflops
    ? ` WARNING: the measured rate is below ${DISTURBED_BELOW}x the computed one, so the probe was most likely disturbed (another ` +
      'process or a busy host took a core while it ran); fractions of peak against it overstate how close the work came to the hardware'
    : '';
  return { ...computed, gflops: measured.gflops, explanation: `${measured.explanation}.${disturbed} Computed: ${computed.explanation}` };
}

/** A measured peak below this fraction of the computed one is reported as a disturbed probe. */
export const DISTURBED_BELOW = 0.8;
