/**
 * The gpu.js kernel sources, one file per op (as in backend-cpu), each a builder returning a
 * `KernelSpec`: the source string, the compile-time constants and the flat output length.
 */
export { addSpec } from './add.js';
export { allocSpec, copySpec } from './common.js';
export { fusedOutputSpec, fusedScoresSpec } from './fusedAttention.js';
export { linearSpec } from './linear.js';
export { type MaskVariant, maskSpec, maskVariant, modifierArgs } from './mask.js';
export { rotarySpec, rotaryTables } from './rotary.js';
export { scaleSpec } from './scale.js';
export { scoresSpec } from './scores.js';
export { normalizeSpec, rowMaxSpec, rowSumSpec } from './softmax.js';
export { weightedSumSpec } from './weightedSum.js';
export { writeRowsSpec } from './writeRows.js';
