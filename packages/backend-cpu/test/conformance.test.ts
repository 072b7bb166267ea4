import { describeConformance } from '@qkv/conformance/suite';
import { cpuBackend } from '../src/index.js';

describeConformance(cpuBackend);
