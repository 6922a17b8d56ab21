// polypseg viewer, pixel work: the probability heat map, the mask and its 8-connected components, the
// overlay. Pure functions over typed arrays (no DOM); app.js draws their results on the page's canvases.
"use strict";

const HEAT_STOPS = [[0, 0, 0, 4], [0.25, 87, 16, 110], [0.5, 188, 55, 84], [0.75, 249, 142, 9], [1, 252, 255, 164]];
const HEAT = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let q = 0; q < 256; q++) {
    const p = q / 255;
    let k = 0;
    while (k < HEAT_STOPS.length - 2 && p > HEAT_STOPS[k + 1][0]) k++;
    const [p0, ...c0] = HEAT_STOPS[k];
    const [p1, ...c1] = HEAT_STOPS[k + 1];
    const f = (p - p0) / (p1 - p0);
    for (let c = 0; c < 3; c++) lut[q * 3 + c] = c0[c] + f * (c1[c] - c0[c]);
  }
  return lut;
})();

async function pixelsOf(blob, width, height) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const w = width || bitmap.width;
  const h = height || bitmap.height;
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0, w, h);
  bitmap.close();
  return ctx.getImageData(0, 0, w, h);
}

function putPixels(canvas, data, w, h) {
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").putImageData(new ImageData(data, w, h), 0, 0);
}

// The mask and its 8-connected components: labels, bbox, area, mean probability (largest first).
function maskAndComponents(prob, w, h, cut) {
  const n = w * h;
  const mask = new Uint8Array(n);
  let area = 0;
  for (let i = 0; i < n; i++) if (prob[i] > cut) { mask[i] = 1; area++; }
  const labels = new Int32Array(n);
  const stack = new Int32Array(n);
  const comps = [];
  for (let start = 0; start < n; start++) {
    if (!mask[start] || labels[start]) continue;
    const id = comps.length + 1;
    let top = 0, x0 = w, y0 = h, x1 = 0, y1 = 0, count = 0, sum = 0;
    stack[top++] = start;
    labels[start] = id;
    while (top) {
      const i = stack[--top];
      const x = i % w, y = (i - x) / w;
      count++; sum += prob[i];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        const xx = x + dx, yy = y + dy;
        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
        const j = yy * w + xx;
        if (mask[j] && !labels[j]) { labels[j] = id; stack[top++] = j; }
      }
    }
    comps.push({ bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1], area: count, mean: sum / count / 255 });
  }
  comps.sort((a, b) => b.area - a.area);
  return { mask, area, comps };
}

// The image with the mask tinted green (alpha 0.45) and its outline yellow, as polypseg's overlay draws it.
function overlayPixels(rgb, mask, w, h) {
  const out = new Uint8ClampedArray(w * h * 4);
  for (let i = 0; i < w * h; i++) {
    const o = i * 4;
    let r = rgb[o], g = rgb[o + 1], b = rgb[o + 2];
    if (mask[i]) {
      r = 0.55 * r; g = 0.55 * g + 0.45 * 255; b = 0.55 * b;
      const x = i % w;
      const edge = x === 0 || !mask[i - 1] || x === w - 1 || !mask[i + 1] ||
        i < w || !mask[i - w] || i >= w * (h - 1) || !mask[i + w];
      if (edge) { r = 255; g = 255; b = 0; }
    }
    out[o] = r; out[o + 1] = g; out[o + 2] = b; out[o + 3] = 255;
  }
  return out;
}

// The mask as opaque black (background) and white (polyp) pixels.
function maskPixels(mask, w, h) {
  const out = new Uint8ClampedArray(w * h * 4);
  for (let i = 0; i < w * h; i++) {
    const m = mask[i] ? 255 : 0;
    out[i * 4] = m; out[i * 4 + 1] = m; out[i * 4 + 2] = m; out[i * 4 + 3] = 255;
  }
  return out;
}

// The 8-bit probability map through the heat colour map.
function heatPixels(prob, w, h) {
  const out = new Uint8ClampedArray(w * h * 4);
  for (let i = 0; i < w * h; i++) {
    const q = prob[i] * 3;
    out[i * 4] = HEAT[q]; out[i * 4 + 1] = HEAT[q + 1]; out[i * 4 + 2] = HEAT[q + 2]; out[i * 4 + 3] = 255;
  }
  return out;
}
