/** The fp32 peak computed from CPU facts (lib/machine/peak.ts), on fixture /proc/cpuinfo texts, against peaks derived by hand. */
import { strict as assert } from 'node:assert';
import { cpuArchitecture } from '../lib/machine/facts';
import { bf16Peak, clockOf, fp32Peak, parseCpuinfo, readCpuFacts, vectorDatapath } from '../lib/machine/peak';

const close = (a: number | null, b: number, tol = 1e-6) => assert.ok(a !== null && Math.abs(a - b) <= tol, `${a} vs ${b}`);

/** A /proc/cpuinfo text: one block per entry of `cores` ([physical id, core id]), the fields shared by all. */
function cpuinfo(fields: Record<string, string>, cores: Array<[number, number]>, mhz: string[] = []): string {
  return cores.map(([physical, core], i) => [
    `processor\t: ${i}`,
    ...Object.entries(fields).map(([k, v]) => `${k}\t: ${v}`),
    ...(mhz.length ? [`cpu MHz\t\t: ${mhz[i % mhz.length]}`] : []),
    `physical id\t: ${physical}`, `siblings\t: ${cores.length}`, `core id\t\t: ${core}`,
  ].join('\n')).join('\n\n') + '\n\n';
}

const X86_BASE = 'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm pni ssse3 cx16 sse4_1 sse4_2 popcnt aes xsave avx f16c';

// (a) AMD EPYC 7B12 (Rome, Zen 2): family 23, model 49 = 0x31; AVX2 + FMA, no AVX-512; 2 vCPUs, cpu MHz 2250.
const EPYC_ROME = cpuinfo({
  vendor_id: 'AuthenticAMD', 'cpu family': '23', model: '49', 'model name': 'AMD EPYC 7B12',
  flags: `${X86_BASE} fma avx2 bmi1 bmi2 sha_ni hypervisor`,
}, [[0, 0], [0, 1]], ['2250.000']);

// (b) Intel Xeon Platinum 8272CL (Cascade Lake): family 6, model 85; AVX-512; 4 vCPUs = 2 cores x 2 hyperthreads;
// cpu MHz 2593.906 while the name says 2.60GHz.
const XEON_8272CL = cpuinfo({
  vendor_id: 'GenuineIntel', 'cpu family': '6', model: '85', 'model name': 'Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz',
  flags: `${X86_BASE} fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni hypervisor`,
}, [[0, 0], [0, 1], [0, 0], [0, 1]], ['2593.906']);

// (b') a cloud Xeon that hides its SKU: "Intel(R) Xeon(R) CPU @ 2.20GHz", family 6, model 85, 2 vCPUs on 2 cores.
const XEON_HIDDEN = cpuinfo({
  vendor_id: 'GenuineIntel', 'cpu family': '6', model: '85', 'model name': 'Intel(R) Xeon(R) CPU @ 2.20GHz',
  flags: `${X86_BASE} fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl hypervisor`,
}, [[0, 0], [0, 1]], ['2200.158']);

// (c) AMD EPYC Zen 5 (family 26 = 0x1a) as this project's machine reports it: no GHz in the name, no cpufreq.
const EPYC_ZEN5 = cpuinfo({
  vendor_id: 'AuthenticAMD', 'cpu family': '26', model: '2', 'model name': 'AMD EPYC',
  flags: `${X86_BASE} fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 hypervisor`,
}, [[0, 0], [0, 1]], ['2596.120']);

