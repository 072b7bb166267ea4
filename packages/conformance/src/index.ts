export * from './checkpoint-cases.js';
export * from './compare.js';
export * from './golden.js';
export * from './random.js';
export * from './reference.js';
