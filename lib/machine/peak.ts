/**
 * The fp32 peak of the machine a benchmark runs on, computed from the CPU's own facts (/proc/cpuinfo and
 * cpufreq) instead of a constant, so "fraction of peak" means the same on an AVX2 EPYC, an AVX-512 Xeon or
 * a Zen 5: peak = cores x FMA units per core x fp32 lanes per unit x 2 (an FMA is a multiply and an add)
 * x clock. The computation (fp32Peak) is pure, so tests run it on fixture cpuinfo texts; readCpuFacts
 * gathers the facts of this machine.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

/** What the peak is computed from: the parsed /proc/cpuinfo plus the cpufreq clocks when the kernel has them. */
export interface CpuFacts {
  vendor: string;               // vendor_id: 'AuthenticAMD', 'GenuineIntel', 'HygonGenuine'; '' when not given (non-x86)
  family: number | null;        // 'cpu family' (decimal, as cpuinfo prints it)
  model: number | null;         // 'model' (decimal)
  modelName: string;            // 'model name'
  flags: string[];              // x86 'flags' (or the ARM 'Features' list)
  logicalCpus: number;          // processor entries
  physicalCores: number | null; // distinct (physical id, core id) pairs; null when cpuinfo does not say
  cpuMHz: number[];             // 'cpu MHz' of each processor (a current reading)
  maxFreqMHz: number | null;    // cpufreq cpuinfo_max_freq
  baseFreqMHz: number | null;   // cpufreq base_frequency (intel_pstate)
}

/** The raw cpufreq files (contents in kHz, as the kernel writes them), when present. */
export interface CpufreqTexts {
  cpuinfoMaxFreq?: string;
  baseFrequency?: string;
}

/** The vector FMA datapath of one core. */
export interface VectorDatapath {
  uarch: string;           // e.g. 'AMD Zen 5 (family 0x1a)'
  units: number;           // FMA units per core (multiply + add pipe pairs when fused is false)
  bits: number;            // effective width of one unit in bits
  fused: boolean;          // true: fused multiply-add; false: a separate multiply and add counted as one pair
  assumed: string | null;  // what was assumed rather than known from family/model/flags, null when nothing
}

/** The clock the peak uses, and where it came from. */
export interface ClockEstimate {
  ghz: number;
  source: string;
}

/** The computed peak: the number (null when it cannot be known) and a one-line account of how. */
export interface PeakEstimate {
  gflops: number | null;
  cores: number;                 // cores counted (SMT siblings share one core's FMA units)
  flopsPerCyclePerCore: number | null;
  datapath: VectorDatapath | null;
  clock: ClockEstimate | null;
  explanation: string;
}

const FP32_BITS = 32;
const FLOPS_PER_FMA = 2;  // one multiply and one add per lane
const KHZ_PER_MHZ = 1000;
const MHZ_PER_GHZ = 1000;
// AMD family numbers (cpuinfo prints them in decimal).
const AMD_ZEN1_ZEN2 = 0x17;   // 23: Zen / Zen+ (models below 0x30) and Zen 2 (models 0x30 and up)
const HYGON_DHYANA = 0x18;    // 24: Hygon's Zen 1 derivative
const AMD_ZEN3_ZEN4 = 0x19;   // 25: Zen 3 (no AVX-512) and Zen 4 (avx512f)
const AMD_ZEN5 = 0x1a;        // 26
const AMD_ZEN2_FIRST_MODEL = 0x30;  // family 0x17: Rome (0x31), Renoir (0x60), Matisse (0x71), ...
const INTEL_CORE_FAMILY = 6;
const INTEL_XEON_PHI_MODELS = [0x57, 0x85];  // Knights Landing, Knights Mill: 2 x 512-bit FMA per core