describe('fp32 peak from CPU facts', () => {
  it('parses vendor, family, model, name, flags, cores and clocks from cpuinfo', () => {
    const facts = parseCpuinfo(XEON_8272CL, { baseFrequency: '2600000\n' });
    assert.equal(facts.vendor, 'GenuineIntel');
    assert.equal(facts.family, 6);
    assert.equal(facts.model, 85);
    assert.equal(facts.modelName, 'Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz');
    assert.ok(facts.flags.includes('avx512f'));
    assert.equal(facts.logicalCpus, 4);
    assert.equal(facts.physicalCores, 2);        // (0,0) and (0,1), each listed twice
    assert.deepEqual(facts.cpuMHz, [2593.906, 2593.906, 2593.906, 2593.906]);
    assert.equal(facts.baseFreqMHz, 2600);       // the file is in kHz
    assert.equal(facts.maxFreqMHz, null);
  });

  it('(a) AMD EPYC 7B12, Zen 2 with AVX2: 2 cores x 2 FMA x 8 lanes x 2 x 2.25 GHz = 144 GFLOP/s', () => {
    const peak = fp32Peak(parseCpuinfo(EPYC_ROME));
    close(peak.gflops, 144);
    assert.equal(peak.cores, 2);
    assert.equal(peak.flopsPerCyclePerCore, 32);  // 2 x 8 x 2
    assert.match(peak.datapath!.uarch, /Zen 2/);
    assert.equal(peak.datapath!.assumed, null);
    assert.match(peak.explanation, /^144\.0 GFLOP\/s = 2 cores x 2 FMA units x 8 fp32 lanes \(256-bit\)/);
    assert.match(peak.explanation, /cpu MHz/);    // the only clock this fixture has
    // one of the two cores in use: half of it
    close(fp32Peak(parseCpuinfo(EPYC_ROME), 1).gflops, 72);
  });

  it('(b) Xeon Platinum 8272CL with AVX-512: 2 cores x 2 FMA x 16 lanes x 2 x 2.6 GHz = 332.8 GFLOP/s', () => {
    const peak = fp32Peak(parseCpuinfo(XEON_8272CL));
    close(peak.gflops, 332.8);   // 4 logical CPUs, but hyperthreads share the 2 cores' FMA units
    assert.equal(peak.cores, 2);
    assert.equal(peak.clock!.ghz, 2.6);           // from "@ 2.60GHz", not the 2593.906 reading
    assert.match(peak.clock!.source, /model name/);
    assert.match(peak.explanation, /assumed: 2 FMA units/);
    assert.match(peak.explanation, /4 logical CPUs/);
  });

  it("(b') a Xeon that hides its SKU: 2 cores x 2 FMA x 16 lanes x 2 x 2.2 GHz = 281.6 GFLOP/s, assumed 2 units", () => {
    const peak = fp32Peak(parseCpuinfo(XEON_HIDDEN));
    close(peak.gflops, 281.6);
    assert.match(peak.datapath!.assumed!, /some Bronze\/Silver\/Gold 5xxx have 1/);
  });

  it('a Xeon Silver 4114 (one 512-bit FMA unit): 2 cores x 1 FMA x 16 lanes x 2 x 2.2 GHz = 140.8 GFLOP/s', () => {
    const peak = fp32Peak(parseCpuinfo(XEON_HIDDEN.replace(/Xeon\(R\) CPU @ 2\.20GHz/g, 'Xeon(R) Silver 4114 CPU @ 2.20GHz')));
    close(peak.gflops, 140.8);
    assert.equal(peak.datapath!.units, 1);
  });

  it('(c) AMD EPYC Zen 5 (family 0x1a): 2 cores x 2 FMA x 16 lanes x 2 x 2.59612 GHz = 332.30 GFLOP/s', () => {
    const peak = fp32Peak(parseCpuinfo(EPYC_ZEN5));
    close(peak.gflops, 2 * 2 * 16 * 2 * 2.59612);
    assert.match(peak.datapath!.uarch, /Zen 5/);
  });

  it('Zen 4 (family 0x19 with avx512f) counts AVX-512 as 2 x 256 bits: 2 x 2 x 8 x 2 x 2.25 = 144 GFLOP/s', () => {
    const zen4 = EPYC_ROME.replace(/cpu family\t: 23/g, 'cpu family\t: 25').replace(/model\t: 49/g, 'model\t: 17')
      .replace(/avx2 /g, 'avx2 avx512f avx512bw ');
    const peak = fp32Peak(parseCpuinfo(zen4));
    assert.equal(peak.datapath!.bits, 256);
    close(peak.gflops, 144);
  });

  it('prefers a nominal clock: cpufreq base_frequency over the name, cpuinfo_max_freq over cpu MHz', () => {
    assert.equal(clockOf(parseCpuinfo(XEON_8272CL, { baseFrequency: '2500000', cpuinfoMaxFreq: '3400000' }))!.ghz, 2.5);
    assert.equal(clockOf(parseCpuinfo(EPYC_ROME, { cpuinfoMaxFreq: '3300000' }))!.ghz, 3.3);
  });

  it('without FMA (Sandy Bridge-like AVX): one 256-bit multiply + add pair, 16 flops per cycle per core', () => {
    const avxOnly = parseCpuinfo(cpuinfo({ vendor_id: 'GenuineIntel', 'cpu family': '6', model: '45', 'model name': 'Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz', flags: X86_BASE }, [[0, 0]]));
    const peak = fp32Peak(avxOnly);
    assert.equal(vectorDatapath(avxOnly)!.fused, false);
    assert.equal(peak.flopsPerCyclePerCore, 16);  // 1 x 8 lanes x 2
    close(peak.gflops, 41.6);                     // 1 core x 16 x 2.6 GHz
  });

  it('returns null, with the reason, when the clock is unknown', () => {
    const noClock = parseCpuinfo(EPYC_ROME.replace(/cpu MHz.*\n/g, ''));
    const peak = fp32Peak(noClock);
    assert.equal(peak.gflops, null);
    assert.equal(peak.clock, null);
    assert.match(peak.explanation, /^unknown: no clock rate/);
    assert.match(peak.explanation, /64 flops\/cycle/);  // still says what the cores do per cycle: 2 x 32
  });

  it('returns null for a CPU whose datapath it does not know (ARM cpuinfo)', () => {
    const arm = parseCpuinfo('processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32\nCPU implementer\t: 0x41\n\n');
    const peak = fp32Peak(arm);
    assert.equal(peak.gflops, null);
    assert.match(peak.explanation, /^unknown: no known vector datapath/);
  });

  it('reads this machine without throwing and accounts for its answer either way', () => {
    const peak = fp32Peak(readCpuFacts());
    assert.ok(peak.gflops === null ? /^unknown/.test(peak.explanation) : peak.gflops > 0 && /GFLOP\/s = /.test(peak.explanation));
  });
});

