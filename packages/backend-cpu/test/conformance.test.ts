import { describeConformance } from '@qkv/conformance/suite';
import { cpuBackend } from '../src/index.js';

// Both kernel paths run the whole suite: the default (WebAssembly SIMD linear + flash attention)
// and the plain TypeScript reference kernels.
describeConformance(cpuBackend);
describeConformance(cpuBackend, { backendOptions: { kernels: 'reference' } });