/** Parses a /proc/cpuinfo text (and the cpufreq files, when given) into CpuFacts. */
export function parseCpuinfo(text: string, cpufreq: CpufreqTexts = {}): CpuFacts {
  const blocks = text.split(/\n\s*\n/).map((block) => {
    const fields = new Map<string, string>();
    for (const line of block.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) fields.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    return fields;
  });
  const processors = blocks.filter((b) => b.has('processor') && (b.has('vendor_id') || b.has('model name') || b.has('features') || b.has('flags')));
  const first = processors[0] ?? blocks[0] ?? new Map<string, string>();
  const int = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);
  const coreIds = processors.map((b) => (b.has('core id') ? `${b.get('physical id') ?? 0}/${b.get('core id')}` : null));
  const mhz = (khz: string | undefined) => {
    const v = Number(khz?.trim());
    return khz !== undefined && Number.isFinite(v) && v > 0 ? v / KHZ_PER_MHZ : null;
  };
  return {
    vendor: first.get('vendor_id') ?? '',
    family: int(first.get('cpu family')),
    model: int(first.get('model')),
    modelName: first.get('model name') ?? '',
    flags: (first.get('flags') ?? first.get('features') ?? '').split(/\s+/).filter(Boolean),
    logicalCpus: processors.length,
    physicalCores: processors.length && coreIds.every((id) => id !== null) ? new Set(coreIds).size : null,
    cpuMHz: processors.map((b) => Number(b.get('cpu mhz'))).filter((v) => Number.isFinite(v) && v > 0),
    maxFreqMHz: mhz(cpufreq.cpuinfoMaxFreq),
    baseFreqMHz: mhz(cpufreq.baseFrequency),
  };
}

/** The CpuFacts of this machine: /proc/cpuinfo and cpu0's cpufreq files, or Node's os.cpus() where there is no /proc. */
export function readCpuFacts(): CpuFacts {
  const read = (file: string) => { try { return fs.readFileSync(file, 'utf8'); } catch { return undefined; } };
  const cpuinfo = read('/proc/cpuinfo');
  const cpufreqDir = '/sys/devices/system/cpu/cpu0/cpufreq';
  const cpufreq = { cpuinfoMaxFreq: read(`${cpufreqDir}/cpuinfo_max_freq`), baseFrequency: read(`${cpufreqDir}/base_frequency`) };
  if (cpuinfo) {
    const facts = parseCpuinfo(cpuinfo, cpufreq);
    if (facts.logicalCpus > 0) return facts;
  }
  const cpus = os.cpus();
  return {
    vendor: '', family: null, model: null, modelName: cpus[0]?.model?.trim() ?? '', flags: [],
    logicalCpus: cpus.length, physicalCores: null, cpuMHz: cpus.map((c) => c.speed).filter((s) => s > 0),
    maxFreqMHz: null, baseFreqMHz: null,
  };
}

/** The widest x86 SIMD width the flags expose, in bits (0 when none is listed). */
function widestSimdBits(flags: Set<string>): number {
  if (flags.has('avx512f')) return 512;
  if (flags.has('avx')) return 256;
  if (flags.has('sse')) return 128;
  return 0;
}

/**
 * The per-core fp32 vector datapath, from vendor, family, model, model name and flags; null when the
 * microarchitecture is unknown (non-x86, or x86 without SSE). Sources: AMD's and Intel's optimisation
 * manuals as summarised by Agner Fog's microarchitecture guide and Chips and Cheese; Zen 4 splits a 512-bit
 * op over its two 256-bit halves (numberworld.org "Zen4 AVX512 teardown"); Zen 5 desktop/server has full
 * 512-bit FP pipes while the mobile Strix Point parts keep 256-bit ones (numberworld.org Zen 5 teardown,
 * chipsandcheese.com on Strix Point); 1st/2nd-generation Xeon Scalable Bronze, Silver and Gold 5xxx have
 * one 512-bit FMA unit except the Gold 5122/5222 (Intel's SKU tables, Tom's Hardware Skylake-SP review).
 */
