# Builds the oneDNN addon behind the `onednn` TensorFlow.js backend (lib/backend/onednn).
# The loops are compiled for this machine's CPU (-march=native: AVX2/FMA where present), since the addon is built
# where it runs (npm install); set ECT_NATIVE_PORTABLE=1 to build for the baseline x86-64 instead.
{
  "targets": [
    {
      "target_name": "ect_onednn",
      "sources": ["src/addon.cc", "src/onednn_ops.cc", "src/bf16.cc", "src/filter_grad_bf16.cc", "src/cpu_loops.cc", "src/group_norm.cc", "src/updates.cc", "src/peak_probe.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fopenmp", "-ffp-contract=fast", "-fno-trapping-math", "<!(node -p \"process.env.ECT_NATIVE_PORTABLE ? '-O3' : '-march=native'\")"],
      "libraries": ["-ldnnl", "-fopenmp"]
    }
  ]
}
