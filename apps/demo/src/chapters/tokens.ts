import { tokenMatrix } from '../figures';
import { byId, fill, h } from '../ui/dom';
import type { Chapter } from './index';

/** 1. Tokens, their embeddings E, the positional encoding PE and E + PE. */
export const tokens: Chapter = {
  section: 'step-tokens',
  render({ view, captured }) {
    const { labels } = view;
    fill(
      byId('tokens'),
      ...view.tokens.map((t, i) =>
        h('span', { class: 'token', title: `position ${i}` }, h('span', { class: 'token-pos' }, String(i)), t),
      ),
    );
    fill(byId('view-E'), tokenMatrix('E', captured('input'), labels, 'dModel'));
    fill(byId('view-PE'), tokenMatrix('PE', captured('positionalEncoding'), labels, 'dModel'));
    fill(byId('view-X'), tokenMatrix('E + PE', captured('x'), labels, 'dModel'));
  },
};
