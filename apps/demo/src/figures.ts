import type { Tensor } from 'qkv';
import { formatNumber } from './model/format';
import { type HeadInfo, rowSums } from './model/model';
import { h } from './ui/dom';
import { heatmap } from './ui/heatmap';

/** The page's figure builders: token × column matrices, query × key grids, results tables. */

/** A results table (compare-all, long sequences): caption, one header row, body rows. */
export function resultsTable(id: string, caption: string, headers: string[], rows: HTMLElement[]): HTMLElement {
  return h(
    'table',
    { class: 'results', id },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows),
  );
}

export const MAX_WIDTH = () => Math.min(1100, document.documentElement.clientWidth - 64);

export function tokenMatrix(
  name: string,
  t: Tensor,
  labels: string[],
  what: string,
  opts: { colGroup?: number; maxWidth?: number; small?: boolean } = {},
): HTMLElement {
  const [rows, cols] = t.shape as [number, number];
  // Small multiples (one per head) keep rows tall enough to label while columns get narrow.
  const small = opts.small ? { rowHeight: 12, shortLegend: true } : {};
  return heatmap({
    ...small,
    name,
    rows,
    cols,
    data: t.data,
    rowLabels: labels,
    rowAxis: 'tokens',
    colAxis: `${what} columns`,
    palette: 'diverging',
    maxCell: 22,
    maxWidth: opts.maxWidth ?? MAX_WIDTH(),
    ...(opts.colGroup ? { colGroup: opts.colGroup } : {}),
    describe: (i, j, v) => `${name}[${labels[i]}, ${j}] = ${formatNumber(v)}`,
  });
}

export function scoreGrid(
  name: string,
  t: Tensor,
  labels: string[],
  symbol: string,
  palette: 'diverging' | 'weights',
  maxWidth: number,
  compact = false,
): HTMLElement {
  const [L] = t.shape as [number];
  const sums = palette === 'weights' ? rowSums(t) : null;
  return heatmap({
    name,
    rows: L,
    cols: L,
    data: t.data,
    rowLabels: labels.map((l) => `${l} →`),
    colLabels: labels,
    rowAxis: 'query i (focus word)',
    colAxis: 'key j (other word)',
    palette,
    maxCell: compact ? 12 : 40,
    maxWidth,
    compact,
    ...(sums ? { rowNotes: sums.map((s) => `Σ ${s.toFixed(3)}`), rowNotesTitle: 'row sum' } : {}),
    describe: (i, j, v) => {
      const masked = v === Number.NEGATIVE_INFINITY ? ` — masked: “${labels[j]}” comes after “${labels[i]}”` : '';
      const pct = palette === 'weights' ? ` (${(v * 100).toFixed(1)}% of “${labels[i]}”'s attention)` : '';
      return `${symbol}[${labels[i]} → ${labels[j]}] = ${formatNumber(v, 4)}${pct}${masked}`;
    },
  });
}

export function headLabel(info: HeadInfo): string {
  return `head ${info.index + 1} — ${info.title}`;
}
