// polypseg viewer: plain JavaScript, no libraries. Talks to its own server only (relative URLs, so the page
// also works behind a reverse proxy under a path prefix). Each image is predicted once, as an 8-bit
// probability PNG at the image's own size; the mask, overlay, polyp fraction and components at any
// threshold are computed here from that map (pixel is polyp when round(255 p) / 255 > threshold).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { threshold: 0.5, card: null, items: [], video: null };

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.detail || response.statusText;
  } catch (e) {
    return response.status + " " + response.statusText;
  }
}

function setStatus(text) {
  $("status").textContent = text;
}

// ---- model card -------------------------------------------------------------------------------------

function cardRows(card) {
  const m = card.model || {};
  const r = card.recipe || {};
  const v = card.versions || {};
  const val = card.validation || {};
  const s = card.serving || {};
  const args = Object.entries(m.args || {}).map(([k, x]) => k + "=" + x).join(", ");
  return [
    ["architecture", (m.name || "?") + (args ? " (" + args + ")" : "")],
    ["parameters", m.parameters != null ? m.parameters.toLocaleString("en") : "?"],
    ["input size", card.input ? card.input.size + " × " + card.input.size + " px" : "?"],
    ["threshold", card.threshold.toFixed(3) + " (" + card.threshold_source + ")"],
    ["recipe", (r.name || "?") + (r.epochs ? ", " + r.epochs + " epochs" : "") + (r.loss ? ", loss " + r.loss : "")],
    ["training data", card.training_data ? card.training_data.join(", ") : "not recorded with this model"],
    ["validation Dice", val.val_dice != null ? val.val_dice.toFixed(4) + " (epoch " + val.epoch + ")" : "not stored"],
    ["versions", Object.entries(v).map(([k, x]) => k + " " + x).join(", ")],
    ["serving", (s.format || "") + " on " + (s.device || "?") + ", precision " + s.precision + (s.tta ? ", TTA" : "")],
  ];
}

async function loadCard() {
  const response = await fetch("model", { headers: authHeaders() });
  if (!response.ok) {
    setStatus(response.status === 401 ? "this server needs an API key: type it above" : await errorText(response));
    return;
  }
  const card = await response.json();
  state.card = card;
  state.threshold = card.threshold;
  const dl = $("model-card");
  dl.replaceChildren();
  for (const [name, value] of cardRows(card)) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dl.append(dt, dd);
  }
  dl.dataset.loaded = "true";
  $("video-threshold").value = card.threshold.toFixed(2);
  $("video-threshold-value").textContent = card.threshold.toFixed(2);
  setStatus("ready: drop or pick images");
}

// ---- drawing one image -------------------------------------------------------------------------------

function drawItem(item) {
  const { w, h, prob, rgb } = item;
  const { mask, area, comps } = maskAndComponents(prob, w, h, item.threshold * 255);  // q / 255 > t
  putPixels($("overlay-" + item.index), overlayPixels(rgb, mask, w, h), w, h);
  putPixels($("mask-" + item.index), maskPixels(mask, w, h), w, h);
  $("fraction-" + item.index).textContent = (100 * area / (w * h)).toFixed(2) + " %";
  $("threshold-value-" + item.index).textContent = item.threshold.toFixed(2);
  const tbody = $("components-" + item.index).querySelector("tbody");
  tbody.replaceChildren();
  comps.slice(0, 20).forEach((c, k) => {
    const tr = document.createElement("tr");
    for (const v of [k + 1, c.bbox.join(", "), c.area, c.mean.toFixed(3)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    tbody.append(tr);
  });
  $("ncomponents-" + item.index).textContent = comps.length;
}

// ---- one image --------------------------------------------------------------------------------------

function resultCard(index, name) {
  const article = document.createElement("article");
  article.className = "result";
  article.id = "result-" + index;
  article.dataset.state = "predicting";
  article.innerHTML = `
    <h3 id="name-${index}"></h3><span class="state" id="state-${index}">predicting…</span>
    <div class="views">
      <figure><canvas id="image-${index}"></canvas><figcaption>image</figcaption></figure>
      <figure><canvas id="overlay-${index}"></canvas><figcaption>overlay</figcaption></figure>
      <figure><canvas id="heatmap-${index}"></canvas><figcaption>probability</figcaption></figure>
      <figure><canvas id="mask-${index}"></canvas><figcaption>mask</figcaption></figure>
    </div>
    <div class="controls">
      <label>threshold <input id="threshold-${index}" type="range" min="0.01" max="0.99" step="0.01" disabled>
        <output id="threshold-value-${index}"></output></label>
      <span>polyp fraction <output id="fraction-${index}">–</output></span>
      <span>components <output id="ncomponents-${index}">–</output></span>
      <button id="download-${index}" type="button" disabled>download mask (PNG)</button>
    </div>
    <table class="components" id="components-${index}">
      <thead><tr><th>#</th><th>bbox x, y, w, h</th><th>area px</th><th>mean prob.</th></tr></thead>
      <tbody></tbody>
    </table>`;
  article.querySelector("h3").textContent = name;
  return article;
}

function fail(index, message) {
  $("result-" + index).dataset.state = "error";
  $("state-" + index).textContent = message;
}

async function predictImage(file, index) {
  const form = new FormData();
  form.append("file", file, file.name);
  let response;
  for (let attempt = 0; attempt < 20; attempt++) {
    response = await fetch("predict?output=probability", { method: "POST", body: form, headers: authHeaders() });
    if (response.status !== 503) break;
    const wait = Number(response.headers.get("Retry-After") || 1);
    $("state-" + index).textContent = "server busy, retrying…";
    await new Promise((r) => setTimeout(r, 1000 * wait));
  }
  if (!response.ok) return fail(index, await errorText(response));
  const probPx = await pixelsOf(await response.blob());
  const w = probPx.width, h = probPx.height;
  let imagePx;
  try {
    imagePx = await pixelsOf(file, w, h);  // the image at the probability map's size
  } catch (e) {
    imagePx = new ImageData(w, h);  // a format the browser cannot show (e.g. TIFF): the server could
  }
  const prob = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) prob[i] = probPx.data[i * 4];
  const item = { index, w, h, prob, rgb: imagePx.data, threshold: state.threshold, name: file.name };
  state.items[index] = item;
  putPixels($("image-" + index), new Uint8ClampedArray(imagePx.data), w, h);
  putPixels($("heatmap-" + index), heatPixels(prob, w, h), w, h);
  drawItem(item);
  const slider = $("threshold-" + index);
  slider.value = item.threshold.toFixed(2);
  slider.disabled = false;
  let pending = false;
  slider.addEventListener("input", () => {
    item.threshold = Number(slider.value);
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawItem(item); });
  });
  const download = $("download-" + index);
  download.disabled = false;
  download.addEventListener("click", () => downloadMask(item));
  $("state-" + index).textContent = w + " × " + h + " px";
  $("result-" + index).dataset.state = "done";
}

