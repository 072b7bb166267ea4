import { describeReliability } from '@qkv/conformance/reliability';
import { liveBuffers, webgpuBackend } from '../../src/index.js';
import { holdDeviceForFile } from './hold.js';

holdDeviceForFile();

// The full 2,000-run soak; every GPU buffer made (tensors, uniforms, read-backs) is counted.
describeReliability(webgpuBackend, { fuzzRuns: 30, timeout: 300_000, resources: () => liveBuffers() });
