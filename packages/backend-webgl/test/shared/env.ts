import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    runtime: 'node' | 'browser';
  }
}

/** Which project runs this file: the same tests run in Node (headless-gl) and Chromium (WebGL2). */
export const runtime = (): 'node' | 'browser' => inject('runtime');
export const expectedMode = () => (runtime() === 'browser' ? 'webgl2' : 'headlessgl');
