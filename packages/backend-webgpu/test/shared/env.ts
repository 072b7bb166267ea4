import { inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    runtime: 'node' | 'browser';
  }
}

/** Which project runs this file: the same tests run in Node (Dawn) and Chromium (navigator.gpu). */
export const runtime = (): 'node' | 'browser' => inject('runtime');
