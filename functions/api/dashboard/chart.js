// The opens and clicks over time, drawn as inline SVG.

import { count, shortDay, shortHour, svg } from "./dom.js";

const WIDTH = 860;
const HEIGHT = 280;
const MARGIN = { top: 16, right: 20, bottom: 34, left: 52 };
const MAX_BUCKETS = 2000;
const LABEL_CHARACTER_WIDTH = 6.5; // of the axis' 11px font, a little more than the average, in chart units
const LABEL_GAP = 8;
const STEP = { hour: 3_600_000, day: 86_400_000 };
const SERIES = [
  { key: "opens", title: "opens" },
  { key: "clicks", title: "clicks" },
];

/** Every hour (or day) from one before the first point to one after the last, empty ones at zero. */
export function buckets(points, interval) {
  if (!points.length) return [];
  const step = STEP[interval];
  const byTime = new Map(points.map((point) => [Date.parse(point.at), point]));
  const times = [...byTime.keys()].sort((a, b) => a - b);
  let first = times[0] - step;
  const last = times[times.length - 1] + step;
  first = Math.max(first, last - (MAX_BUCKETS - 1) * step);
  const filled = [];
  for (let time = first; time <= last; time += step) {
    const point = byTime.get(time);
    filled.push({ time, opens: point?.opens ?? 0, clicks: point?.clicks ?? 0 });
  }
  return filled;
}

/** A round step between grid lines giving at most 5 of them above zero, and the top it reaches. */
function scale(maximum) {
  let step = 1;
  for (let magnitude = 1; ; magnitude *= 10) {
    const found = [1, 2, 5].map((factor) => factor * magnitude).find((candidate) => maximum / candidate <= 5);
    if (found) {
      step = found;
      break;
    }
  }
  return { step, top: Math.max(step, Math.ceil(maximum / step) * step) };
}

/** An SVG line chart of opens and clicks per hour or per day; null when there is nothing to draw. */
export function timelineChart(points, interval) {
  const data = buckets(points, interval);
  if (!data.length) return null;
  const innerWidth = WIDTH - MARGIN.left - MARGIN.right;
  const innerHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const { step, top } = scale(Math.max(...data.map((d) => Math.max(d.opens, d.clicks))));
  const x = (index) => MARGIN.left + (data.length === 1 ? innerWidth / 2 : (index * innerWidth) / (data.length - 1));
  const y = (value) => MARGIN.top + innerHeight - (value / top) * innerHeight;
  const label = interval === "day" ? shortDay : shortHour;

  const chart = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": `Opens and clicks per ${interval}`,
    dataset: { interval, buckets: data.length },
  });

  const axis = svg("g", { class: "axis" });
  for (let value = 0; value <= top; value += step) {
    axis.append(
      svg("line", { class: "grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(value), y2: y(value) }),
      svg("text", { x: MARGIN.left - 8, y: y(value) + 4, "text-anchor": "end" }, count(value)),
    );
  }
  const every = Math.max(1, Math.ceil(data.length / 8));
  let drawnUpTo = -Infinity; // the right end of the last label drawn: the next may not overlap it
  data.forEach((d, index) => {
    if (index % every === 0) {
      const anchor = index === 0 ? "start" : index === data.length - 1 ? "end" : "middle";
      const text = label(d.time);
      const width = text.length * LABEL_CHARACTER_WIDTH;
      const left = x(index) - { start: 0, middle: width / 2, end: width }[anchor];
      if (left < drawnUpTo + LABEL_GAP) return;
      drawnUpTo = left + width;
      axis.append(svg("text", { x: x(index), y: HEIGHT - 10, "text-anchor": anchor }, text));
    }
  });
  chart.append(axis);

  for (const series of SERIES) {
    const coordinates = data.map((d, index) => [x(index), y(d[series.key])]);
    const line = coordinates.map(([px, py], index) => `${index ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
    const base = y(0).toFixed(1);
    const area = `${line}L${coordinates.at(-1)[0].toFixed(1)},${base}L${coordinates[0][0].toFixed(1)},${base}Z`;
    chart.append(svg("path", { class: `area ${series.key}`, d: area }));
    chart.append(svg("path", { class: `line ${series.key}`, d: line }));
  }
  for (const series of SERIES) {
    const points = svg("g", { class: `points ${series.key}` });
    data.forEach((d, index) => {
      if (!d[series.key]) return;
      points.append(
        svg(
          "circle",
          {
            class: `point ${series.key}`,
            cx: x(index).toFixed(1),
            cy: y(d[series.key]).toFixed(1),
            r: data.length > 300 ? 2 : 4,
            dataset: { series: series.key, at: new Date(d.time).toISOString(), value: d[series.key] },
          },
          svg("title", {}, `${label(d.time)} UTC: ${count(d[series.key])} ${series.title}`),
        ),
      );
    });
    chart.append(points);
  }
  return chart;
}
