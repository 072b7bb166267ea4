import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoPage, missingChromium, openDemo, shots, suiteName } from './browser';

/**
 * The learned-heads chapter (#step-learned) as a learner uses it, in Debian's headless Chromium on
 * a fresh production build: the trained model loads, both heads are drawn with their measured
 * scores, the prediction completes the repeat, and every available backend gives the same numbers.
 */

interface Grid {
  rows: number;
  cols: number;
  data: number[];
}
interface Snapshot {
  backend: string;
  words: string[];
  scores: { layer: number; head: number; previousToken: number; induction: number }[];
  predictions: { id: number; probability: number; word: string | null }[];
}
interface Hook {
  idle(): Promise<void>;
  learnedIdle(): Promise<void>;
  learned(): Snapshot | null;
  heatmap(name: string): Grid | null;
  backends(): { name: string; available: boolean; reason?: string }[];
}
declare const qkvDemo: Hook;

describe.skipIf(missingChromium !== null)(suiteName('learned heads in headless chromium'), () => {
  let demo: DemoPage;
  let page: Page;

  const settle = async () => {
    await page.evaluate(() => qkvDemo.idle());
    await page.evaluate(() => qkvDemo.learnedIdle());
  };
  const snapshot = () => page.evaluate(() => qkvDemo.learned()) as Promise<Snapshot>;
  const grid = (name: string) => page.evaluate((n) => qkvDemo.heatmap(n), name) as Promise<Grid>;
  const shotOf = (selector: string, name: string) =>
    page.locator(selector).screenshot({ path: join(shots, `${name}.png`) });

  beforeAll(async () => {
    demo = await openDemo();
    page = demo.page;
    await page.waitForFunction(() => qkvDemo.learned() !== null, null, { timeout: 60_000 });
  });

  afterAll(async () => {
    await demo?.close();
  });

  it('draws both learned heads with their measured scores', async () => {
    await settle();
    const chapter = page.locator('#step-learned');
    expect(await chapter.locator('canvas[data-heatmap="learned-weights-1"]').count()).toBe(1);
    expect(await chapter.locator('canvas[data-heatmap="learned-weights-2"]').count()).toBe(1);
    const prev = Number(await page.locator('[data-testid=learned-score-1]').textContent());
    const ind = Number(await page.locator('[data-testid=learned-score-2]').textContent());
    expect(prev).toBeGreaterThanOrEqual(0.8);
    expect(ind).toBeGreaterThanOrEqual(0.5);
    const snap = await snapshot();
    expect(snap.scores[0]?.previousToken).toBeCloseTo(prev, 4);
    expect(snap.scores[1]?.induction).toBeCloseTo(ind, 4);
    expect(await chapter.textContent()).toContain('mean weight on the previous token');
    expect(await chapter.textContent()).toContain('mean weight on the induction target');
    await shotOf('#step-learned', '12-learned-heads');
  });

  it('completes “harry potter … harry” with “potter” and says why', async () => {
    const snap = await snapshot();
    expect(snap.words[snap.words.length - 1]).toBe('harry');
    expect(snap.predictions[0]?.word).toBe('potter');
    expect(await page.locator('[data-testid=learned-prediction]').first().textContent()).toContain('“potter”');
    const text = await page.locator('#learned-layers').textContent();
    expect(text).toContain('matches the Key of “potter” (position 9), the token AFTER the earlier “harry”');
    expect(text).toContain('looks for the Key of the token just before it');
    // The induction head's row for the last token peaks on "potter".
    const w = await grid('learned-weights-2');
    const row = w.data.slice((w.rows - 1) * w.cols, w.rows * w.cols);
    expect(row.indexOf(Math.max(...row))).toBe(9);
  });

  it('switching backends keeps every number within 1e-4 of cpu', async () => {
    const available = (await page.evaluate(() => qkvDemo.backends())).filter((b) => b.available).map((b) => b.name);
    expect(available).toContain('cpu');
    const reference = await snapshot();
    const refGrids = [await grid('learned-weights-1'), await grid('learned-weights-2')];
    for (const name of available) {
      await page.check(`input[name=backend][value="${name}"]`);
      await settle();
      const snap = await snapshot();
      expect(snap.backend).toBe(name);
      expect(await page.locator('#learned-status').textContent()).toContain(`on ${name}`);
      snap.scores.forEach((s, k) => {
        expect(Math.abs(s.previousToken - (reference.scores[k]?.previousToken as number)), name).toBeLessThan(1e-4);
        expect(Math.abs(s.induction - (reference.scores[k]?.induction as number)), name).toBeLessThan(1e-4);
      });
      snap.predictions.forEach((p, k) => {
        expect(p.id, `${name} prediction ${k}`).toBe(reference.predictions[k]?.id);
        expect(Math.abs(p.probability - (reference.predictions[k]?.probability as number)), name).toBeLessThan(1e-4);
      });
      for (const [layer, ref] of refGrids.entries()) {
        const g = await grid(`learned-weights-${layer + 1}`);
        g.data.forEach((v, i) =>
          expect(Math.abs(v - (ref.data[i] as number)), `${name} layer ${layer + 1} [${i}]`).toBeLessThan(1e-4),
        );
      }
      await shotOf('#step-learned', `13-learned-${name}`);
    }
    await page.check('input[name=backend][value=cpu]');
    await settle();
  });

  it('“Generate a repeat” makes a sentence the model completes', async () => {
    await page.click('#learned-generate');
    await settle();
    const snap = await snapshot();
    const words = snap.words;
    // ⟨start⟩, 12 words, then the first 6 again: the 7th word comes next.
    expect(words.slice(13)).toEqual(words.slice(1, 7));
    expect(snap.predictions[0]?.word).toBe(words[7]);
  });

  it('a sentence the model cannot take gets a message, not a crash', async () => {
    await page.fill('#learned-sentence', 'harry');
    await settle();
    expect(await page.locator('#learned-status').textContent()).toContain('at least two words');
    await page.fill('#learned-sentence', Array.from({ length: 40 }, (_, i) => `w${i}`).join(' '));
    await settle();
    expect(await page.locator('#learned-status').textContent()).toContain('up to 32 tokens');
    await page.fill(
      '#learned-sentence',
      'the zoo was full of people . harry potter went to the zoo with his aunt and uncle and harry',
    );
    await settle();
    expect(await page.locator('#learned-status').textContent()).toContain('Computed by qkv on cpu');
  });

  it('logged no console errors', () => {
    expect(demo.errors).toEqual([]);
  });
});
