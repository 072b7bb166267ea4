import type { Tensor } from 'qkv';
import { headLabel, scoreGrid } from '../figures';
import { headGrid } from '../model/model';
import { byId, fill, h } from '../ui/dom';
import type { Chapter } from './index';

/** "So “sat” sees “the”, “cat” and itself, but not “on”, “the”, …": the mask on one row. */
function maskExample(labels: readonly string[]): string {
  const i = Math.min(2, labels.length - 1);
  const quote = (l: string) => `“${l}”`;
  const earlier = labels.slice(0, i).map(quote);
  const later = labels.slice(i + 1, i + 4).map(quote);
  const sees = earlier.length ? `${earlier.join(', ')} and itself` : 'only itself';
  const hidden = later.length ? `, but not ${later.join(', ')}${labels.length > i + 4 ? ', …' : ''}` : '';
  return `So ${quote(labels[i] ?? '')} sees ${sees}${hidden}.`;
}

/** 4. The mask, the softmax weights of the shown head, and every head's weights as thumbnails. */
export const softmax: Chapter = {
  section: 'step-softmax',
  render({ view, head, half, captured, selectHead }) {
    const { labels, settings, heads } = view;
    fill(
      byId('mask-direction'),
      settings.causal
        ? h(
            'span',
            {},
            h('b', {}, 'Causal mask on: a token attends only to itself and earlier tokens. '),
            'The note says “we set previous words’ entries of scaled_score into −inf”; seen from the focus word i, those are the entries of the words that come after it: every key j > i, the cells right of the diagonal. ',
            maskExample(labels),
          )
        : h(
            'span',
            {},
            h('b', {}, 'Causal mask off: '),
            'nothing is masked, so every token sees every token, before and after it (as in an encoder like BERT). Switch the mask on to hide the future.',
          ),
    );
    fill(
      byId('view-masked'),
      scoreGrid('masked', headGrid(captured('masked'), head), labels, 'masked', 'diverging', half),
    );
    const weightsGrid = headGrid(view.run.result.weights as Tensor, head);
    fill(byId('view-weights'), scoreGrid('weights', weightsGrid, labels, 'W_a', 'weights', half));
    fill(
      byId('all-heads'),
      ...heads.map((hi) => {
        const fig = h(
          'button',
          { type: 'button', class: `head-thumb${hi.index === head ? ' selected' : ''}`, 'data-head': hi.index },
          h('span', { class: 'head-title' }, headLabel(hi)),
          scoreGrid(
            `weights-head-${hi.index}`,
            headGrid(view.run.result.weights as Tensor, hi.index),
            labels,
            `W_a(head ${hi.index + 1})`,
            'weights',
            180,
            true,
          ),
        );
        fig.addEventListener('click', () => selectHead(hi.index));
        return fig;
      }),
      h(
        'figure',
        { class: 'head-thumb average', 'data-testid': 'weights-averaged' },
        h('span', { class: 'head-title' }, `average of all ${heads.length} heads`),
        scoreGrid('weights-averaged', view.averaged, labels, 'mean_h W_a(h)', 'weights', 180, true),
        h('figcaption', { class: 'caption' }, "returnWeights: 'averaged' (PyTorch's average_attn_weights)"),
      ),
    );
  },
};
