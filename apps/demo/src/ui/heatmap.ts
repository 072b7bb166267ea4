import { formatNumber } from '../model/format';
import { h } from './dom';

/**
 * A matrix drawn as a grid of coloured cells on a canvas, with token labels, a colour legend and a
 * tooltip that shows the exact number under the pointer. Masked (−∞) cells are hatched grey and
 * labelled "−∞" when there is room.
 */

export type Palette = 'diverging' | 'weights';

export interface HeatmapSpec {
  /** Name for tests and the inspection hook (`window.qkvDemo.heatmap(name)`). */
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  /** Row-major values. */
  readonly data: ArrayLike<number>;
  readonly rowLabels?: readonly string[];
  /** Column labels; numeric indices (sparse) when absent. */
  readonly colLabels?: readonly string[];
  readonly rowAxis: string;
  readonly colAxis: string;
  readonly palette: Palette;
  /** Largest cell size in CSS pixels. */
  readonly maxCell?: number;
  /** Width the grid may use, in CSS pixels. */
  readonly maxWidth?: number;
  /** Draw a separator every `colGroup` columns (head boundaries). */
  readonly colGroup?: number;
  /** Extra text after each row (e.g. the row sum). */
  readonly rowNotes?: readonly string[];
  readonly rowNotesTitle?: string;
  /** Tooltip text for cell (i, j) holding v. */
  readonly describe: (i: number, j: number, v: number) => string;
  /** Called with the cell under a click, if given. */
  readonly onCellClick?: (i: number, j: number) => void;
  /** A thumbnail: no labels, no legend, no row notes. */
  readonly compact?: boolean;
  /** Row height when it should differ from the (width-limited) cell width, e.g. for wide matrices. */
  readonly rowHeight?: number;
  /** Legend with the colour scale only. */
  readonly shortLegend?: boolean;
}

export interface HeatmapData {
  readonly rows: number;
  readonly cols: number;
  readonly data: number[];
}

const registry = new Map<string, HeatmapSpec>();

/** The data behind a drawn heatmap, by name: what the e2e test compares across backends. */
export function heatmapData(name: string): HeatmapData | null {
  const spec = registry.get(name);
  if (!spec) return null;
  return { rows: spec.rows, cols: spec.cols, data: Array.from(spec.data) };
}

export function heatmapNames(): string[] {
  return [...registry.keys()];
}

let tooltip: HTMLDivElement | null = null;
function tooltipEl(): HTMLDivElement {
  if (!tooltip) {
    tooltip = h('div', { class: 'tooltip', role: 'tooltip', id: 'tooltip' });
    tooltip.hidden = true;
    document.body.append(tooltip);
  }
  return tooltip;
}

const FONT = '12px ui-sans-serif, system-ui, sans-serif';
const SMALL_FONT = '10px ui-monospace, SFMono-Regular, Menlo, monospace';
const INF_FONT = '12px ui-sans-serif, system-ui, sans-serif';

/** The number printed inside a big enough cell: short, the tooltip has the full value. */
function cellText(palette: Palette, v: number): string {
  if (palette === 'weights') return v < 0.005 ? '0' : v.toFixed(2).replace(/^0/, '');
  const a = Math.abs(v);
  const t = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return t.replace('-', '−');
}

function finiteMaxAbs(data: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (Number.isFinite(v) && Math.abs(v) > m) m = Math.abs(v);
  }
  return m || 1;
}

