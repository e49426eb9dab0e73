# Builds the oneDNN addon behind the `onednn` TensorFlow.js backend (lib/backend/onednn).
{
  "targets": [
    {
      "target_name": "ect_onednn",
      "sources": ["src/addon.cc", "src/onednn_ops.cc", "src/cpu_loops.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fopenmp", "-ffp-contract=fast"],
      "libraries": ["-ldnnl", "-fopenmp"]
    }
  ]
}