export function vectorDatapath(facts: CpuFacts): VectorDatapath | null {
  const flags = new Set(facts.flags);
  const widest = widestSimdBits(flags);
  if (!facts.vendor || widest === 0) return null;
  const family = facts.family ?? -1;
  const model = facts.model ?? -1;
  const hex = `family 0x${family.toString(16)}`;
  let dp: VectorDatapath;
  if (facts.vendor === 'AuthenticAMD' && family === AMD_ZEN5) {
    const mobile = /Ryzen AI (?!Max)/i.test(facts.modelName);
    dp = mobile
      ? { uarch: `AMD Zen 5 mobile (${hex})`, units: 2, bits: 256, fused: true, assumed: 'mobile Zen 5 (Ryzen AI) runs AVX-512 on 256-bit pipes, from the model name' }
      : { uarch: `AMD Zen 5 (${hex})`, units: 2, bits: 512, fused: true, assumed: null };
  } else if (facts.vendor === 'AuthenticAMD' && family === AMD_ZEN3_ZEN4) {
    dp = flags.has('avx512f')
      ? { uarch: `AMD Zen 4 (${hex}, AVX-512 on 256-bit halves)`, units: 2, bits: 256, fused: true, assumed: null }
      : { uarch: `AMD Zen 3 (${hex})`, units: 2, bits: 256, fused: true, assumed: null };
  } else if (facts.vendor === 'AuthenticAMD' && family === AMD_ZEN1_ZEN2) {
    dp = model >= AMD_ZEN2_FIRST_MODEL
      ? { uarch: `AMD Zen 2 (${hex}, model 0x${model.toString(16)})`, units: 2, bits: 256, fused: true, assumed: null }
      : { uarch: `AMD Zen 1 (${hex}, model 0x${model.toString(16)})`, units: 2, bits: 128, fused: true, assumed: null };
  } else if (facts.vendor === 'HygonGenuine' && family === HYGON_DHYANA) {
    dp = { uarch: `Hygon Dhyana (Zen 1, ${hex})`, units: 2, bits: 128, fused: true, assumed: null };
  } else if (facts.vendor === 'GenuineIntel' && family === INTEL_CORE_FAMILY) {
    dp = intelDatapath(facts, flags, model);
  } else {
    dp = genericDatapath(`${facts.vendor} ${hex}`, flags);
  }
  // A hypervisor may hide wide vectors or FMA; count what the guest can actually issue.
  if (dp.bits > widest) dp = { ...dp, bits: widest, assumed: join(dp.assumed, `only ${widest}-bit vectors exposed`) };
  if (dp.fused && !flags.has('fma')) dp = { ...dp, fused: false, assumed: join(dp.assumed, 'no fma flag: multiply and add counted as separate pipes') };
  return dp;
}

/** Intel family 6 (every Core, Xeon and Xeon Phi since the Pentium Pro). */
function intelDatapath(facts: CpuFacts, flags: Set<string>, model: number): VectorDatapath {
  const name = facts.modelName;
  if (flags.has('avx512f')) {
    if (INTEL_XEON_PHI_MODELS.includes(model)) return { uarch: 'Intel Xeon Phi', units: 2, bits: 512, fused: true, assumed: null };
    const scalable = /(Bronze|Silver|Gold)\s+([345])([12])(\d\d)/i.exec(name);
    if (scalable && !/Gold\s+5[12]22/i.test(name)) {
      return { uarch: `Intel Xeon ${scalable[1]} (1st/2nd-gen Scalable)`, units: 1, bits: 512, fused: true, assumed: null };
    }
    if (/Xeon/i.test(name)) {
      return { uarch: 'Intel Xeon with AVX-512', units: 2, bits: 512, fused: true, assumed: '2 FMA units as on Gold 6xxx/Platinum and later (some Bronze/Silver/Gold 5xxx have 1)' };
    }
    if (/i\d-\d{4,5}X/i.test(name)) {
      return { uarch: 'Intel Core X with AVX-512', units: 2, bits: 512, fused: true, assumed: '2 FMA units as on Skylake-X and later HEDT parts' };
    }
    return { uarch: 'Intel client core with AVX-512', units: 1, bits: 512, fused: true, assumed: 'one 512-bit FMA (ports 0+1 fused) as on Ice/Tiger/Rocket Lake' };
  }
  if (flags.has('avx2') && flags.has('fma')) {
    return { uarch: 'Intel with AVX2+FMA (Haswell or later)', units: 2, bits: 256, fused: true, assumed: '2 x 256-bit FMA as on Haswell and later big cores (Atom/E-cores have 2 x 128)' };
  }
  return genericDatapath('Intel without FMA', flags);
}

