// The pace chart as inline SVG: today's sales per local hour as bars, yesterday's as a line,
// and the pace today's target needs as a dashed step line. No library: a few dozen shapes.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 1600;
const HEIGHT = 640;
const PAD = { left: 90, right: 30, top: 30, bottom: 70 };
// The hours a floor usually works; widened to any hour that has numbers.
const FIRST_HOUR = 8;
const LAST_HOUR = 20;

function node(tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

// The top of the scale: four whole-number steps of 1, 2 or 5 times a power of ten.
function niceMax(value) {
  const wanted = Math.max(1, value / 4);
  const magnitude = 10 ** Math.floor(Math.log10(wanted));
  for (const step of [1, 2, 5, 10]) {
    if (step * magnitude >= wanted) return 4 * step * magnitude;
  }
  return 40 * magnitude;
}

export function renderPaceChart(host, pace, { now, labels, count }) {
  const hours = new Map((pace.hours || []).map((h) => [h.hour, h]));
  let first = FIRST_HOUR;
  let last = LAST_HOUR;
  for (const [hour, h] of hours) {
    const any = Number(h.sales) || Number(h.yesterday_sales) || Number(h.needed_sales);
    if (any) {
      first = Math.min(first, hour);
      last = Math.max(last, hour);
    }
  }
  const span = last - first + 1;
  const value = (hour, key) => {
    const v = hours.get(hour)?.[key];
    return v === null || v === undefined ? null : Number(v);
  };
  let top = 0;
  for (let h = first; h <= last; h += 1) {
    for (const key of ["sales", "yesterday_sales", "needed_sales"]) {
      top = Math.max(top, value(h, key) ?? 0);
    }
  }
  top = niceMax(top);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / span;
  const x = (hour) => PAD.left + (hour - first) * slot;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  const svg = node("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "pace-svg",
    role: "img",
    "aria-label": `${labels.today}, ${labels.yesterday}, ${labels.needed}`,
  });
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    svg.append(node("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(node("text", { x: PAD.left - 14, y: y(v) + 10, class: "axis", "text-anchor": "end" }, count(v)));
  }
  for (let h = first; h <= last; h += 1) {
    const sales = value(h, "sales") ?? 0;
    const current = h === now.hour;
    const future = h > now.hour;
    if (!future) {
      const bar = node("rect", {
        x: x(h) + slot * 0.18,
        y: y(sales),
        width: slot * 0.64,
        height: Math.max(0, y(0) - y(sales)),
        class: current ? "bar-today current" : "bar-today",
      });
      svg.append(bar);
      if (sales > 0) {
        svg.append(
          node("text", { x: x(h) + slot / 2, y: y(sales) - 10, class: "bar-label", "text-anchor": "middle" }, count(sales)),
        );
      }
    }
    svg.append(
      node("text", { x: x(h) + slot / 2, y: HEIGHT - PAD.bottom + 42, class: "axis", "text-anchor": "middle" }, `${h}`),
    );
  }
  const linePoints = (key) => {
    const points = [];
    for (let h = first; h <= last; h += 1) {
      const v = value(h, key);
      if (v !== null) points.push(`${x(h) + slot / 2},${y(v)}`);
    }
    return points.join(" ");
  };
  const yesterday = linePoints("yesterday_sales");
  if (yesterday) svg.append(node("polyline", { points: yesterday, class: "line-yesterday" }));
  // The needed pace as steps: the same value across its whole hour.
  const steps = [];
  for (let h = first; h <= last; h += 1) {
    const v = value(h, "needed_sales");
    if (v === null) continue;
    steps.push(`${x(h)},${y(v)}`, `${x(h + 1)},${y(v)}`);
  }
  if (steps.length) svg.append(node("polyline", { points: steps.join(" "), class: "line-needed" }));
  svg.append(node("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(0), y2: y(0), class: "baseline" }));
  host.replaceChildren(svg);

  const legend = host.parentElement.querySelector(".pace-legend");
  if (legend) {
    legend.querySelector("[data-key=today]").textContent = labels.today;
    legend.querySelector("[data-key=yesterday]").textContent = labels.yesterday;
    legend.querySelector("[data-key=needed]").textContent = labels.needed;
  }
}
