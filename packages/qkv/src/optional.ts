/**
 * Backends qkv knows by name but does not depend on: each is its own package, one install away,
 * so `npm install qkv` brings no GPU or native code. In the default registry each is a stand-in
 * factory that loads the package on first probe (a guarded dynamic import, which Node resolves
 * when the package is installed); where it cannot be loaded (not installed, or a bundled app,
 * whose bundler cannot follow a computed import) `listBackends()` says what to install and how to
 * register it. Registering the real factory (`registerBackend(webglBackend)`) replaces the stand-in.
 */
import type { Availability, Backend, BackendCreateOptions, BackendFactory, ResolvedConfig } from '@qkv/core';
import { QkvError } from '@qkv/core';

export interface OptionalBackend {
  readonly name: string;
  readonly priority: number;
  /** The npm package and the factory it exports. */
  readonly packageName: string;
  readonly exportName: string;
  /** What to install besides the package, and where it runs. */
  readonly needs: string;
  /** The real factory's `optionKeys` (known before loading it: `auto` splits options up front). */
  readonly optionKeys: readonly string[];
  readonly description: string;
}

/** One entry per optional backend; the registry orders them by priority. */
export const OPTIONAL_BACKENDS: readonly OptionalBackend[] = [
  {
    name: 'webgl',
    priority: 30,
    packageName: '@qkv/backend-webgl',
    exportName: 'webglBackend',
    needs: 'in Node also `npm install gl` (headless-gl, a native build) and an X display',
    optionKeys: ['mode', 'maxTextureSize', 'fusedTileElements'],
    description:
      'packed RGBA WebGL programs for the projections and fused attention, gpu.js kernels for the rest, on WebGL2/WebGL1 (browsers) or headless-gl (Node)',
  },
  {
    name: 'webgpu',
    priority: 40,
    packageName: '@qkv/backend-webgpu',
    exportName: 'webgpuBackend',
    needs: 'in Node also `npm install webgpu@0.6.2` (Dawn) and a Vulkan driver (Debian: libvulkan1)',
    optionKeys: ['maxStorageBufferBindingSize'],
    description: 'WGSL compute shaders on WebGPU: navigator.gpu (browsers) or Dawn over Vulkan (Node)',
  },
];

type Loaded = { factory: BackendFactory } | { problem: string };

/** How to get `b` running, for reasons and errors. */
export function installHint(b: OptionalBackend): string {
  return (
    `npm install ${b.packageName} (${b.needs}); in a bundled app also ` +
    `import { ${b.exportName} } from '${b.packageName}' and registerBackend(${b.exportName})`
  );
}

/** Whether `e` says that `packageName` itself could not be found (as opposed to failing inside it). */
function isMissing(e: unknown, packageName: string): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return message.includes(packageName);
  // Browsers: a bare specifier no import map resolves.
  return e instanceof TypeError && message.includes(packageName);
}

async function load(b: OptionalBackend): Promise<Loaded> {
  const specifier = b.packageName;
  let mod: Record<string, unknown>;
  try {
    // Computed and marked so that bundlers leave it alone: in a bundle the user registers it.
    mod = (await import(/* @vite-ignore */ /* webpackIgnore: true */ specifier)) as Record<string, unknown>;
  } catch (e) {
    if (isMissing(e, b.packageName)) return { problem: `not installed: ${installHint(b)}` };
    return { problem: `${b.packageName} failed to load: ${e instanceof Error ? e.message : String(e)}` };
  }
  const factory = mod[b.exportName] as BackendFactory | undefined;
  if (!factory || typeof factory.create !== 'function' || factory.name !== b.name) {
    return { problem: `${b.packageName} does not export a "${b.name}" backend factory as ${b.exportName}` };
  }
  return { factory };
}

/** The stand-in factory for `b`: probes load the package, everything else delegates to it. */
export function optionalBackendFactory(b: OptionalBackend): BackendFactory {
  let loaded: Promise<Loaded> | null = null;
  let known: Loaded | null = null;
  const ensure = async (): Promise<Loaded> => {
    loaded ??= load(b);
    known = await loaded;
    return known;
  };
  return {
    name: b.name,
    priority: b.priority,
    description: `${b.description} (package ${b.packageName})`,
    optionKeys: b.optionKeys,
    isAvailable: async (): Promise<Availability> => {
      const l = await ensure();
      return 'problem' in l ? { available: false, reason: l.problem } : l.factory.isAvailable();
    },
    // The registry probes availability before it asks this, so the package is loaded by then.
    supports: (config: ResolvedConfig) => {
      if (known === null || 'problem' in known) return known?.problem ?? `${b.packageName} is not loaded yet`;
      return known.factory.supports ? known.factory.supports(config) : true;
    },
    create: async (options?: BackendCreateOptions): Promise<Backend> => {
      const l = await ensure();
      if ('problem' in l) throw new QkvError('BACKEND_UNAVAILABLE', `backend "${b.name}": ${l.problem}`);
      return l.factory.create(options);
    },
  };
}
