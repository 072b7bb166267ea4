import { cpuBackend } from '@qkv/backend-cpu';
import { describeConformance } from '@qkv/conformance/suite';
import { webgpuBackend } from '../../src/index.js';
import { holdDeviceForFile } from './hold.js';

holdDeviceForFile();

// SwiftShader runs every workgroup on the CPU: fewer random cases than the default 40.
describeConformance(webgpuBackend, { reference: cpuBackend, numRuns: 20, timeout: 120_000 });
