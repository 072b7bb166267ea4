// The bench chart as a dependency-free SVG: effective GFLOP/s (top) and peak RSS (bottom) per
// config, one bar per implementation, log scales (the peers span three orders of magnitude).

const COLORS = {
  'qkv-cpu': '#1f77b4',
  'qkv-workers': '#0b3d91',
  'qkv-cpu-reference': '#9ecae1',
  'qkv-cpu-simd128': '#6baed6',
  'ort-mha': '#d62728',
  'ort-mha-1t': '#e377c2',
  'ort-standard': '#ff9896',
  'tfjs-wasm': '#2ca02c',
  'tfjs-cpu': '#98df8a',
};
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

function panel({ y0, height, title, unit, values, configs, impls, x0, groupW, barW }) {
  const all = values.flat().filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...all)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const y = (v) => y0 + height - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * height;
  const parts = [`<text x="${x0}" y="${y0 - 8}" font-weight="bold">${esc(title)}</text>`];
  for (let e = Math.log10(lo); e <= Math.log10(hi); e++) {
    const v = 10 ** e;
    parts.push(
      `<line x1="${x0}" x2="${x0 + groupW * configs.length}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${x0 - 6}" y="${y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)} ${unit}</text>`,
    );
  }
  configs.forEach((_c, ci) => {
    impls.forEach((impl, ii) => {
      const v = values[ci][ii];
      if (!(v > 0)) return;
      const x = x0 + ci * groupW + 6 + ii * barW;
      parts.push(
        `<rect x="${x}" y="${y(v)}" width="${barW - 1}" height="${y0 + height - y(v)}" fill="${COLORS[impl] ?? '#777'}"><title>${esc(impl)}: ${v.toFixed(2)} ${unit}</title></rect>`,
      );
    });
  });
  return parts.join('\n');
}

export function renderChart(report, configs, impls, label) {
  const barW = 9;
  const groupW = impls.length * barW + 14;
  const x0 = 90;
  const width = x0 + groupW * configs.length + 20;
  const panelH = 220;
  const get = (c, impl) =>
    report.results.find((r) => r.impl === impl && r.L === c.L && r.causal === c.causal && r.status === 'ok');
  const gflops = configs.map((c) => impls.map((i) => get(c, i)?.gflops ?? 0));
  const rss = configs.map((c) => impls.map((i) => get(c, i)?.peakRssMB ?? 0));
  const height = 60 + panelH + 60 + panelH + 110 + 20 * Math.ceil(impls.length / 4);
  const labels = configs
    .map((c, ci) => {
      const x = x0 + ci * groupW + groupW / 2;
      const y = 60 + panelH + 60 + panelH + 16;
      return `<text transform="translate(${x},${y}) rotate(30)" font-size="10">${esc(label(c))}</text>`;
    })
    .join('\n');
  const legend = impls
    .map((impl, i) => {
      const x = x0 + (i % 4) * 200;
      const y = height - 20 * Math.ceil(impls.length / 4) + Math.floor(i / 4) * 20;
      return `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${COLORS[impl] ?? '#777'}"/><text x="${x + 16}" y="${y}">${esc(impl)} (${report.implementations[impl].threads} thr)</text>`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="${x0}" y="18" font-size="13" font-weight="bold">qkv attention bench — ${esc(report.date.slice(0, 10))}, ${esc(report.machine.cpu)}, ${report.machine.cores} cores, Node ${esc(report.machine.node)}</text>
<text x="${x0}" y="34">median of ${report.runs} runs; FLOPs = 8·L·d² + 4·L²·d (causal counted as full); missing bar = not run or failed (see latest.json)</text>
${panel({ y0: 60, height: panelH, title: 'effective GFLOP/s (log)', unit: '', values: gflops, configs, impls, x0, groupW, barW })}
${panel({ y0: 60 + panelH + 60, height: panelH, title: 'peak RSS, MB (log)', unit: '', values: rss, configs, impls, x0, groupW, barW })}
${labels}
${legend}
</svg>
`;
}