/** An x86 core known only by its flags: every figure here is an assumption, and says so. */
function genericDatapath(uarch: string, flags: Set<string>): VectorDatapath {
  if (flags.has('avx512f') && flags.has('fma')) return { uarch, units: 2, bits: 512, fused: true, assumed: '2 x 512-bit FMA from the flags alone' };
  if (flags.has('avx2') && flags.has('fma')) return { uarch, units: 2, bits: 256, fused: true, assumed: '2 x 256-bit FMA from the flags alone' };
  // No FMA (Sandy/Ivy Bridge, older cores): one multiply and one add of the widest width per cycle.
  const bits = flags.has('avx') ? 256 : 128;
  return { uarch, units: 1, bits, fused: false, assumed: `no FMA: one ${bits}-bit multiply + one ${bits}-bit add per cycle, from the flags alone` };
}

const join = (a: string | null, b: string) => (a ? `${a}; ${b}` : b);

/**
 * The clock the peak uses. Nominal clocks first (what a "theoretical peak" is usually quoted at): cpufreq
 * base_frequency, then the "@ 2.60GHz" of an Intel model name; then cpufreq cpuinfo_max_freq (may be a
 * boost clock); then the largest cpuinfo "cpu MHz" (a current reading; in a VM usually the host's nominal
 * rate). Null when none is known.
 */
export function clockOf(facts: CpuFacts): ClockEstimate | null {
  if (facts.baseFreqMHz) return { ghz: facts.baseFreqMHz / MHZ_PER_GHZ, source: 'cpufreq base_frequency' };
  const named = /@\s*([\d.]+)\s*GHz/i.exec(facts.modelName);
  if (named && Number(named[1]) > 0) return { ghz: Number(named[1]), source: 'the nominal clock in the model name' };
  if (facts.maxFreqMHz) return { ghz: facts.maxFreqMHz / MHZ_PER_GHZ, source: 'cpufreq cpuinfo_max_freq (may be a boost clock)' };
  if (facts.cpuMHz.length) return { ghz: Math.max(...facts.cpuMHz) / MHZ_PER_GHZ, source: "cpuinfo 'cpu MHz' (a current reading, no cpufreq or nominal clock available)" };
  return null;
}

/**
 * The fp32 peak in GFLOP/s of `coresUsed` logical CPUs (default: all of them), with a one-line account of how
 * it was computed, what was assumed and which clock was used. SMT siblings share a core's FMA units, so at
 * most `physicalCores` cores count. gflops is null, with the reason, when the clock or datapath is unknown.
 */
export function fp32Peak(facts: CpuFacts, coresUsed = facts.logicalCpus): PeakEstimate {
  const cores = facts.physicalCores !== null ? Math.min(coresUsed, facts.physicalCores) : coresUsed;
  const coreText = cores === coresUsed ? `${cores} cores` : `${cores} cores (${coresUsed} logical CPUs, SMT siblings share a core)`;
  const datapath = vectorDatapath(facts);
  const clock = clockOf(facts);
  if (!datapath) {
    return { gflops: null, cores, flopsPerCyclePerCore: null, datapath, clock, explanation: `unknown: no known vector datapath for '${facts.modelName || 'this CPU'}' (${facts.vendor || 'not x86'})` };
  }
  const lanes = datapath.bits / FP32_BITS;
  const flopsPerCyclePerCore = datapath.units * lanes * FLOPS_PER_FMA;
  const unitText = datapath.fused ? `${datapath.units} FMA units` : `${datapath.units} multiply+add pipe pair${datapath.units > 1 ? 's' : ''}`;
  const formula = `${coreText} x ${unitText} x ${lanes} fp32 lanes (${datapath.bits}-bit) x ${FLOPS_PER_FMA} flops`;
  const what = `${datapath.uarch}${datapath.assumed ? `; assumed: ${datapath.assumed}` : ''}`;
  if (!clock) {
    return {
      gflops: null, cores, flopsPerCyclePerCore, datapath, clock,
      explanation: `unknown: no clock rate (no cpufreq, no '@ x GHz' in the model name, no 'cpu MHz'); ${formula} per cycle = ${cores * flopsPerCyclePerCore} flops/cycle; ${what}`,
    };
  }
  const gflops = cores * flopsPerCyclePerCore * clock.ghz;
  return {
    gflops, cores, flopsPerCyclePerCore, datapath, clock,
    explanation: `${gflops.toFixed(1)} GFLOP/s = ${formula} x ${clock.ghz.toFixed(3)} GHz; ${what}; clock: ${clock.source}`,
  };
}

