import { cpuBackend } from '@qkv/backend-cpu';
import { describeConformance } from '@qkv/conformance/suite';
import { webglBackend } from '../../src/index.js';

// Software GL (llvmpipe under Xvfb, SwiftShader in Chromium) runs every fragment on the CPU:
// fewer random cases than the default 40, each compiling its own shape's kernels. The KV-cache
// session grows Lk by one per token and every new Lk is a new shape signature (a recompile of
// the attention kernels), so the session is 32 tokens rather than 512.
describeConformance(webglBackend, { reference: cpuBackend, numRuns: 12, timeout: 120_000, sessionLength: 32 });
