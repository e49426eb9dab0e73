/** ect-workbench: Easy Consistency Tuning on TensorFlow.js. The public surface of the library. */
export {};
