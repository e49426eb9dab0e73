/** The method's formulas on plain numbers, checked against values computed by hand (docs/method.md). */
import { strict as assert } from 'node:assert';
import { cIn, cNoise, cOut, cSkip } from '../lib/edm/precond';
import { edmLossWeight } from '../lib/edm/loss';
import { mapTimeToR, mappingN, stageAt } from '../lib/ect/mapping';
import { pseudoHuber, timeWeight } from '../lib/ect/weighting';
import { DEFAULT_ECT } from '../lib/config/defaults';
import { heunTimeSteps } from '../lib/sample';
import { DEFAULT_EDM } from '../lib/config/defaults';

const close = (a: number, b: number, tol = 1e-4) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

describe('EDM preconditioning coefficients', () => {
  it('matches hand values at sigma = 1 and 0.821 (train and eval mode)', () => {
    close(cSkip(1, 0.5), 0.2);               // 0.25 / 1.25
    close(cOut(1, 0.5), 0.4472136);          // 0.5 / sqrt(1.25)
    close(cIn(1, 0.5), 0.8944272);           // 1 / sqrt(1.25)
    close(cNoise(1), 0);
    close(cNoise(Math.exp(4)), 1);
    close(cSkip(0.821, 0.5, 'train'), 0.2706);
    close(cSkip(0.821, 0.5, 'eval', 0.003), 0.2720);
    close(cOut(0.821, 0.5, 'eval', 0.003), 0.818 * 0.5 / Math.sqrt(0.821 ** 2 + 0.25));
  });
  it('gives D(x, 0) = x in training mode and D(x, sigma_min) = x in eval mode', () => {
    assert.equal(cSkip(0, 0.5, 'train'), 1);
    assert.equal(cOut(0, 0.5, 'train'), 0);
    assert.equal(cSkip(0.003, 0.5, 'eval', 0.003), 1);
    assert.equal(cOut(0.003, 0.5, 'eval', 0.003), 0);
  });
  it('weights the EDM loss by (sigma^2 + sigma_d^2) / (sigma sigma_d)^2', () => {
    close(edmLossWeight(1, 0.5), 5);         // 1.25 / 0.25
    close(edmLossWeight(0.5, 0.5), 8);       // 0.5 / 0.0625
  });
});

