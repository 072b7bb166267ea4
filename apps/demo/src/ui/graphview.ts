import type { AttentionGraph, GraphNode } from 'qkv';

/**
 * The attention graph as an SVG: one box per node, arranged top to bottom by depth (a node sits
 * one row below its deepest input; weights sit just above their first consumer), edges as curves.
 * Clicking a node calls `onSelect`; the page then shows that node's captured tensor.
 */

const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 118;
const NODE_H = 40;
const GAP_X = 18;
const GAP_Y = 30;

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>,
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** Depth of each node: computed nodes below their inputs, sources just above their consumers. */
export function layoutDepths(graph: AttentionGraph): Map<string, number> {
  const depth = new Map<string, number>();
  const sources = new Set<string>();
  for (const n of graph.nodes) {
    const ins = n.inputs.filter((i): i is string => i !== null);
    if (ins.length === 0 && n.op !== 'positionalEncoding') {
      sources.add(n.name);
      depth.set(n.name, 0);
    } else {
      depth.set(n.name, Math.max(0, ...ins.map((i) => (depth.get(i) ?? 0) + 1)));
    }
  }
  // Weights and inputs sit one row above their first consumer, so edges stay short.
  for (const s of sources) {
    const consumers = graph.nodes.filter((n) => n.inputs.includes(s)).map((n) => depth.get(n.name) ?? 1);
    if (consumers.length > 0) depth.set(s, Math.max(0, Math.min(...consumers) - 1));
  }
  // Recompute computed nodes now that sources may have moved down.
  for (const n of graph.nodes) {
    if (sources.has(n.name)) continue;
    const ins = n.inputs.filter((i): i is string => i !== null);
    depth.set(n.name, Math.max(0, ...ins.map((i) => (depth.get(i) ?? 0) + 1)));
  }
  return depth;
}

export function graphView(graph: AttentionGraph, selected: string, onSelect: (node: GraphNode) => void): SVGSVGElement {
  const depth = layoutDepths(graph);
  const rows = new Map<number, GraphNode[]>();
  for (const n of graph.nodes) {
    const d = depth.get(n.name) ?? 0;
    rows.set(d, [...(rows.get(d) ?? []), n]);
  }
  const maxPerRow = Math.max(...[...rows.values()].map((r) => r.length));
  const width = maxPerRow * (NODE_W + GAP_X) + GAP_X;
  const numRows = Math.max(...rows.keys()) + 1;
  const height = numRows * (NODE_H + GAP_Y) + GAP_Y;
  const pos = new Map<string, { x: number; y: number }>();
  for (const [d, nodes] of rows) {
    const rowW = nodes.length * (NODE_W + GAP_X) - GAP_X;
    nodes.forEach((n, k) => {
      pos.set(n.name, { x: (width - rowW) / 2 + k * (NODE_W + GAP_X), y: GAP_Y / 2 + d * (NODE_H + GAP_Y) });
    });
  }
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'graph', role: 'group' });
  root.setAttribute('aria-label', 'attention graph: click a node to see its tensor');
  const defs = svg('defs', {});
  const marker = svg('marker', {
    id: 'arrow',
    viewBox: '0 0 10 10',
    refX: 9,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: 'auto-start-reverse',
  });
  marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#71717a' }));
  defs.append(marker);
  root.append(defs);
  for (const n of graph.nodes) {
    const to = pos.get(n.name);
    if (!to) continue;
    for (const input of n.inputs) {
      if (input === null) continue;
      const from = pos.get(input);
      if (!from) continue;
      const x1 = from.x + NODE_W / 2;
      const y1 = from.y + NODE_H;
      const x2 = to.x + NODE_W / 2;
      const y2 = to.y;
      const my = (y1 + y2) / 2;
      root.append(
        svg('path', {
          d: `M ${x1} ${y1} C ${x1} ${my}, ${x2} ${my}, ${x2} ${y2 - 2}`,
          class: 'edge',
          'marker-end': 'url(#arrow)',
        }),
      );
    }
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.name);
    if (!p) continue;
    const g = svg('g', {
      class: `node op-${n.op}${n.name === selected ? ' selected' : ''}`,
      transform: `translate(${p.x} ${p.y})`,
      tabindex: 0,
      role: 'button',
      'data-node': n.name,
    });
    g.setAttribute('aria-label', `${n.name}: ${n.doc}`);
    const title = svg('title', {});
    title.textContent = `${n.name} (${n.op}) — ${n.doc}`;
    g.append(title, svg('rect', { width: NODE_W, height: NODE_H, rx: 7 }));
    const name = svg('text', { x: NODE_W / 2, y: 16, class: 'node-name' });
    name.textContent = n.name;
    const shape = svg('text', { x: NODE_W / 2, y: 31, class: 'node-shape' });
    shape.textContent = `[${n.shape.join('×')}]`;
    g.append(name, shape);
    const choose = () => onSelect(n);
    g.addEventListener('click', choose);
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        choose();
      }
    });
    root.append(g);
  }
  return root;
}
