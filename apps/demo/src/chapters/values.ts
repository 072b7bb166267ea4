import { tokenMatrix } from '../figures';
import { headContributions, slice2d } from '../model/model';
import { byId, fill, h } from '../ui/dom';
import type { Chapter } from './index';
import { headNote } from './query-key';

/** 5. V of the shown head, its ΔE, every head's contribution through Wo, their sum and E'. */
export const values: Chapter = {
  section: 'step-values',
  render(ctx) {
    const { view, head, dk, full, half, captured } = ctx;
    const { labels, settings, heads, weights } = view;
    const L = view.tokens.length;
    const v = slice2d(captured('v'), 0, L, head * dk, dk);
    fill(
      byId('view-V'),
      h('p', { class: 'caption' }, `V, ${headNote(ctx)}`),
      tokenMatrix('V', v, labels, 'dk', { maxWidth: half }),
    );
    const headsOut = captured('heads');
    fill(
      byId('view-delta-head'),
      h('p', { class: 'caption' }, `Σ_j W_a[i, j] · V_j, ${headNote(ctx)}`),
      tokenMatrix('ΔE(head)', slice2d(headsOut, 0, L, head * dk, dk), labels, 'dk', { maxWidth: half }),
    );
    const parts = headContributions(headsOut, weights.wo, settings.numHeads);
    // Three cards to a line (with the + and = signs between them).
    const partWidth = settings.numHeads === 1 ? half : Math.floor((full - 120) / 3) - 20;
    const cards: HTMLElement[] = [];
    parts.forEach((part, i) => {
      if (i > 0) cards.push(h('span', { class: 'op-sign' }, '+'));
      cards.push(
        h(
          'div',
          { class: `contribution${i === head ? ' selected' : ''}` },
          h('h4', {}, `ΔE(${i + 1}) · ${heads[i]?.title}`),
          tokenMatrix(`ΔE(${i + 1})`, part, labels, 'dModel', { maxWidth: partWidth, small: true }),
        ),
      );
    });
    cards.push(h('span', { class: 'op-sign' }, '='));
    cards.push(
      h(
        'div',
        { class: 'contribution sum' },
        h('h4', {}, `ΔE = ΔE(1) + … + ΔE(${settings.numHeads})`),
        tokenMatrix('ΔE', captured('attention'), labels, 'dModel', { maxWidth: partWidth, small: true }),
      ),
    );
    fill(byId('contributions'), ...cards);
    fill(byId('view-residual'), tokenMatrix("E'", captured('residual'), labels, 'dModel'));
  },
};
