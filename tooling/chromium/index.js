// One place for how qkv's browser tests start Chromium (vitest browser mode in the backends, the
// demo's Playwright test): Debian's /usr/bin/chromium through playwright-core, which never
// downloads a browser of its own.

/** `QKV_CHROMIUM` overrides the path. */
export const chromiumPath = process.env.QKV_CHROMIUM ?? '/usr/bin/chromium';

export const chromiumArgs = Object.freeze([
  '--headless',
  // Tests run as root in CI, where Chromium's sandbox cannot start.
  '--no-sandbox',
  // The machine has no network but the package registries: no background fetches, updates or
  // sync, which would otherwise fail over and over.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  // WebGL2 with float textures on SwiftShader (software) where there is no GPU, as in CI.
  '--enable-unsafe-swiftshader',
]);

/**
 * WebGPU in headless Chromium: still behind this flag on Linux; with no GPU its adapter is
 * SwiftShader's Vulkan (software), as in CI.
 */
export const webgpuChromiumArgs = Object.freeze(['--enable-unsafe-webgpu']);

/** Playwright launch options for Debian's Chromium; `{ webgpu: true }` also enables WebGPU. */
export function chromiumLaunchOptions(variant = {}) {
  return { executablePath: chromiumPath, args: [...chromiumArgs, ...(variant.webgpu ? webgpuChromiumArgs : [])] };
}