function downloadMask(item) {
  $("mask-" + item.index).toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = item.name.replace(/\.[^.]+$/, "") + "_mask.png";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }, "image/png");
}

async function handleFiles(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || /\.(tiff?|bmp|webp)$/i.test(f.name));
  const jobs = images.map((file) => {
    const index = state.items.length;
    state.items.push(null);
    $("results").prepend(resultCard(index, file.name));
    return () => predictImage(file, index).catch((e) => fail(index, "could not show this image: " + e.message));
  });
  setStatus(jobs.length + " image(s) sent");
  const running = [];
  for (const job of jobs) {  // two in flight at a time: the server's queue stays short
    running.push(job());
    if (running.length >= 2) await running.shift();
  }
  await Promise.all(running);
  setStatus("ready: drop or pick images");
}

// ---- video ------------------------------------------------------------------------------------------

async function videoLoop(run) {
  const video = $("video");
  const out = $("video-overlay");
  const grab = document.createElement("canvas");
  const times = [];
  while (state.video === run) {
    if (video.paused || video.ended || video.readyState < 2) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    const scale = Math.min(1, 1280 / Math.max(video.videoWidth, video.videoHeight));
    const w = Math.round(video.videoWidth * scale), h = Math.round(video.videoHeight * scale);
    grab.width = w; grab.height = h;
    const g = grab.getContext("2d", { willReadFrequently: true });
    g.drawImage(video, 0, 0, w, h);
    const frame = g.getImageData(0, 0, w, h);
    const jpeg = await new Promise((r) => grab.toBlob(r, "image/jpeg", 0.9));
    const t = Number($("video-threshold").value);
    const response = await fetch("predict?output=mask&threshold=" + t, { method: "POST", body: jpeg,
      headers: { ...authHeaders(), "Content-Type": "image/jpeg" } });
    if (!response.ok) {
      $("video-state").textContent = await errorText(response);
      await new Promise((r) => setTimeout(r, 1000 * Number(response.headers.get("Retry-After") || 1)));
      continue;
    }
    const maskPng = await pixelsOf(await response.blob(), w, h);
    const mask = new Uint8Array(w * h);
    for (let i = 0; i < w * h; i++) mask[i] = maskPng.data[i * 4] > 127 ? 1 : 0;
    putPixels(out, overlayPixels(frame.data, mask, w, h), w, h);
    const now = performance.now();
    times.push(now);
    while (times.length && now - times[0] > 3000) times.shift();
    const span = (now - times[0]) / 1000;
    $("video-fps").textContent = times.length > 1 ? ((times.length - 1) / span).toFixed(1) : "0.0";
    $("video-state").textContent = response.headers.get("X-Polyp-Fraction") > 0 ? "polyp found" : "no polyp";
  }
}

function startVideo(file) {
  const video = $("video");
  if (video.src) URL.revokeObjectURL(video.src);
  video.src = URL.createObjectURL(file);
  video.play().catch(() => { $("video-state").textContent = "press play"; });
  const run = {};
  state.video = run;
  videoLoop(run).catch((e) => { $("video-state").textContent = "stopped: " + e.message; });
}

// ---- wiring -----------------------------------------------------------------------------------------

function showMode(video) {
  $("images-panel").hidden = video;
  $("video-panel").hidden = !video;
  $("mode-images").classList.toggle("active", !video);
  $("mode-video").classList.toggle("active", video);
  if (!video) { state.video = null; $("video").pause(); }
}

function init() {
  const key = $("api-key");
  key.value = sessionStorage.getItem("polypseg-api-key") || "";
  key.addEventListener("change", () => { sessionStorage.setItem("polypseg-api-key", key.value); loadCard(); });
  $("file-input").addEventListener("change", (e) => handleFiles(e.target.files));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); handleFiles(e.dataTransfer.files); });
  $("mode-images").addEventListener("click", () => showMode(false));
  $("mode-video").addEventListener("click", () => showMode(true));
  $("video-input").addEventListener("change", (e) => { if (e.target.files[0]) startVideo(e.target.files[0]); });
  $("video-stop").addEventListener("click", () => { state.video = null; $("video").pause(); });
  $("video-threshold").addEventListener("input", (e) => {
    $("video-threshold-value").textContent = Number(e.target.value).toFixed(2);
  });
  loadCard().catch((e) => setStatus("cannot reach the server: " + e.message));
}

document.addEventListener("DOMContentLoaded", init);
