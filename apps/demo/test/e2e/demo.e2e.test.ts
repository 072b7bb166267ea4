import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoPage, missingChromium, openDemo, shots, suiteName } from './browser';

/**
 * The demo as a person uses it: Debian's headless Chromium on a fresh production build served
 * with COOP/COEP. Types a sentence, toggles the mask, switches through every backend the page
 * reports available, and checks the numbers the heatmaps draw. Screenshots of each step land in
 * apps/demo/test-results/.
 */

interface Grid {
  rows: number;
  cols: number;
  data: number[];
}
interface Hook {
  idle(): Promise<void>;
  heatmap(name: string): Grid | null;
  backends(): { name: string; available: boolean; reason?: string }[];
}
declare const qkvDemo: Hook;

const SENTENCE = 'the dog chased the ball and the dog caught it';

describe.skipIf(missingChromium !== null)(suiteName('demo in headless chromium'), () => {
  let demo: DemoPage;
  let page: Page;

  const idle = () => page.evaluate(() => qkvDemo.idle());
  const grid = (name: string) => page.evaluate((n) => qkvDemo.heatmap(n), name) as Promise<Grid>;
  const shot = (name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const shotOf = (selector: string, name: string) =>
    page.locator(selector).screenshot({ path: join(shots, `${name}.png`) });

  beforeAll(async () => {
    demo = await openDemo();
    page = demo.page;
  });

  afterAll(async () => {
    await demo?.close();
  });

  it('opens on the cpu backend, cross-origin isolated, listing every backend with its availability', async () => {
    await idle();
    expect(await page.locator('[data-testid=active-backend]').textContent()).toBe('cpu');
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(true);
    const backends = await page.evaluate(() => qkvDemo.backends());
    expect(backends.find((b) => b.name === 'cpu')?.available).toBe(true);
    // Chromium runs with WebGPU enabled (SwiftShader here), so webgpu is offered and picked by the
    // switch-through test below like every other backend.
    expect(backends.find((b) => b.name === 'webgpu')).toMatchObject({ available: true });
    for (const b of backends) {
      const option = page.locator(`.backend-option[data-backend="${b.name}"]`);
      expect(await option.textContent()).toContain(b.available ? 'available' : `unavailable: ${b.reason}`);
    }
    await shot('01-initial');
  });

  it('typing a sentence recomputes every step for its tokens', async () => {
    await page.fill('#sentence', SENTENCE);
    await idle();
    const tokens = await page.locator('#tokens .token').count();
    expect(tokens).toBe(10);
    const w = await grid('weights');
    expect([w.rows, w.cols]).toEqual([10, 10]);
    for (let i = 0; i < w.rows; i++) {
      const sum = w.data.slice(i * w.cols, (i + 1) * w.cols).reduce((a, b) => a + b, 0);
      expect(sum).toBeCloseTo(1, 4);
    }
    await shotOf('#step-tokens', '02-tokens-embeddings');
    await shotOf('#step-qk', '03-query-key');
    await shotOf('#step-scores', '04-scores-scaled');
  });

  it("the 'averaged' weights (qkv's returnWeights: 'averaged') are the mean of every head's weights", async () => {
    const avg = await grid('weights-averaged');
    const heads = await page.locator('.head-thumb[data-head]').count();
    expect(heads).toBeGreaterThan(1);
    const per = await Promise.all(Array.from({ length: heads }, (_, h) => grid(`weights-head-${h}`)));
    for (let k = 0; k < avg.data.length; k++) {
      const mean = per.reduce((acc, g) => acc + (g.data[k] as number), 0) / heads;
      expect(avg.data[k]).toBeCloseTo(mean, 5);
    }
  });

  it('the "previous token" head (head 1) puts each row’s weight on the token before', async () => {
    const w = await grid('weights');
    for (let i = 1; i < w.rows; i++) {
      const row = w.data.slice(i * w.cols, (i + 1) * w.cols);
      expect(row.indexOf(Math.max(...row))).toBe(i - 1);
    }
  });

  it('causal: masked cells are −∞ and their weights exactly 0; off: nothing is masked', async () => {
    expect(await page.isChecked('#causal')).toBe(true);
    const masked = await grid('masked');
    const w = await grid('weights');
    for (let i = 0; i < w.rows; i++) {
      for (let j = i + 1; j < w.cols; j++) {
        expect(masked.data[i * w.cols + j]).toBe(Number.NEGATIVE_INFINITY);
        expect(w.data[i * w.cols + j]).toBe(0);
      }
    }
    expect(await page.locator('#mask-direction').textContent()).toContain('only to itself and earlier tokens');
    await shotOf('#step-softmax', '05-mask-softmax-causal');
    await page.uncheck('#causal');
    await idle();
    const open = await grid('masked');
    expect(open.data.some((v) => v === Number.NEGATIVE_INFINITY)).toBe(false);
    const wOpen = await grid('weights');
    expect(wOpen.data[0 * wOpen.cols + 1]).toBeGreaterThan(0);
    await shotOf('#step-softmax', '06-mask-softmax-open');
    await shotOf('#step-values', '06b-values-update');
    await page.check('#causal');
    await idle();
  });

  it('hovering a weights cell shows its number', async () => {
    const canvas = page.locator('canvas[data-heatmap="weights"]');
    const box = await canvas.boundingBox();
    expect(box).not.toBeNull();
    // Inside the bottom row of cells (labels sit above and to the left of the grid).
    await canvas.hover({ position: { x: (box?.width ?? 0) * 0.5, y: (box?.height ?? 0) - 12 } });
    await expect.poll(() => page.locator('#tooltip').textContent()).toMatch(/W_a\[.+ → .+\] = [\d.]+/);
    await shotOf('#step-softmax', '05b-hover-weights');
    await page.mouse.move(0, 0);
  });

  it('controls recompute live: temperature, heads, and the "same token" head', async () => {
    const before = await grid('scaled');
    await page.fill('#temperature', '2');
    await idle();
    const after = await grid('scaled');
    // scaled = raw / (T·√dk): doubling T halves every (unmasked) scaled score.
    before.data.forEach((v, i) => {
      if (Number.isFinite(v)) expect(after.data[i]).toBeCloseTo(v / 2, 3);
    });
    await page.fill('#temperature', '1');
    await idle();
    await page.fill('#heads', '8');
    await page.dispatchEvent('#heads', 'change');
    await idle();
    expect(await page.locator('#head option').count()).toBe(8);
    expect(await page.locator('#all-heads .head-thumb[data-head]').count()).toBe(8);
    await page.fill('#heads', '4');
    await page.dispatchEvent('#heads', 'change');
    await idle();
    await page.selectOption('#head', '1');
    const tokens = SENTENCE.split(' ');
    const w = await grid('weights');
    for (let i = 0; i < w.rows; i++) {
      const row = w.data.slice(i * w.cols, (i + 1) * w.cols);
      expect(tokens[row.indexOf(Math.max(...row))], `row ${i}`).toBe(tokens[i]);
    }
    expect(await page.locator('#head-explanation').textContent()).toContain('same token');
    await shotOf('#step-softmax', '06c-same-token-head');
    await page.selectOption('#head', '0');
  });

  it('switching through every available backend gives the same weights as cpu', async () => {
    const available = (await page.evaluate(() => qkvDemo.backends())).filter((b) => b.available).map((b) => b.name);
    expect(available).toContain('cpu');
    await page.check('input[name=backend][value=cpu]');
    await idle();
    const reference = await grid('weights');
    const referenceScaled = await grid('scaled');
    for (const name of available) {
      await page.check(`input[name=backend][value="${name}"]`);
      await idle();
      expect(await page.locator('[data-testid=active-backend]').textContent()).toBe(name);
      // The address names the backend once you switch (cpu, the default, may have no parameter).
      expect(new URL(page.url()).searchParams.get('backend') ?? 'cpu').toBe(name);
      const w = await grid('weights');
      expect(w.data.length).toBe(reference.data.length);
      w.data.forEach((v, i) =>
        expect(Math.abs(v - (reference.data[i] as number)), `${name} weights[${i}]`).toBeLessThan(1e-4),
      );
      const s = await grid('scaled');
      s.data.forEach((v, i) =>
        expect(Math.abs(v - (referenceScaled.data[i] as number)), `${name} scaled[${i}]`).toBeLessThan(1e-3),
      );
      const diff = await page.locator('[data-testid=max-diff]').textContent();
      expect(diff).toBeTruthy();
      await shotOf('header.top', `07-backend-${name}`);
    }
    await page.check('input[name=backend][value=cpu]');
    await idle();
  });

  it('compare all: one row per backend with time and max |Δ| vs cpu', async () => {
    await page.click('#compare-all');
    await page.waitForFunction(() => document.body.dataset.compare === 'done', null, { timeout: 60_000 });
    const backends = await page.evaluate(() => qkvDemo.backends());
    for (const b of backends) {
      const row = page.locator(`#compare-results tr[data-backend="${b.name}"]`);
      expect(await row.count()).toBe(1);
      if (b.available)
        expect(await row.locator('[data-testid=diff]').textContent()).toMatch(/^(0 \(identical\)|\d\.\de−\d+|—)$/);
    }
    await shotOf('#step-backends', '08-compare-all');
  });

  it('the graph view shows a node’s captured tensor when clicked', async () => {
    await page.click('.graph .node[data-node="scores"]');
    expect(await page.locator('#graph-detail h3').textContent()).toContain('scores');
    expect(await page.locator('#graph-detail canvas[data-heatmap="graph:scores"]').count()).toBe(1);
    const fromGraph = await grid('graph:scores');
    const fromStep = await grid('scores');
    expect(fromGraph.data).toEqual(fromStep.data);
    await shotOf('#step-graph', '09-graph');
  });

  it('long-sequence mode runs generated text on every backend with a progress bar', async () => {
    await page.selectOption('#long-length', '512');
    await page.click('#long-run');
    await expect.poll(() => page.locator('#long-progress').isVisible()).toBe(true);
    await page.waitForFunction(() => document.body.dataset.long === 'done', null, { timeout: 60_000 });
    const available = (await page.evaluate(() => qkvDemo.backends())).filter((b) => b.available);
    expect(await page.locator('#long-results tbody tr').count()).toBe(available.length);
    expect(await page.locator('#long-status').textContent()).toMatch(/^done/);
    await shotOf('#step-backends', '10-long-sequence');
  });

  it('bad input gets a message, not a crash', async () => {
    await page.fill('#sentence', '   ');
    await idle();
    expect(await page.locator('#message').textContent()).toContain('Type a sentence');
    expect(await page.evaluate(() => document.body.dataset.status)).toBe('invalid');
    await shotOf('header.top', '11-empty-sentence');
    await page.fill('#sentence', SENTENCE);
    await page.fill('#width', '100000');
    await page.dispatchEvent('#width', 'change');
    await idle();
    expect(await page.locator('#message').textContent()).toContain('Model width must be');
    await page.fill('#width', '64');
    await page.dispatchEvent('#width', 'change');
    await idle();
    expect(await page.locator('#message').isHidden()).toBe(true);
    expect(await page.evaluate(() => document.body.dataset.status)).toBe('ready');
  });

  it('?backend=name picks the backend, and an unknown one says so and stays on cpu', async () => {
    await page.goto(`${demo.url}?backend=no-such-backend`);
    await page.waitForFunction(() => document.body.dataset.status === 'ready');
    await idle();
    await expect.poll(() => page.locator('#message').textContent()).toContain('“no-such-backend” is not registered');
    expect(await page.locator('[data-testid=active-backend]').textContent()).toBe('cpu');
    const available = (await page.evaluate(() => qkvDemo.backends())).filter((b) => b.available).map((b) => b.name);
    const last = available[available.length - 1] as string;
    await page.goto(`${demo.url}?backend=${last}`);
    await page.waitForFunction(() => document.body.dataset.status === 'ready');
    await idle();
    expect(await page.locator('[data-testid=active-backend]').textContent()).toBe(last);
  });

  it('logged no console errors', () => {
    expect(demo.errors).toEqual([]);
  });
});
