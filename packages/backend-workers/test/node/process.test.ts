import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createAttention, isQkvError } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { liveThreads, type WorkersBackend } from '../../dist/index.js';
import { capturingRegistry, expectSameData, inputsFor, weightsFor } from '../shared/helpers.js';

const child = fileURLToPath(new URL('../fixtures/child.mjs', import.meta.url));

/** Runs the fixture; resolves with its exit code and stdout, or rejects if it outlives `ms`. */
function runChild(mode: string, ms: number): Promise<{ code: number | null; stdout: string; elapsed: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const p = spawn(process.execPath, [child, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(
        new Error(
          `child (${mode}) still running after ${ms} ms: something keeps the process alive; stdout: ${stdout} stderr: ${stderr}`,
        ),
      );
    }, ms);
    p.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`child (${mode}) exited with ${code}: ${stderr}`));
      else resolve({ code, stdout, elapsed: Date.now() - started });
    });
  });
}

/** OS threads of this process (Linux), or null where /proc is missing. */
function osThreads(): number | null {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

describe('process lifetime', () => {
  it('a process that used the backend and disposed it exits by itself', async () => {
    const r = await runChild('dispose', 30_000);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, threads: 2, after: 0 });
  });

  it('idle threads are unref’d: even without dispose the process exits', async () => {
    const r = await runChild('no-dispose', 30_000);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, threads: 2, after: 2 });
  });

  it('leaks no thread over 200 create/run/dispose cycles', { timeout: 400_000 }, async () => {
    const { registry: workers } = capturingRegistry();
    const config = { dModel: 16, numHeads: 2 };
    const weights = weightsFor(config, 3);
    const inputs = inputsFor(1, 4, 16, 4);
    const baseline = osThreads();
    expect(liveThreads()).toBe(0);
    for (let i = 0; i < 200; i++) {
      const attn = await createAttention(config, weights, {
        registry: workers,
        backend: 'workers',
        backendOptions: { threads: 2, inlineThreshold: 0 },
      });
      expect(liveThreads()).toBe(2);
      await attn.run(inputs);
      await attn.dispose();
      expect(liveThreads(), `after cycle ${i}`).toBe(0);
    }
    const after = osThreads();
    if (baseline !== null && after !== null) {
      // V8/libuv may lazily start a helper thread or two; 200 leaked cycles would be 400.
      expect(after - baseline).toBeLessThanOrEqual(4);
    }
  });
});

describe('faults (Node only: browsers report no worker exit)', () => {
  // Deterministic: the fault belongs to the first op the armed run submits, and whichever thread
  // claims that op's first block exits (WorkerPool.injectFault), so this run, never a later one,
  // rejects.
  it('rejects the run whose worker exits with WORKER_FAILED, replaces it, and recovers', async () => {
    const { registry, created } = capturingRegistry();
    const config = { dModel: 16, numHeads: 2 };
    const weights = weightsFor(config, 41);
    const attn = await createAttention(config, weights, {
      registry,
      backend: 'workers',
      backendOptions: { threads: 2, inlineThreshold: 0 },
    });
    const cpu = await createAttention(config, weights, { registry, backend: 'cpu' });
    try {
      const b = created[0] as WorkersBackend;
      const inputs = inputsFor(1, 7, 16, 42);
      const replacedBefore = b.stats().replaced;
      b.injectWorkerFault('exit');
      const err = await attn.run(inputs).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isQkvError(err, 'WORKER_FAILED'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/worker thread #\d+ exited with code 70/);
      expect(liveThreads()).toBe(2);
      expect(b.stats().replaced).toBe(replacedBefore + 1);
      const [got, want] = await Promise.all([attn.run(inputs), cpu.run(inputs)]);
      expectSameData('residual after recovery', got.residual, want.residual);
      expect(b.stats().replaced).toBe(replacedBefore + 1);
    } finally {
      await attn.dispose();
      await cpu.dispose();
    }
  });
});
