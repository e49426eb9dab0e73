/** The library's public surface: lib/index.ts exports each layer's entry points, so `require('ect-workbench')` is enough. */
import { strict as assert } from 'node:assert';
import * as lib from '../lib';

describe('public API (lib/index.ts)', () => {
  it('exports each layer, from configuration to plots', () => {
    const expected = [
      'resolveRunConfig', 'validateRunConfig', 'networkPreset', 'drawSeed', 'loadDataset', 'BatchLoader', 'SPLITS', 'UNet', 'planUNet',
      'denoise', 'EdmLoss', 'EctLoss', 'trainRun', 'launchRun', 'Trainer', 'loadRunModel', 'generateImages', 'sampleBatches',
      'imagesToGridPng', 'toUint8Images', 'createSampleWriter', 'SAMPLE_FORMATS', 'readNpz', 'createRunEvaluator', 'classAccuracy',
      'loadClassifier', 'loadRunsTable', 'fitScalingLaw', 'initBackend', 'readEdmPickle', 'ensureRun', 'ensurePlannedRun',
    ];
    const missing = expected.filter((name) => (lib as Record<string, unknown>)[name] === undefined);
    assert.deepEqual(missing, []);
  });
});
