import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/index.js';

// The cpu backend reuses the arrays of disposed tensors for outputs that are written whole.

const filled = (n: number, v: number) => new Float32Array(n).fill(v);

describe('array reuse', () => {
  const shape = [4, 128, 64]; // 32768 floats: above the pooling minimum
  const n = 4 * 128 * 64;

  it("a disposed tensor's array carries the next output of its length, and its old values never show", () => {
    const b = new CpuBackend();
    const old = b.upload({ shape, data: filled(n, 7) });
    const oldArray = old.data;
    const x = b.upload({ shape, data: filled(n, 1) });
    b.dispose(old);
    const y = b.kernels.add(x, x) as ReturnType<typeof b.upload>;
    expect(y.data).toBe(oldArray);
    expect(y.data.every((v) => v === 2)).toBe(true);
    // Disposing twice recycles once: two new outputs never share one array.
    b.dispose(y);
    b.dispose(y);
    const z1 = b.kernels.add(x, x) as ReturnType<typeof b.upload>;
    const z2 = b.kernels.add(x, x) as ReturnType<typeof b.upload>;
    expect(z1.data).not.toBe(z2.data);
    b.destroy();
  });

  it('holds at most 32 MiB of disposed arrays, and nothing of small tensors', () => {
    const b = new CpuBackend();
    const big = [1024, 1024]; // 4 MiB each
    const tensors = Array.from({ length: 12 }, () => b.upload({ shape: big, data: filled(1 << 20, 1) }));
    const arrays = new Set(tensors.map((t) => t.data));
    for (const t of tensors) b.dispose(t);
    const again = Array.from({ length: 12 }, () => b.upload({ shape: big, data: filled(1 << 20, 1) }));
    expect(again.filter((t) => arrays.has(t.data)).length).toBe(8);
    const small = b.upload({ shape: [16], data: filled(16, 1) });
    const smallArray = small.data;
    b.dispose(small);
    expect(b.upload({ shape: [16], data: filled(16, 1) }).data).not.toBe(smallArray);
    b.destroy();
  });
});
