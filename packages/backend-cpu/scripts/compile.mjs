// The one AssemblyScript invocation every kernels build uses (build-wasm.mjs, ab-kernels.mjs):
// no runtime (the TypeScript side lays out memory), -O3, no asserts, 1 initial page.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import asc from 'assemblyscript/asc';

/**
 * Compiles `entry` with `--enable features` (e.g. 'simd' or 'simd,relaxed-simd') and any `extra`
 * flags (the decode module's imported shared memory); the .wasm bytes.
 */
export async function compileKernels(entry, features, extra = []) {
  let wasm = null;
  const { error, stderr } = await asc.main(
    [
      entry,
      '--outFile',
      'kernels.wasm',
      '--runtime',
      'stub',
      '--optimizeLevel',
      '3',
      '--shrinkLevel',
      '0',
      '--noAssert',
      '--enable',
      features,
      '--initialMemory',
      '1',
      ...extra,
    ],
    {
      readFile: (name, baseDir) => {
        try {
          return readFileSync(join(baseDir, name), 'utf8');
        } catch {
          return null;
        }
      },
      writeFile: (name, contents) => {
        if (name.endsWith('.wasm')) wasm = contents;
      },
      listFiles: () => [],
    },
  );
  if (error) {
    console.error(stderr.toString());
    throw error;
  }
  return wasm;
}