/** Diverging: blue below zero, white at zero, orange-red above; `t` in [−1, 1]. */
function divergingColor(t: number): string {
  const a = Math.min(1, Math.abs(t)) ** 0.8;
  const [r, g, b] = t < 0 ? [33, 102, 172] : [202, 72, 30];
  const mix = (c: number) => Math.round(255 + (c - 255) * a);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

/** Weights: white at 0 to deep teal at 1, linear so the colour is an honest share. */
function weightColor(v: number): string {
  const a = Math.max(0, Math.min(1, v));
  const mix = (from: number, to: number) => Math.round(from + (to - from) * a);
  return `rgb(${mix(255, 8)},${mix(255, 88)},${mix(255, 104)})`;
}

function textColorFor(palette: Palette, v: number, maxAbs: number): string {
  const strength = palette === 'weights' ? v : Math.abs(v) / maxAbs;
  return strength > 0.55 ? '#fff' : '#1a202c';
}

let hatch: CanvasPattern | null = null;
function hatchPattern(ctx: CanvasRenderingContext2D): CanvasPattern | string {
  if (hatch) return hatch;
  const c = document.createElement('canvas');
  c.width = 6;
  c.height = 6;
  const g = c.getContext('2d');
  if (!g) return '#d4d4d8';
  g.fillStyle = '#e4e4e7';
  g.fillRect(0, 0, 6, 6);
  g.strokeStyle = '#a1a1aa';
  g.beginPath();
  g.moveTo(0, 6);
  g.lineTo(6, 0);
  g.stroke();
  hatch = ctx.createPattern(c, 'repeat');
  return hatch ?? '#d4d4d8';
}

export function heatmap(spec: HeatmapSpec): HTMLElement {
  registry.set(spec.name, spec);
  const { rows, cols, data, palette } = spec;
  const maxAbs = palette === 'weights' ? 1 : finiteMaxAbs(data);
  const measure = document.createElement('canvas').getContext('2d');
  const textWidth = (t: string) => {
    if (!measure) return t.length * 7;
    measure.font = FONT;
    return measure.measureText(t).width;
  };
  const compact = spec.compact === true;
  const rowLabels = spec.rowLabels ?? Array.from({ length: rows }, (_, i) => String(i));
  const rowLabelWidth = compact ? 0 : Math.ceil(Math.max(16, ...rowLabels.map(textWidth))) + 8;
  const maxWidth = spec.maxWidth ?? 720;
  const noteWidth = spec.rowNotes && !compact ? 64 : 0;
  // cw: cell width, limited by the space; ch: cell height, square unless told otherwise.
  const cw = Math.max(2, Math.min(spec.maxCell ?? 30, Math.floor((maxWidth - rowLabelWidth - noteWidth) / cols)));
  const ch = spec.rowHeight ?? cw;
  const colLabels = spec.colLabels;
  // Token column labels are drawn at 50°, numeric ones horizontally and only every `step`.
  const colLabelHeight = compact ? 0 : colLabels ? Math.ceil(Math.max(...colLabels.map(textWidth)) * 0.77) + 14 : 16;
  const step = colLabels ? 1 : Math.max(1, Math.ceil(28 / cw));
  const gridW = cw * cols;
  const gridH = ch * rows;
  const width = rowLabelWidth + gridW + noteWidth + 4;
  const height = colLabelHeight + gridH + 2;
  const dpr = Math.min(2, globalThis.devicePixelRatio || 1);
  const canvas = h('canvas', { class: 'heatmap-canvas', 'data-heatmap': spec.name });
  canvas.width = Math.ceil(width * dpr);
  canvas.height = Math.ceil(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `${spec.name}: ${rows} × ${cols} grid, ${spec.rowAxis} by ${spec.colAxis}`);
  const ctx = canvas.getContext('2d');
  if (ctx) {
    ctx.scale(dpr, dpr);
    const x0 = rowLabelWidth;
    const y0 = colLabelHeight;
    const showValues = cw >= 30 && ch >= 16 && !compact;
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const v = data[i * cols + j] as number;
        const x = x0 + j * cw;
        const y = y0 + i * ch;
        if (v === Number.NEGATIVE_INFINITY) {
          ctx.fillStyle = hatchPattern(ctx);
        } else if (Number.isNaN(v)) {
          ctx.fillStyle = '#f0f';
        } else {
          ctx.fillStyle = palette === 'weights' ? weightColor(v) : divergingColor(v / maxAbs);
        }
        ctx.fillRect(x, y, cw, ch);
        if (v === Number.NEGATIVE_INFINITY && cw >= 20 && ch >= 16 && !compact) {
          ctx.fillStyle = '#3f3f46';
          ctx.font = INF_FONT;
          ctx.textAlign = 'center';
          ctx.textBaseline = 'middle';
          ctx.fillText('−∞', x + cw / 2, y + ch / 2);
        } else if (showValues && Number.isFinite(v)) {
          ctx.fillStyle = textColorFor(palette, v, maxAbs);
          ctx.font = SMALL_FONT;
          ctx.textAlign = 'center';
          ctx.textBaseline = 'middle';
          ctx.fillText(cellText(palette, v), x + cw / 2, y + ch / 2);
        }
      }
    }
    if (cw >= 8 && ch >= 8) {
      ctx.strokeStyle = 'rgba(0,0,0,0.08)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let i = 0; i <= rows; i++) {
        ctx.moveTo(x0, y0 + i * ch + 0.5);
        ctx.lineTo(x0 + gridW, y0 + i * ch + 0.5);
      }
      for (let j = 0; j <= cols; j++) {
        ctx.moveTo(x0 + j * cw + 0.5, y0);
        ctx.lineTo(x0 + j * cw + 0.5, y0 + gridH);
      }
      ctx.stroke();
    }
    if (spec.colGroup && spec.colGroup < cols) {
      ctx.strokeStyle = '#1a202c';
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (let j = spec.colGroup; j < cols; j += spec.colGroup) {
        ctx.moveTo(x0 + j * cw, y0 - 4);
        ctx.lineTo(x0 + j * cw, y0 + gridH);
      }
      ctx.stroke();
    }
    if (!compact) drawLabels(ctx, spec, { x0, y0, cw, ch, gridW, rowLabels, step });
  }
  const cellAt = (ev: MouseEvent): [number, number] | null => {
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left - rowLabelWidth;
    const y = ev.clientY - rect.top - colLabelHeight;
    const j = Math.floor(x / cw);
    const i = Math.floor(y / ch);
    return i >= 0 && i < rows && j >= 0 && j < cols ? [i, j] : null;
  };
  canvas.addEventListener('mousemove', (ev) => {
    const at = cellAt(ev);
    const tip = tooltipEl();
    if (!at) {
      tip.hidden = true;
      return;
    }
    const [i, j] = at;
    tip.textContent = spec.describe(i, j, data[i * cols + j] as number);
    tip.hidden = false;
    tip.style.left = `${Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8)}px`;
    tip.style.top = `${ev.clientY + 14}px`;
  });
  canvas.addEventListener('mouseleave', () => {
    tooltipEl().hidden = true;
  });
  if (spec.onCellClick) {
    canvas.classList.add('clickable');
    canvas.addEventListener('click', (ev) => {
      const at = cellAt(ev);
      if (at) spec.onCellClick?.(at[0], at[1]);
    });
  }
  return h(
    'figure',
    { class: 'heatmap' },
    h('div', { class: 'heatmap-scroll' }, canvas),
    compact ? null : legend(palette, maxAbs, spec, data),
  );
}

