import { defineConfig } from 'vite';

/**
 * Cross-origin isolation: the workers backend shares memory between threads through
 * SharedArrayBuffer, which browsers only allow on pages served with these two headers. Static
 * hosts must send them too (see README); without them that backend reports itself unavailable.
 */
const crossOriginIsolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  // Relative asset URLs, so the built folder works from any path on any static host.
  base: './',
  server: { host: '127.0.0.1', port: 5173, headers: crossOriginIsolation },
  preview: { host: '127.0.0.1', port: 4173, headers: crossOriginIsolation },
  build: {
    target: 'es2022',
    outDir: 'dist',
    sourcemap: true,
    // The webgl backend's GPU library (~630 kB) is its own chunk, loaded only when that backend
    // is probed; it is not worth a warning on every build.
    chunkSizeWarningLimit: 1024,
  },
  worker: { format: 'es' },
});
