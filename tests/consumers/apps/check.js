// Runs one seeded attention layer on every available backend of `qkv` and compares each with cpu.
// Plain JavaScript with no imports, shared by the Node scripts and the bundled browser apps.
export async function checkBackends(qkv, backendOptions) {
  const { createAttention, listBackends } = qkv;
  let seed = 12345;
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648 - 0.5;
  };
  const t = (shape) => ({ shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, next) });
  const d = 32;
  const config = { dModel: d, numHeads: 4, causal: true, positionalEncoding: 'sinusoidal' };
  const weights = {
    wq: t([d, d]),
    wk: t([d, d]),
    wv: t([d, d]),
    wo: t([d, d]),
    bq: t([d]),
    bk: t([d]),
    bv: t([d]),
    bo: t([d]),
  };
  // Large enough that workers hands the run to its threads (above the inline threshold).
  const query = t([2, 64, d]);
  const run = async (backend) => {
    const started = Date.now();
    try {
      // Asked for by name a backend refuses options it does not know; auto hands each its own.
      const options = backend === 'workers' || backend === 'auto' ? backendOptions : undefined;
      const attn = await createAttention(config, weights, { backend, backendOptions: options });
      const out = await attn.run({ query });
      const result = { backend: attn.backend, skipped: attn.selection.skipped, data: Array.from(out.attention.data) };
      await attn.dispose();
      return result;
    } catch (e) {
      return { backend, error: { code: e?.code ?? null, message: String(e?.message ?? e), ms: Date.now() - started } };
    }
  };
  const backends = await listBackends();
  const cpu = await run('cpu');
  if (cpu.error) throw new Error(`cpu failed: ${cpu.error.code}: ${cpu.error.message}`);
  const results = {};
  for (const b of backends) {
    if (!b.available) continue;
    const r = b.name === 'cpu' ? cpu : await run(b.name);
    results[b.name] = r.error
      ? { error: r.error }
      : { maxAbsDiff: r.data.reduce((m, v, i) => Math.max(m, Math.abs(v - cpu.data[i])), 0) };
  }
  const auto = await run('auto');
  return {
    backends,
    results,
    auto: auto.error
      ? { error: auto.error }
      : {
          backend: auto.backend,
          skipped: auto.skipped,
          maxAbsDiff: auto.data.reduce((m, v, i) => Math.max(m, Math.abs(v - cpu.data[i])), 0),
        },
  };
}