/** The vector extensions worth naming in a report, widest first ('none known' when the flags list none). */
export function vectorExtensions(facts: CpuFacts): string {
  const known = ['avx512f', 'avx512_bf16', 'avx512_vnni', 'avx2', 'fma', 'avx', 'sse4_2', 'asimd', 'sve'];
  const flags = new Set(facts.flags);
  const present = known.filter((f) => flags.has(f));
  return present.length ? present.join(' ') : 'none known';
}

/** bf16 multiply-adds per fp32 lane of one dot-product instruction: VDPBF16PS adds the products of two bf16 pairs. */
const BF16_PAIRS_PER_FP32_LANE = 2;
/** bf16 multiply-adds per cycle of one core's AMX unit: TDPBF16PS on a 16x32 by 32x16 tile product, 16 cycles each. */
const AMX_BF16_FMAS_PER_CYCLE = 1024;

/**
 * The bf16 peak in GFLOP/s (bf16 inputs, fp32 accumulation), with how it was computed; null with the reason
 * where the CPU has no bf16 instructions or its fp32 datapath or clock is unknown. avx512_bf16 (Zen 4/5, Cooper
 * Lake, Sapphire Rapids' vector units): VDPBF16PS issues on the same units as an fp32 FMA and does two bf16
 * multiply-adds per fp32 lane, so twice the fp32 rate (Intel's and AMD's instruction tables give the same
 * throughput as VFMADD). amx_bf16 (Sapphire Rapids and later): one AMX unit per core doing 1024 bf16
 * multiply-adds per cycle (Intel's optimisation manual, AMX chapter), which is what oneDNN uses there.
 */
export function bf16Peak(facts: CpuFacts, coresUsed = facts.logicalCpus): PeakEstimate {
  const fp32 = fp32Peak(facts, coresUsed);
  const flags = new Set(facts.flags);
  const base = { cores: fp32.cores, datapath: fp32.datapath, clock: fp32.clock };
  if (flags.has('amx_bf16')) {
    const flopsPerCyclePerCore = AMX_BF16_FMAS_PER_CYCLE * FLOPS_PER_FMA;
    if (!fp32.clock) return { ...base, gflops: null, flopsPerCyclePerCore, explanation: 'unknown: no clock rate (see the fp32 peak)' };
    const gflops = fp32.cores * flopsPerCyclePerCore * fp32.clock.ghz;
    return {
      ...base, gflops, flopsPerCyclePerCore,
      explanation: `${gflops.toFixed(1)} GFLOP/s = ${fp32.cores} cores x 1 AMX unit x ${AMX_BF16_FMAS_PER_CYCLE} bf16 multiply-adds x ${FLOPS_PER_FMA} flops ` +
        `x ${fp32.clock.ghz.toFixed(3)} GHz (amx_bf16; TDPBF16PS); clock: ${fp32.clock.source}`,
    };
  }
  if (!flags.has('avx512_bf16')) {
    return { ...base, gflops: null, flopsPerCyclePerCore: null, explanation: 'none: this CPU has no bf16 instructions (neither amx_bf16 nor avx512_bf16)' };
  }
  if (fp32.flopsPerCyclePerCore === null || fp32.gflops === null || !fp32.datapath?.fused) {
    return { ...base, gflops: null, flopsPerCyclePerCore: null, explanation: `unknown: the fp32 peak is unknown (${fp32.explanation})` };
  }
  const flopsPerCyclePerCore = fp32.flopsPerCyclePerCore * BF16_PAIRS_PER_FP32_LANE;
  const gflops = fp32.gflops * BF16_PAIRS_PER_FP32_LANE;
  return {
    ...base, gflops, flopsPerCyclePerCore,
    explanation: `${gflops.toFixed(1)} GFLOP/s = ${BF16_PAIRS_PER_FP32_LANE} x the fp32 peak (avx512_bf16: VDPBF16PS does ${BF16_PAIRS_PER_FP32_LANE} bf16 ` +
      `multiply-adds per fp32 lane on the FMA units) = ${fp32.cores} cores x ${flopsPerCyclePerCore} flops/cycle x ${fp32.clock!.ghz.toFixed(3)} GHz`,
  };
}
