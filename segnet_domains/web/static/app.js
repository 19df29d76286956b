// segnet-domains web demo: vanilla JS, no build step, no network beyond this server.
// The page talks only to the documented API: GET /api/models, /api/samples, POST /api/preview
// (the same job as POST /api/predict, answered with the arrays to draw and the mask file).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], file: null, result: null, busy: false };
// What the last render drew (read by the browser test): overlay pixels and the slice shown.
window.segnetView = { overlayPixels: 0, slice: null, axis: null };

function setState(s) { document.body.dataset.state = s; }

function status(text, done, total) {
  $("status").textContent = text;
  const bar = $("progress");
  bar.hidden = done === undefined;
  if (done === null || done === undefined) bar.removeAttribute("value");
  else { bar.max = total || 1; bar.value = done; }
}

function showError(text) {
  const e = $("error");
  e.textContent = text; e.hidden = !text;
  if (text) { setState("error"); status("Failed."); }
}

// ------------------------------------------------------------------ models and samples

function modelByName(name) { return state.models.find((m) => m.name === name); }

function describeModel(m) {
  const dl = $("model-info");
  dl.innerHTML = "";
  if (!m) return;
  const rows = [
    ["name", m.name], ["domain", m.domain || "—"],
    ["bands", m.bands + (m.band_names ? " (" + m.band_names.join(", ") + ")" : "")],
    ["classes", m.classes.map((c) => c.name).join(", ")],
    ["model", m.architecture + (m.features ? ` ${m.features[0]}…${m.features[m.features.length - 1]}` : "")],
    ["dropout", m.dropout ? "yes (uncertainty available)" : "no"],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
}

function modelChanged() {
  const m = modelByName($("model").value);
  describeModel(m);
  const dropout = m ? m.dropout : state.models.some((x) => x.dropout);
  $("uncertainty").disabled = !dropout;
  if (!dropout) $("uncertainty").checked = false;
}

async function loadModels() {
  const r = await fetch("/api/models");
  state.models = await r.json();
  const sel = $("model");
  for (const m of state.models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (${m.domain || "any"}, ${m.bands} band${m.bands > 1 ? "s" : ""}, ${m.classes.length} classes)`;
    sel.append(o);
  }
  modelChanged();
}

async function loadSamples() {
  const r = await fetch("/api/samples");
  for (const s of await r.json()) {
    const b = document.createElement("button");
    b.textContent = s.title; b.dataset.sample = s.name;
    b.addEventListener("click", async () => {
      if (state.busy) return;
      showError(""); setState("busy"); status("Preparing the sample…", null);
      try {
        const resp = await fetch("/api/samples/" + encodeURIComponent(s.name));
        if (!resp.ok) throw new Error((await resp.json()).error);
        const name = (resp.headers.get("content-disposition") || "").match(/filename="?([^";]+)/);
        const blob = await resp.blob();
        chooseFile(new File([blob], name ? decodeURIComponent(name[1]) : s.name));
      } catch (err) { showError(String(err.message || err)); }
    });
    $("samples").append(b);
  }
}

// ------------------------------------------------------------------ upload and segment

function chooseFile(file) {
  state.file = file;
  $("run").disabled = false;
  segment();
}

function segment() {
  if (!state.file || state.busy) return;
  state.busy = true; $("run").disabled = true;
  showError(""); setState("busy");
  const fd = new FormData();
  fd.append("file", state.file, state.file.name);
  if ($("model").value) fd.append("model", $("model").value);
  if ($("axis").value !== "") fd.append("axis", $("axis").value);
  if ($("uncertainty").checked) fd.append("uncertainty", "true");
  const xhr = new XMLHttpRequest();
  let seen = 0;
  const consume = (all) => {
    const text = xhr.responseText;
    let nl;
    while ((nl = text.indexOf("\n", seen)) >= 0 || (all && seen < text.length)) {
      const end = nl >= 0 ? nl : text.length;
      const line = text.slice(seen, end).trim();
      seen = end + 1;
      if (line) handle(JSON.parse(line));
    }
  };
  xhr.open("POST", "/api/preview");
  xhr.upload.onprogress = (e) => status(`Uploading ${state.file.name}…`, e.loaded, e.total);
  xhr.upload.onload = () => status(`Segmenting ${state.file.name}…`, null);
  xhr.onprogress = () => consume(false);
  xhr.onload = () => {
    try { consume(true); } catch (err) { showError(`bad answer from the server (HTTP ${xhr.status})`); }
    finish();
  };
  xhr.onerror = () => { showError("the server could not be reached"); finish(); };
  status(`Uploading ${state.file.name}…`, 0, state.file.size);
  xhr.send(fd);
}

function finish() { state.busy = false; $("run").disabled = !state.file; }

function handle(msg) {
  if (msg.progress) status(`Segmenting ${state.file.name}: ${msg.progress[0]} / ${msg.progress[1]}`, ...msg.progress);
  else if (msg.error) showError(msg.error);
  else if (msg.result) showResult(msg.result);
}

async function decode(a) {
  const bin = Uint8Array.from(atob(a.data), (c) => c.charCodeAt(0));
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function showResult(r) {
  status("Drawing…", null);
  r.imageData = await decode(r.image);
  r.labelData = await decode(r.labels);
  r.uncData = r.uncertainty ? await decode(r.uncertainty) : null;
  state.result = r;
  $("viewer").hidden = false;
  $("slice-controls").hidden = r.kind !== "volume";
  $("show-uncertainty-box").hidden = !r.uncData;
  $("show-uncertainty").checked = false;
  if (r.kind === "volume") { $("view-axis").value = String(r.axis); axisChanged(); }
  legend(r); downloads(r); summary(r); render();
  const total = Object.values(r.counts).reduce((a, b) => a + b, 0);
  status(`Done: ${r.source} with ${r.model.name} (${total.toLocaleString()} ${r.kind === "volume" ? "voxels" : "pixels"}).`);
  setState("done");
}

// ------------------------------------------------------------------ drawing

const HEAT = (u) => [Math.min(255, 3 * u), Math.max(0, Math.min(255, 3 * u - 255)), Math.max(0, 3 * u - 510)];

function sliceGeometry(r) {
  const [X, Y, Z] = r.image.shape, dims = [X, Y, Z], strides = [Y * Z, Z, 1];
  const a = Number($("view-axis").value);
  const [u, v] = [0, 1, 2].filter((d) => d !== a);
  return { dims, strides, a, u, v };
}

function axisChanged() {
  const r = state.result;
  if (!r || r.kind !== "volume") return;
  const g = sliceGeometry(r), n = g.dims[g.a], K = r.model.classes.length;
  // start on the slice with the most foreground (the middle one when there is none)
  const fg = new Float64Array(n);
  const lab = r.labelData, first = drawnFrom(r);
  for (let off = 0; off < lab.length; off++) {
    if (lab[off] >= first && lab[off] < K) fg[Math.floor(off / g.strides[g.a]) % n]++;
  }
  let best = Math.floor(n / 2);
  for (let i = 0; i < n; i++) if (fg[i] > fg[best]) best = i;
  const s = $("slice");
  s.max = n - 1; s.value = best;
  render();
}

// Class 0 stays undrawn when it is a background (as in the CLI's overlays); a real class 0 (bare soil …) is drawn.
const drawnFrom = (r) => (/background/i.test(r.model.classes[0].name) ? 1 : 0);

function render() {
  const r = state.result;
  if (!r) return;
  const alpha = Number($("opacity").value) / 100;
  const showUnc = $("show-uncertainty").checked && r.uncData;
  const K = r.model.classes.length, colors = r.model.classes.map((c) => c.color);
  const first = drawnFrom(r);
  let w, h, at, spacing = [1, 1];
  if (r.kind === "volume") {
    const g = sliceGeometry(r), i = Number($("slice").value);
    w = g.dims[g.u]; h = g.dims[g.v];
    // RAS voxels: u to the right, v upwards (anterior/superior up)
    at = (x, y) => i * g.strides[g.a] + x * g.strides[g.u] + (h - 1 - y) * g.strides[g.v];
    if (r.spacing) spacing = [r.spacing[g.u], r.spacing[g.v]];
    $("slice-label").textContent = `${i} / ${g.dims[g.a] - 1}`;
    window.segnetView.slice = i; window.segnetView.axis = g.a;
  } else {
    [h, w] = r.labels.shape;
    at = (x, y) => y * w + x;
  }
  const canvas = $("view");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const px = img.data, grey = r.kind === "volume";
  let overlay = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const off = at(x, y), o = 4 * (y * w + x);
      let rgb = grey ? [r.imageData[off], r.imageData[off], r.imageData[off]]
        : [r.imageData[3 * off], r.imageData[3 * off + 1], r.imageData[3 * off + 2]];
      const lab = r.labelData[off];
      let c = null;
      if (showUnc) c = HEAT(r.uncData[off]);
      else if (lab >= first && lab < K) c = colors[lab];
      if (c) { rgb = rgb.map((v, k) => (1 - alpha) * v + alpha * c[k]); overlay++; }
      px[o] = rgb[0]; px[o + 1] = rgb[1]; px[o + 2] = rgb[2]; px[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  // fit the view, keeping the physical aspect ratio of the pixels
  const pw = w * spacing[0], ph = h * spacing[1];
  const scale = Math.min(760 / pw, 620 / ph);
  canvas.style.width = `${Math.round(pw * scale)}px`;
  canvas.style.height = `${Math.round(ph * scale)}px`;
  window.segnetView.overlayPixels = overlay;
}

function legend(r) {
  const box = $("legend");
  box.innerHTML = "";
  const first = drawnFrom(r);
  r.model.classes.forEach((c) => {
    const item = document.createElement("span");
    item.className = "legend-item";
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = c.index < first ? "transparent" : `rgb(${c.color.join(",")})`;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = (r.counts[c.name] || 0).toLocaleString();
    item.append(sw, document.createTextNode(c.name + (c.index < first ? " (not drawn)" : "")), count);
    box.append(item);
  });
  if (r.uncertainty) {
    const item = document.createElement("span");
    item.textContent = `uncertainty: black 0 → white ${r.uncertainty.max.toExponential(2)} (softmax variance)`;
    box.append(item);
  }
}

function downloads(r) {
  const box = $("downloads");
  for (const a of box.querySelectorAll("a")) URL.revokeObjectURL(a.href);
  box.innerHTML = "";
  r.files.forEach((f, k) => {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([bytes], { type: f.media_type }));
    a.download = f.name;
    a.id = k === 0 ? "download-mask" : "download-uncertainty";
    a.textContent = `Download ${k === 0 ? "mask" : "uncertainty"} (${f.name})`;
    box.append(a);
  });
}

function summary(r) {
  const dl = $("summary");
  dl.innerHTML = "";
  const rows = [["file", r.source], ["model", r.model.name], ["shape", r.shape.join(" × ")]];
  if (r.kind === "volume") rows.push(["model's axis", String(r.axis)], ["orientation", r.geometry.axcodes],
    ["voxel (mm)", r.geometry.spacing.map((s) => +s.toFixed(3)).join(" × ")]);
  if (r.kind === "scene") rows.push(["CRS", r.geometry.crs || "none"],
    ["transform", (r.geometry.transform || []).map((v) => +v.toFixed(3)).join(", ")]);
  if (r.step > 1) rows.push(["preview", `every ${r.step}th pixel (the download is full size)`]);
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
}

// ------------------------------------------------------------------ wiring

function wire() {
  const dz = $("dropzone");
  ["dragenter", "dragover"].forEach((t) => dz.addEventListener(t, (e) => { e.preventDefault(); dz.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => dz.addEventListener(t, () => dz.classList.remove("over")));
  dz.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) chooseFile(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) chooseFile(e.target.files[0]);
    e.target.value = ""; // choosing the same file again segments it again
  });
  $("model").addEventListener("change", modelChanged);
  $("run").addEventListener("click", segment);
  $("opacity").addEventListener("input", render);
  $("slice").addEventListener("input", render);
  $("view-axis").addEventListener("change", axisChanged);
  $("show-uncertainty").addEventListener("change", render);
}

wire();
Promise.all([loadModels(), loadSamples()]).catch((err) => showError(String(err)));
