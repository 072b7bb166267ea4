import { cpuBackend } from '@qkv/backend-cpu';
import { describeConformance } from '@qkv/conformance/suite';
import { webglBackend } from '../../src/index.js';

// Software GL (llvmpipe under Xvfb, SwiftShader in Chromium) runs every fragment on the CPU:
// fewer random cases than the default 40, each compiling its own shape's kernels. KV-cache
// sessions keep the cache on the GPU (writeRows) and pass the key length as a uniform, so steps
// reuse compiled programs; the token-by-token session is 256 tokens (the default 512 costs
// minutes of software rendering for no extra coverage).
describeConformance(webglBackend, { reference: cpuBackend, numRuns: 12, timeout: 120_000, sessionLength: 256 });