interface Geometry {
  x0: number;
  y0: number;
  cw: number;
  ch: number;
  gridW: number;
  rowLabels: readonly string[];
  /** Label every `step`-th numeric column. */
  step: number;
}

/** Row labels on the left, column labels on top (tokens at 50°, indices flat), row notes right. */
function drawLabels(ctx: CanvasRenderingContext2D, spec: HeatmapSpec, g: Geometry): void {
  const { x0, y0, cw, ch, gridW, rowLabels, step } = g;
  ctx.fillStyle = '#1a202c';
  ctx.font = FONT;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  // With small cells label only every few rows, so the labels stay readable.
  const rstep = ch >= 10 ? 1 : Math.ceil(14 / ch);
  for (let i = 0; i < spec.rows; i += rstep) ctx.fillText(rowLabels[i] ?? '', x0 - 6, y0 + i * ch + ch / 2);
  if (spec.colLabels) {
    spec.colLabels.forEach((l, j) => {
      ctx.save();
      ctx.translate(x0 + j * cw + cw / 2 + 3, y0 - 6);
      ctx.rotate((-50 * Math.PI) / 180);
      ctx.textAlign = 'left';
      ctx.fillText(l, 0, 0);
      ctx.restore();
    });
  } else {
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.fillStyle = '#52525b';
    ctx.font = SMALL_FONT;
    for (let j = 0; j < spec.cols; j += step) ctx.fillText(String(j), x0 + j * cw + cw / 2, y0 - 3);
  }
  if (spec.rowNotes) {
    ctx.textAlign = 'left';
    ctx.fillStyle = '#3f3f46';
    ctx.font = SMALL_FONT;
    if (spec.rowNotesTitle) {
      ctx.textBaseline = 'bottom';
      ctx.fillText(spec.rowNotesTitle, x0 + gridW + 8, y0 - 3);
    }
    ctx.textBaseline = 'middle';
    if (ch >= 10) spec.rowNotes.forEach((n, i) => ctx.fillText(n, x0 + gridW + 8, y0 + i * ch + ch / 2));
  }
}

function legend(palette: Palette, maxAbs: number, spec: HeatmapSpec, data: ArrayLike<number>): HTMLElement {
  let masked = false;
  for (let i = 0; i < data.length && !masked; i++) masked = data[i] === Number.NEGATIVE_INFINITY;
  const bar = h('span', { class: `legend-bar ${palette}` });
  const lo = palette === 'weights' ? '0' : formatNumber(-maxAbs, 2);
  const hi = palette === 'weights' ? '1' : formatNumber(maxAbs, 2);
  return h(
    'figcaption',
    { class: 'legend' },
    spec.shortLegend ? null : h('span', { class: 'axis' }, `rows: ${spec.rowAxis} · columns: ${spec.colAxis}`),
    h('span', { class: 'scale' }, lo, bar, hi),
    masked ? h('span', { class: 'masked-key' }, h('span', { class: 'swatch-masked' }), '−∞ (masked)') : null,
    spec.shortLegend ? null : h('span', { class: 'hint' }, 'hover a cell for its value'),
  );
}
