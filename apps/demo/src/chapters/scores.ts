import { scoreGrid } from '../figures';
import { headGrid } from '../model/model';
import { byId, fill } from '../ui/dom';
import type { Chapter } from './index';

/** 3. The dot products Q·K and the scaled scores of the shown head. */
export const scores: Chapter = {
  section: 'step-scores',
  render({ view, head, half, captured }) {
    const { labels } = view;
    fill(
      byId('view-scores'),
      scoreGrid('scores', headGrid(captured('scores'), head), labels, 'Q·K', 'diverging', half),
    );
    fill(
      byId('view-scaled'),
      scoreGrid('scaled', headGrid(captured('scaled'), head), labels, 'scaled', 'diverging', half),
    );
  },
};
