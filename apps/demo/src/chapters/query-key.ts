import { headLabel, tokenMatrix } from '../figures';
import { slice2d } from '../model/model';
import { byId, fill, h } from '../ui/dom';
import type { Chapter, ChapterContext } from './index';

/** "head 2 — same token, [L=11, dk=16]": the caption of a per-head slice. */
export function headNote({ view, info, dk }: ChapterContext): string {
  return `${headLabel(info)}, [L=${view.tokens.length}, dk=${dk}]`;
}

/** 2. Q and K of the shown head, and why that head looks the way it does. */
export const queryKey: Chapter = {
  section: 'step-qk',
  render(ctx) {
    const { view, head, dk, half, info, captured } = ctx;
    const { labels } = view;
    const L = view.tokens.length;
    const q = slice2d(captured('q'), 0, L, head * dk, dk);
    const k = slice2d(captured('k'), 0, L, head * dk, dk);
    fill(
      byId('view-Q'),
      h('p', { class: 'caption' }, `Q, ${headNote(ctx)}`),
      tokenMatrix('Q', q, labels, 'dk', { maxWidth: half }),
    );
    fill(
      byId('view-K'),
      h('p', { class: 'caption' }, `K, ${headNote(ctx)}`),
      tokenMatrix('K', k, labels, 'dk', { maxWidth: half }),
    );
    fill(
      byId('head-explanation'),
      h('b', {}, `Why ${headLabel(info)} looks like this: `),
      info.explanation,
      info.warning ? h('span', { class: 'warning-inline' }, ` ${info.warning}`) : null,
    );
  },
};
