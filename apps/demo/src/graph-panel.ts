import type { GraphNode, StepName } from 'qkv';
import type { App } from './app';
import { MAX_WIDTH, scoreGrid, tokenMatrix } from './figures';
import { formatNumber, formatShape } from './model/format';
import { headDim, headGrid } from './model/model';
import { byId, fill, h } from './ui/dom';
import { graphView } from './ui/graphview';
import { heatmap } from './ui/heatmap';

/** The attention graph (attn.graph(shape)) and the tensor captured for the selected node. */

export function renderGraph(app: App): void {
  const { view, state } = app;
  if (!view) return;
  const L = view.tokens.length;
  const graph = view.run.attention.graph({ batch: 1, queryLength: L, keyLength: L });
  const node = graph.nodes.find((n) => n.name === state.graphNode) ?? (graph.nodes[0] as GraphNode);
  fill(
    byId('graph'),
    graphView(graph, node.name, (n) => {
      state.graphNode = n.name;
      renderGraph(app);
    }),
  );
  fill(byId('graph-detail'), ...graphDetail(app, node));
}

function graphDetail(app: App, node: GraphNode): (HTMLElement | string)[] {
  const view = app.view;
  if (!view) return [];
  const { labels, settings, weights } = view;
  const dk = headDim(settings);
  const head = app.state.head;
  const out: (HTMLElement | string)[] = [
    h('h3', {}, h('code', {}, node.name), ` · ${node.op}`),
    h('p', { class: 'formula' }, node.doc),
    h(
      'p',
      {},
      'shape ',
      h('code', {}, formatShape(node.shape, node.dims)),
      node.inputs.some((i) => i) ? ` · from ${node.inputs.filter(Boolean).join(', ')}` : '',
    ),
  ];
  const width = Math.min(560, MAX_WIDTH() - 40);
  if (node.op === 'param') {
    const t = weights[node.name as 'wq' | 'wk' | 'wv' | 'wo'];
    if (t) {
      const [rows, cols] = t.shape as [number, number];
      out.push(
        heatmap({
          name: `graph:${node.name}`,
          rows,
          cols,
          data: t.data,
          rowAxis: node.dims[0] ?? 'rows',
          colAxis: node.dims[1] ?? 'columns',
          palette: 'diverging',
          maxCell: 12,
          maxWidth: width,
          ...(node.name !== 'wo' ? { colGroup: dk } : {}),
          describe: (i, j, v) => `${node.name}[${i}, ${j}] = ${formatNumber(v)}`,
        }),
      );
    }
    return out;
  }
  const t =
    view.run.result.captured[node.name as StepName] ?? (node.name === 'weights' ? view.run.result.weights : undefined);
  if (!t) {
    out.push(h('p', { class: 'note' }, 'This node is not captured on its own.'));
    return out;
  }
  if (t.shape.length === 3) {
    out.push(
      h(
        'p',
        { class: 'caption' },
        `showing ${node.dims.includes('H') ? `head ${head + 1}` : 'batch 0'} of ${formatShape(t.shape)}`,
      ),
    );
    out.push(
      scoreGrid(
        `graph:${node.name}`,
        headGrid(t, head),
        labels,
        node.name,
        node.name === 'weights' ? 'weights' : 'diverging',
        width,
      ),
    );
  } else {
    const cols = t.shape[1] as number;
    out.push(
      tokenMatrix(`graph:${node.name}`, t, labels, node.dims[node.dims.length - 1] ?? 'columns', {
        maxWidth: width,
        ...(cols === settings.numHeads * dk && cols !== settings.dModel ? { colGroup: dk } : {}),
      }),
    );
  }
  return out;
}
