import { describeReliability } from '@qkv/conformance/reliability';
import { liveDevices, webglBackend } from '../../src/index.js';

// Software GL compiles every new shape's kernels on the CPU: fewer fuzz cases than the default
// (each is a new shape), the full 2,000-run soak (four shapes, compiled once).
describeReliability(webglBackend, { fuzzRuns: 16, timeout: 300_000, resources: () => liveDevices() });