describe('the CPU microarchitecture a record names', () => {
  it('tells apart two machines that both call themselves AMD EPYC, by family and model', () => {
    const zen4 = EPYC_ZEN5.replace(/cpu family\t: 26/g, 'cpu family\t: 25').replace(/model\t: 2\n/g, 'model\t: 17\n');
    assert.equal(cpuArchitecture(parseCpuinfo(EPYC_ZEN5)), 'AMD Zen 5 (family 0x1a), model 0x2');
    assert.equal(cpuArchitecture(parseCpuinfo(zen4)), 'AMD Zen 4 (family 0x19, AVX-512 on 256-bit halves), model 0x11');
    assert.equal(cpuArchitecture(parseCpuinfo(EPYC_ROME)), 'AMD Zen 2 (family 0x17, model 0x31)');  // the model is in the name already
  });

  it('adds family and model where the name has neither, names the bare family and model where the datapath is unknown, and nothing without them', () => {
    assert.equal(cpuArchitecture(parseCpuinfo(XEON_8272CL)), 'Intel Xeon with AVX-512 (family 0x6, model 0x55)');
    const unknownVendor = EPYC_ROME.replace(/AuthenticAMD/g, 'SomeVendor').replace(/ avx2| fma| avx| sse4_2| sse2| sse/g, '');
    assert.equal(cpuArchitecture(parseCpuinfo(unknownVendor)), 'SomeVendor family 0x17, model 0x31');
    assert.equal(cpuArchitecture(parseCpuinfo('processor\t: 0\nFeatures\t: fp asimd\n\n')), undefined);
  });
});

describe('bf16 peak from CPU facts', () => {
  it('avx512_bf16 (Zen 5): twice the fp32 rate, 2 cores x 2 FMA x 16 lanes x 2 bf16 pairs x 2 x 2.59612 GHz = 664.6 GFLOP/s', () => {
    const peak = bf16Peak(parseCpuinfo(EPYC_ZEN5));
    close(peak.gflops, 2 * 2 * 16 * 2 * 2 * 2.59612);
    close(peak.gflops, 2 * fp32Peak(parseCpuinfo(EPYC_ZEN5)).gflops!);
    assert.match(peak.explanation, /VDPBF16PS/);
  });

  it('amx_bf16 (Sapphire Rapids): 1024 bf16 multiply-adds per cycle per core', () => {
    const spr = parseCpuinfo(cpuinfo({
      vendor_id: 'GenuineIntel', 'cpu family': '6', model: '143', 'model name': 'Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz',
      flags: `${X86_BASE} fma avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 hypervisor`,
    }, [[0, 0], [0, 1]], ['2700.000']));
    close(bf16Peak(spr).gflops, 2 * 1024 * 2 * 2.7);
    assert.match(bf16Peak(spr).explanation, /AMX/);
  });

  it('is null, saying why, on CPUs without bf16 instructions (Zen 2, Cascade Lake)', () => {
    for (const text of [EPYC_ROME, XEON_8272CL]) {
      const peak = bf16Peak(parseCpuinfo(text));
      assert.equal(peak.gflops, null);
      assert.match(peak.explanation, /no bf16 instructions/);
    }
  });
});
