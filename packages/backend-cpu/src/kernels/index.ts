/**
 * The math of every op, as plain functions over Float32Arrays that compute a range of rows
 * [from, to). The cpu backend calls them over the whole range; the workers backend calls the very
 * same functions on slices from each thread. One implementation of the math.
 */
export { add } from './add.js';
export { fusedAttention } from './fusedAttention.js';
export { linear } from './linear.js';
export { hasScoreModifiers, mask, modifiedScore, visibleKeys } from './mask.js';
export { positionalEncoding } from './positionalEncoding.js';
export { rotary } from './rotary.js';
export { scale } from './scale.js';
export { rowsOf, scores } from './scores.js';
export { softmax } from './softmax.js';
export { weightedSum } from './weightedSum.js';
export { writeRows } from './writeRows.js';
