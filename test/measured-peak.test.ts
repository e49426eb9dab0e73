/** The measured peak (lib/machine/measured-peak.ts, native/src/peak_probe.cc): a register-only FMA loop timed on this machine. */
import { strict as assert } from 'node:assert';
import { loadAddon } from '../lib/backend/onednn/addon';
import { impliedClockGhz, measurePeak, peakForFractions, type MeasuredPeak } from '../lib/machine/measured-peak';
import { readCpuFacts, type PeakEstimate } from '../lib/machine/peak';

const computed: PeakEstimate = {
  gflops: 2 * 64 * 2.5, cores: 2, flopsPerCyclePerCore: 64, clock: { ghz: 2.5, source: 'fixture' }, datapath: null, explanation: 'fixture',
};

describe('measured peak', () => {
  it('implies the clock from a rate and the datapath: 448 GFLOP/s on 2 cores x 64 flops/cycle is 3.5 GHz', () => {
    assert.equal(impliedClockGhz(448, computed), 3.5);
    assert.equal(impliedClockGhz(448, { ...computed, flopsPerCyclePerCore: null }), null);
  });

  it('takes fractions against the measured rate when there is one, and keeps the computed one in the account', () => {
    const measured: MeasuredPeak = { gflops: 448, kernel: 'k', threads: 2, impliedGhz: 3.5, explanation: '448 measured' };
    const peak = peakForFractions(computed, measured);
    assert.equal(peak.gflops, 448);
    assert.match(peak.explanation, /448 measured.*Computed: fixture/);
    assert.doesNotMatch(peak.explanation, /WARNING/);
    // half the computed rate (a core taken by something else while the probe ran): said so, and still used
    const halved = peakForFractions(computed, { ...measured, gflops: 160, explanation: '160 measured' });
    assert.equal(halved.gflops, 160);
    assert.match(halved.explanation, /160 measured\. WARNING: the measured rate is below 0\.8x the computed one.*disturbed.* Computed: fixture/);
    const none = peakForFractions(computed, { ...measured, gflops: null, explanation: 'not measured: no addon' });
    assert.equal(none.gflops, 320);
    assert.match(none.explanation, /computed; measured peak not measured: no addon/);
  });

  const { addon } = loadAddon();
  (addon ? it : it.skip)('measures this CPU: a rate whose implied clock is a real clock (0.2-7 GHz), the instruction named', function () {
    this.timeout(60_000);
    const facts = readCpuFacts();
    const fp32 = measurePeak('fp32', facts, 1, { seconds: 0.05, repeats: 2 });
    if (fp32.gflops === null) {
      assert.match(fp32.explanation, /not measured: none/);  // a CPU without AVX2+FMA says so
      return;
    }
    assert.match(fp32.kernel, /VFMADD231PS/);
    if (fp32.impliedGhz !== null) assert.ok(fp32.impliedGhz > 0.2 && fp32.impliedGhz < 7, `implied clock ${fp32.impliedGhz} GHz`);
    const bf16 = measurePeak('bf16', facts, 1, { seconds: 0.05, repeats: 2 });
    if (facts.flags.includes('avx512_bf16')) {
      assert.match(bf16.kernel, /VDPBF16PS/);
      assert.ok(bf16.gflops !== null && bf16.gflops > 0);
      if (bf16.impliedGhz !== null && !facts.flags.includes('amx_bf16')) assert.ok(bf16.impliedGhz > 0.2 && bf16.impliedGhz < 7, `bf16 implied ${bf16.impliedGhz} GHz`);
    } else {
      assert.equal(bf16.gflops, null);
      assert.match(bf16.explanation, /no avx512_bf16/);
    }
  });
});
