// A live line chart of one key in inline SVG (no library): keeps the last `capacity` points.
const NS = 'http://www.w3.org/2000/svg';

export class LiveChart {
  constructor(svg, capacity = 120) {
    this.svg = svg;
    this.capacity = capacity;
    this.points = [];
  }

  reset(points = []) {
    this.points = points.slice(-this.capacity);
    this.draw();
  }

  add(ts, value) {
    const y = Number(value);
    if (!Number.isFinite(y)) return;
    this.points.push([Number(ts), y]);
    this.points.sort((a, b) => a[0] - b[0]);
    if (this.points.length > this.capacity) this.points.splice(0, this.points.length - this.capacity);
    this.draw();
  }

  draw() {
    const { svg, points } = this;
    const width = 600, height = 180, pad = 28;
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.replaceChildren();
    svg.dataset.points = String(points.length);
    if (points.length === 0) {
      svg.append(text(width / 2 - 40, height / 2, 'no numeric data'));
      return;
    }
    const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = x => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
    const sy = y => height - pad - ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' '));
    svg.append(line, text(2, pad, String(y1)), text(2, height - pad, String(y0)),
      text(width - 150, height - 6, new Date(x1).toLocaleTimeString()));
    svg.dataset.last = String(ys[ys.length - 1]);
  }
}

function text(x, y, content) {
  const t = document.createElementNS(NS, 'text');
  t.setAttribute('x', x);
  t.setAttribute('y', y);
  t.textContent = content;
  return t;
}
