/** Float images in [-1, 1] to uint8 pixels: pure (no Node modules), shared by the PNG writer and the web page. */
import * as tf from '@tensorflow/tfjs-core';

/** uint8 = clamp(x * 127.5 + 128, 0, 255), truncated (ect-spec.md section 7); NHWC order kept. */
export function toUint8Images(x: tf.Tensor4D): Uint8Array {
  const scaled = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, 127.5), 128), 0, 255));
  const values = scaled.dataSync();
  scaled.dispose();
  // assigning floats in [0, 255] to a Uint8Array truncates toward zero, as a cast to uint8 does
  return Uint8Array.from(values);
}
