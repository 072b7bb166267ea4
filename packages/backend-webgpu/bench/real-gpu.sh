#!/usr/bin/env bash
# The webgpu bench, unattended, on a machine with a real GPU and its Vulkan driver (e.g. NVIDIA's
# or Mesa's): Chromium on the GPU (no SwiftShader) and Node on Dawn over the same driver.
# Run from a checkout after `bash scripts/setup.sh`:  bash packages/backend-webgpu/bench/real-gpu.sh
# Results: bench/results/webgpu-vs-tfjs-ort-gpu.json and webgpu-node-gpu.json next to this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export QKV_BENCH_GPU=1 QKV_BENCH_RUNS="${QKV_BENCH_RUNS:-10}"
if ! ls /etc/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 && [ -z "${VK_ICD_FILENAMES:-}" ]; then
  echo "real-gpu.sh: no Vulkan driver manifest found (and VK_ICD_FILENAMES unset): this machine has no GPU driver" >&2
  exit 2
fi
pnpm --filter @qkv/backend-webgpu build
node bench/node.mjs
node bench/run.mjs