describe('ECT mapping t -> r', () => {
  const cfg = DEFAULT_ECT;
  it('stage 0: r = 0 exactly for t <= ln 7, positive above', () => {
    assert.equal(mapTimeToR(0.5, 0, cfg), 0);
    assert.equal(mapTimeToR(Math.log(7) - 1e-6, 0, cfg), 0);
    assert.ok(mapTimeToR(Math.log(7) + 1e-3, 0, cfg) > 0);
    assert.ok(mapTimeToR(10, 0, cfg) > 0);
  });
  it('stage 1: r = 0 for t <= ln(5/3), positive above', () => {
    assert.equal(mapTimeToR(Math.log(5 / 3) - 1e-6, 1, cfg), 0);
    assert.ok(mapTimeToR(Math.log(5 / 3) + 1e-3, 1, cfg) > 0);
  });
  it('stage 2 on: r > 0 for every t > 0, and r < t', () => {
    for (const t of [1e-3, 0.01, 0.1, 0.5, 1, 2, 10, 80]) {
      for (const stage of [2, 3, 7]) {
        const r = mapTimeToR(t, stage, cfg);
        assert.ok(r > 0 && r < t, `t=${t} stage=${stage} r=${r}`);
      }
    }
  });
  it('matches a hand value: t = 1 at stage 2 gives r = 1 - (1 + 8/(1+e))/8', () => {
    close(mappingN(1, cfg), 3.1515314);
    close(mapTimeToR(1, 2, cfg), 0.6060586);
  });
  it('moves r towards t as stages advance', () => {
    const rs = [0, 1, 2, 3, 4, 5].map((s) => mapTimeToR(3, s, cfg));
    for (let i = 1; i < rs.length; i++) assert.ok(rs[i] > rs[i - 1]);
  });
  it('constant mapping: r = t (1 - 1/q^(s+1))', () => {
    close(mapTimeToR(2, 0, { ...cfg, mapping: 'constant' }), 1);
    close(mapTimeToR(2, 1, { ...cfg, mapping: 'constant' }), 1.5);
  });
  it('capped mappings never exceed the cap', () => {
    for (const t of [1e-4, 0.01, 1, 5]) {
      assert.ok(mappingN(t, { ...cfg, mapping: 'log2cap' }) <= cfg.nCap);
      assert.ok(mappingN(t, { ...cfg, mapping: 'powcap' }) <= cfg.nCap);
    }
    close(mappingN(1, { ...cfg, mapping: 'log2cap', k: 1 }), 2);      // 1 + log2(2)
    close(mappingN(2, { ...cfg, mapping: 'powcap', k: 1 }), 1.5);     // 1 + 1/2
  });
  it('stage = floor(iteration / d)', () => {
    assert.equal(stageAt(0, 25000), 0);
    assert.equal(stageAt(24999, 25000), 0);
    assert.equal(stageAt(25000, 25000), 1);
    assert.equal(stageAt(199999, 25000), 7);
  });
  it('ect.maxStage holds the schedule at its last stage: r stays where stage maxStage puts it', () => {
    assert.equal(stageAt(10 * 50 + 3, 50, 7), 7);
    assert.equal(stageAt(6 * 50, 50, 7), 6);
    assert.equal(stageAt(10 * 50, 50), 10, 'no cap: the paper code\'s schedule');
    const cfg = { mapping: 'constant' as const, k: 8, b: 1, nCap: 4, q: 2 };
    close(mapTimeToR(1, stageAt(1000, 50, 7), cfg), 1 - 1 / 256);
  });
});

describe('ECT mapping at late stages', () => {
  it('keeps r below t, so 1/(t - r) stays finite where n / q^(s+1) vanishes next to 1, and leaves earlier stages alone', () => {
    const cfg = { mapping: 'sigmoid' as const, k: 8, b: 1, nCap: 4, q: 2 };
    for (const t of [0.002, 0.3, 1, 7.5, 80]) {
      for (const stage of [52, 53, 60, 200]) {
        const r = mapTimeToR(t, stage, cfg);
        assert.ok(r < t && Number.isFinite(timeWeight(t, r, 'inv_dt', 0.5)), `t ${t}, stage ${stage}: r ${r}`);
      }
      for (const stage of [0, 3, 8, 25, 40]) assert.equal(mapTimeToR(t, stage, cfg), Math.max(0, t * (1 - mappingN(t, cfg) / 2 ** (stage + 1))));
    }
  });
});

describe('ECT loss metric and weighting', () => {
  it('pseudo-Huber reduces to the L2 norm at c = 0', () => {
    assert.equal(pseudoHuber(9, 0), 3);
    close(pseudoHuber(9, 0.06), Math.sqrt(9 + 0.0036) - 0.06);
    close(pseudoHuber(0, 0.06), 0);
  });
  it('weights by 1/(t - r), 1/t^2 + 1/sigma_d^2, or 1', () => {
    close(timeWeight(2, 1.5, 'inv_dt', 0.5), 2);
    close(timeWeight(2, 1.5, 'snr_k', 0.5), 0.25 + 4);
    assert.equal(timeWeight(2, 1.5, 'uniform', 0.5), 1);
  });
});

describe('Heun time steps', () => {
  it('runs from sigma_max to sigma_min in 18 steps, then 0 (hand values for i = 1 and 9)', () => {
    const t = heunTimeSteps(DEFAULT_EDM);
    assert.equal(t.length, 19);
    close(t[0], 80);
    close(t[1], 57.585985, 1e-4);
    close(t[9], 1.9233398, 1e-5);
    close(t[17], 0.002, 1e-9);
    assert.equal(t[18], 0);
    for (let i = 1; i < t.length; i++) assert.ok(t[i] < t[i - 1]);
  });
});
