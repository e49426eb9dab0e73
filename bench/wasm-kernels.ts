/**
 * Times the convolution gradient kernels on wasm (ours) and on cpu for one 3x3 'same' layer.
 * Usage: node dist/bench/wasm-kernels.js [batch=64] [size=32] [inChannels=64] [outChannels=64] [repeats=3] [cpuRepeats=1]
 * (cpu's naive kernels take seconds each, hence fewer repeats there).
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels } from '../lib/backend/wasm-kernels';

/** Median wall time (ms) of running one kernel `repeats` times, after a warm-up run if asked. */
function timeKernel(kernelName: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap, repeats: number, warmUp = true): number {
  const run = () => {
    const output = tf.engine().runKernel(kernelName, inputs, attrs) as tf.Tensor;
    output.dataSync();  // wait for the result
    output.dispose();
  };
  if (warmUp) run();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    run();
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

async function main(): Promise<void> {
  const [batch, size, inChannels, outChannels, repeats, cpuRepeats] = [64, 32, 64, 64, 3, 1].map((fallback, i) => Number(process.argv[2 + i] ?? fallback));
  const xShape = [batch, size, size, inChannels];
  const filterShape = [3, 3, inChannels, outChannels];
  const dyShape = [batch, size, size, outChannels];
  const conv = { strides: 1, pad: 'same', dataFormat: 'NHWC', dimRoundingMode: undefined as unknown as string };
  // multiply-adds of one pass: every output position times the kernel volume
  const gflop = (2 * batch * size * size * 9 * inChannels * outChannels) / 1e9;
  console.log(`3x3 'same' conv, x [${xShape}] -> ${outChannels} channels (${gflop.toFixed(2)} GFLOP per pass), median of ${repeats} after a warm-up (cpu: ${cpuRepeats}, no warm-up)`);
  // tfjs-backend-wasm's own Conv2DBackpropInput, before ours replaces it
  await tf.setBackend('wasm');
  {
    const dy = tf.randomNormal(dyShape);
    const filter = tf.randomNormal(filterShape);
    const ms = timeKernel('Conv2DBackpropInput', { dy, filter }, { ...conv, inputShape: xShape }, repeats);
    console.log(`wasm  ${'Conv2DBackpropInput'.padEnd(22)} ${ms.toFixed(0).padStart(7)} ms  ${(gflop / (ms / 1000)).toFixed(1)} GFLOP/s  (tfjs-backend-wasm's own)`);
    tf.dispose([dy, filter]);
  }
  // other processes share the cores: a load above the core count inflates every time below
  console.log(`load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores`);
  console.log(`wasm kernels registered by us: ${registerWasmTrainingKernels().join(', ')}`);
  for (const backend of ['wasm', 'cpu']) {
    await tf.setBackend(backend);
    const x = tf.randomNormal(xShape);
    const dy = tf.randomNormal(dyShape);
    const filter = tf.randomNormal(filterShape);
    const times = backend === 'cpu' ? cpuRepeats : repeats;
    const kernels: Array<[string, tf.NamedTensorMap, tf.NamedAttrMap]> = [
      ['Conv2D', { x, filter }, { ...conv, dilations: 1 }],
      ['Conv2DBackpropFilter', { x, dy }, { ...conv, filterShape }],
      ['Conv2DBackpropInput', { dy, filter }, { ...conv, inputShape: xShape }],
    ];
    for (const [name, inputs, attrs] of kernels) {
      // cpu's kernels are plain JavaScript loops with nothing to compile or cache: no warm-up there
      const ms = timeKernel(name, inputs, attrs, times, backend !== 'cpu');
      console.log(`${backend.padEnd(5)} ${name.padEnd(22)} ${ms.toFixed(0).padStart(7)} ms  ${(gflop / (ms / 1000)).toFixed(1)} GFLOP/s`);
    }
    tf.dispose([x, dy, filter]);
  }
}

main().catch(error => {
  console.error(error);
  process.exit(1);
});
