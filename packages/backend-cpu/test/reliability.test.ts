import { describeReliability } from '@qkv/conformance/reliability';
import { cpuBackend } from '../src/index.js';

describeReliability(cpuBackend);
