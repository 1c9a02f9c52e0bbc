// latentcomp collage editor: plain JS, no dependencies, talks to the JSON API of `latentcomp serve`.
//
// The collage lives in one ImageData at the model's resolution: alpha 255 = known pixel (pasted from a
// source), alpha 0 = unknown. Every edit asks the server for a new output; at most one request is in
// flight, and edits made meanwhile are sent as one trailing request when it returns.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_UNDO = 60;

  const state = {
    model: null,
    res: 32,
    limits: {},
    sources: [], // {label, url, data: ImageData, el}
    selected: -1,
    tool: "brush",
    size: 4,
    collage: null, // ImageData, alpha 0 = unknown
    undo: [],
    nextSeed: 0,
    completeSeed: 0,
    painting: false,
    last: null, // last pointer position (model pixels) while painting
    rectStart: null,
    inFlight: false,
    dirty: false,
    outputs: 0,
  };

  const canvas = $("collage");
  const ctx = canvas.getContext("2d");

  // ------------------------------------------------------------------ helpers
  function setStatus(msg, isError = false) {
    const el = $("status");
    el.textContent = msg;
    el.classList.toggle("error", isError);
  }

  async function api(path, body) {
    const opts = body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    };
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      throw new Error(`cannot reach the server (${e.message})`);
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      throw new Error(`${path}: HTTP ${resp.status}`);
    }
    if (!resp.ok) throw new Error(data && data.error ? data.error : `${path}: HTTP ${resp.status}`);
    return data;
  }

  const pngUrl = (b64) => "data:image/png;base64," + b64;

  function loadImageData(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        const c = document.createElement("canvas");
        c.width = c.height = state.res;
        const cx = c.getContext("2d");
        cx.imageSmoothingEnabled = false;
        cx.drawImage(img, 0, 0, state.res, state.res);
        resolve(cx.getImageData(0, 0, state.res, state.res));
      };
      img.onerror = () => reject(new Error("the browser could not decode an image"));
      img.src = url;
    });
  }

  function download(url, name) {
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  // ------------------------------------------------------------------ sources
  async function addSource(label, b64, select = false) {
    const url = pngUrl(b64);
    const data = await loadImageData(url);
    const index = state.sources.length;
    const el = document.createElement("button");
    el.type = "button";
    el.className = "source";
    el.setAttribute("aria-pressed", "false");
    el.title = label;
    const img = document.createElement("img");
    img.src = url;
    img.alt = label;
    const cap = document.createElement("span");
    cap.textContent = label;
    el.append(img, cap);
    el.addEventListener("click", () => selectSource(index));
    $("palette").appendChild(el);
    state.sources.push({ label, url, data, el });
    if (select || state.selected < 0) selectSource(index);
    return index;
  }

  function selectSource(i) {
    state.selected = i;
    state.sources.forEach((s, k) => s.el.setAttribute("aria-pressed", String(k === i)));
    if (state.tool === "eraser") setTool("brush");
  }

  async function addSamples(seed, n) {
    const buttons = [$("more-samples"), $("add-seed")];
    buttons.forEach((b) => (b.disabled = true));
    try {
      const r = await api(`/api/samples?seed=${seed}&n=${n}`);
      // labels from the request: JSON numbers lose digits past 2^53, seeds go to 2^63 - 1
      for (const [k, s] of r.samples.entries()) await addSource(`seed ${BigInt(seed) + BigInt(k)}`, s.image);
      return r.samples.length;
    } catch (e) {
      setStatus(`samples: ${e.message}`, true);
      return 0;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  function readFile(file) {
    return new Promise((resolve, reject) => {
      const fr = new FileReader();
      fr.onload = () => resolve(fr.result);
      fr.onerror = () => reject(new Error(`cannot read ${file.name}`));
      fr.readAsDataURL(file);
    });
  }

  async function upload(file) {
    if (!file) return;
    const limit = state.limits.max_body_bytes || 10485760;
    if (file.size * 4 / 3 + 1024 > limit) {
      setStatus(`${file.name} is too large (${(file.size / 1048576).toFixed(1)} MB); the server accepts about ` +
        `${(limit * 0.74 / 1048576).toFixed(1)} MB`, true);
      return;
    }
    setStatus(`uploading ${file.name}…`);
    try {
      const r = await api("/api/upload", { image: await readFile(file) });
      const name = file.name.length > 18 ? file.name.slice(0, 16) + "…" : file.name;
      await addSource(name, r.image, true);
      setStatus(`added ${file.name} (${r.width}×${r.height}${r.resized ? `, resized to ${state.res}×${state.res}` : ""})`);
    } catch (e) {
      setStatus(`upload of ${file.name}: ${e.message}`, true);
    }
  }

  // ------------------------------------------------------------------ collage editing
  function redraw() {
    ctx.putImageData(state.collage, 0, 0);
  }

  function pushUndo() {
    state.undo.push(new Uint8ClampedArray(state.collage.data));
    if (state.undo.length > MAX_UNDO) state.undo.shift();
    $("undo").disabled = false;
  }

  function undo() {
    const prev = state.undo.pop();
    if (!prev) return;
    state.collage.data.set(prev);
    $("undo").disabled = state.undo.length === 0;
    redraw();
    requestUpdate();
  }

  function source() {
    return state.selected >= 0 ? state.sources[state.selected].data.data : null;
  }

  function setPixel(x, y, src, erase) {
    const d = state.collage.data;
    const i = (y * state.res + x) * 4;
    if (erase) {
      d[i] = d[i + 1] = d[i + 2] = d[i + 3] = 0;
    } else {
      d[i] = src[i];
      d[i + 1] = src[i + 1];
      d[i + 2] = src[i + 2];
      d[i + 3] = 255;
    }
  }

  function stamp(cx, cy) {
    const erase = state.tool === "eraser";
    const src = source();
    if (!erase && !src) return;
    const r = Math.max(state.size / 2, 0.5);
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(state.res - 1, Math.ceil(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(state.res - 1, Math.ceil(cy + r));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (dx * dx + dy * dy <= r * r) setPixel(x, y, src, erase);
      }
    }
  }

  function strokeTo(p) {
    const a = state.last || p;
    const dist = Math.hypot(p.x - a.x, p.y - a.y);
    const steps = Math.max(1, Math.ceil(dist / Math.max(0.5, state.size / 4)));
    for (let k = 1; k <= steps; k++) {
      stamp(a.x + (p.x - a.x) * k / steps, a.y + (p.y - a.y) * k / steps);
    }
    state.last = p;
  }

  function rectBounds(a, b) {
    const clamp = (v) => Math.min(state.res, Math.max(0, v));
    let x0 = clamp(Math.floor(Math.min(a.x, b.x))), x1 = clamp(Math.ceil(Math.max(a.x, b.x)));
    let y0 = clamp(Math.floor(Math.min(a.y, b.y))), y1 = clamp(Math.ceil(Math.max(a.y, b.y)));
    if (x1 <= x0) x1 = Math.min(state.res, x0 + 1);
    if (y1 <= y0) y1 = Math.min(state.res, y0 + 1);
    return { x0, y0, x1, y1 };
  }

  function pasteRect(a, b) {
    const src = source();
    if (!src) return;
    const { x0, y0, x1, y1 } = rectBounds(a, b);
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) setPixel(x, y, src, false);
  }

  function toModel(ev) {
    const r = canvas.getBoundingClientRect();
    return {
      x: ((ev.clientX - r.left) * state.res) / r.width,
      y: ((ev.clientY - r.top) * state.res) / r.height,
    };
  }

  function scale() {
    return canvas.getBoundingClientRect().width / state.res;
  }

  function showRect(a, b) {
    const el = $("rect-preview");
    const { x0, y0, x1, y1 } = rectBounds(a, b);
    const s = scale();
    Object.assign(el.style, {
      left: `${x0 * s}px`, top: `${y0 * s}px`, width: `${(x1 - x0) * s}px`, height: `${(y1 - y0) * s}px`,
    });
    el.hidden = false;
  }

  function showCursor(ev) {
    const el = $("brush-cursor");
    if (state.tool === "rect") {
      el.hidden = true;
      return;
    }
    const r = canvas.getBoundingClientRect();
    const d = Math.max(state.size, 1) * scale();
    Object.assign(el.style, {
      left: `${ev.clientX - r.left}px`, top: `${ev.clientY - r.top}px`, width: `${d}px`, height: `${d}px`,
    });
    el.classList.toggle("eraser", state.tool === "eraser");
    el.hidden = false;
  }

  function onPointerDown(ev) {
    if (ev.button !== 0 || !state.collage) return;
    if (state.tool !== "eraser" && !source()) {
      setStatus("pick a source first", true);
      return;
    }
    ev.preventDefault();
    canvas.setPointerCapture(ev.pointerId);
    pushUndo();
    state.painting = true;
    const p = toModel(ev);
    if (state.tool === "rect") {
      state.rectStart = p;
      showRect(p, p);
    } else {
      state.last = null;
      strokeTo(p);
      redraw();
      requestUpdate();
    }
  }

  function onPointerMove(ev) {
    showCursor(ev);
    if (!state.painting) return;
    const p = toModel(ev);
    if (state.tool === "rect") {
      showRect(state.rectStart, p);
    } else {
      strokeTo(p);
      redraw();
      requestUpdate();
    }
  }

  function onPointerUp(ev) {
    if (!state.painting) return;
    if (state.tool === "rect" && state.rectStart) {
      pasteRect(state.rectStart, toModel(ev));
      $("rect-preview").hidden = true;
      state.rectStart = null;
      redraw();
    }
    state.painting = false;
    state.last = null;
    requestUpdate(); // the final update of a stroke (with refinement when it is on)
  }

  function setTool(tool) {
    state.tool = tool;
    $(`tool-${tool}`).checked = true;
  }

  function setSize(v) {
    const max = Number($("brush-size").max);
    state.size = Math.min(max, Math.max(1, Math.round(v)));
    $("brush-size").value = state.size;
    $("brush-size-value").textContent = state.size;
  }

  // ------------------------------------------------------------------ export + inference
  function exportCollage() {
    const n = state.res;
    const c = document.createElement("canvas");
    c.width = c.height = n;
    const cx = c.getContext("2d");
    const img = cx.createImageData(n, n);
    const msk = cx.createImageData(n, n);
    const d = state.collage.data;
    let known = 0;
    for (let i = 0; i < d.length; i += 4) {
      const k = d[i + 3] >= 128;
      known += k ? 1 : 0;
      img.data[i] = k ? d[i] : 0;
      img.data[i + 1] = k ? d[i + 1] : 0;
      img.data[i + 2] = k ? d[i + 2] : 0;
      img.data[i + 3] = 255;
      msk.data[i] = msk.data[i + 1] = msk.data[i + 2] = k ? 255 : 0;
      msk.data[i + 3] = 255;
    }
    cx.putImageData(img, 0, 0);
    const collage = c.toDataURL("image/png");
    cx.putImageData(msk, 0, 0);
    const mask = c.toDataURL("image/png");
    return { collage, mask, known, total: n * n };
  }

  function refineSteps() {
    if (!$("refine-toggle").checked) return 0;
    const max = state.limits.max_refine ?? 200;
    return Math.min(max, Math.max(1, Math.round(Number($("refine-steps").value) || 1)));
  }

  function requestUpdate() {
    state.dirty = true;
    updateCli();
    pump();
  }

  function clearOutput() {
    const out = $("output");
    out.hidden = true;
    out.removeAttribute("src");
    $("output-hint").hidden = false;
    const dl = $("download-output");
    dl.classList.add("disabled");
    dl.setAttribute("aria-disabled", "true");
    dl.removeAttribute("href");
    $("timing").textContent = "";
  }

  async function pump() {
    if (state.inFlight || !state.dirty || !state.collage) return;
    state.dirty = false;
    const { collage, mask, known, total } = exportCollage();
    if (known === 0) {
      clearOutput();
      setStatus("the collage is empty: pick a source and paint");
      return;
    }
    // live updates while painting skip refinement; the update at the end of a stroke refines when asked to
    const refine = state.painting ? 0 : refineSteps();
    state.inFlight = true;
    $("output").classList.add("stale");
    const t0 = performance.now();
    try {
      const r = await api("/api/compose", { collage, mask, refine, paste: $("paste-toggle").checked });
      const out = $("output");
      out.src = pngUrl(r.image);
      out.hidden = false;
      state.outputs += 1;
      out.dataset.version = String(state.outputs);
      $("output-hint").hidden = true;
      const dl = $("download-output");
      dl.href = out.src;
      dl.classList.remove("disabled");
      dl.removeAttribute("aria-disabled");
      const ms = Math.round(performance.now() - t0);
      $("timing").textContent = `${ms} ms` + (refine ? ` · ${refine} refine steps` : "") +
        (r.batch > 1 ? ` · batched ×${r.batch}` : "");
      setStatus(`${Math.round((known / total) * 100)}% of the collage known · known-pixel L1 ${r.known_error.toFixed(3)}`);
    } catch (e) {
      setStatus(`compose: ${e.message}`, true);
    } finally {
      state.inFlight = false;
      $("output").classList.remove("stale");
      if (state.dirty) pump();
    }
  }

  async function complete() {
    const { collage, mask, known } = exportCollage();
    if (known === 0) {
      setStatus("the collage is empty: paste something first", true);
      return;
    }
    const btn = $("complete");
    btn.disabled = true;
    setStatus("completing…");
    try {
      const n = Number($("complete-n").value);
      const seed = state.completeSeed++;
      const r = await api("/api/complete", { collage, mask, n, seed, refine: refineSteps() });
      const box = $("completions");
      box.replaceChildren();
      r.images.forEach((b64, k) => {
        const img = document.createElement("img");
        img.src = pngUrl(b64);
        img.alt = `completion ${k + 1}`;
        img.title = `completion ${k + 1}: click to add to the sources`;
        img.addEventListener("click", () => addSource(`completion ${k + 1}`, b64));
        box.appendChild(img);
      });
      const div = r.diversity == null ? "" : ` · diversity ${r.diversity.toFixed(3)}`;
      setStatus(`${r.images.length} completions (${r.method}, seed ${seed})${div} in ${r.seconds.toFixed(2)} s`);
    } catch (e) {
      setStatus(`complete: ${e.message}`, true);
    } finally {
      btn.disabled = false;
    }
  }

  function updateCli() {
    const model = state.model ? state.model.name : "MODEL";
    let cmd = `latentcomp compose --model ${model} --part collage.png:mask.png --out output.png`;
    const steps = refineSteps();
    if (steps) cmd += ` --refine ${steps}`;
    if ($("paste-toggle").checked) cmd += " --paste";
    $("cli-command").textContent = cmd;
  }

  // ------------------------------------------------------------------ wiring
  function wire() {
    canvas.addEventListener("pointerdown", onPointerDown);
    canvas.addEventListener("pointermove", onPointerMove);
    canvas.addEventListener("pointerup", onPointerUp);
    canvas.addEventListener("pointercancel", onPointerUp);
    canvas.addEventListener("pointerleave", () => ($("brush-cursor").hidden = true));

    document.querySelectorAll('input[name="tool"]').forEach((el) =>
      el.addEventListener("change", () => setTool(el.value)));
    $("brush-size").addEventListener("input", (e) => setSize(Number(e.target.value)));
    $("undo").addEventListener("click", undo);
    $("reset").addEventListener("click", () => {
      pushUndo();
      state.collage.data.fill(0);
      redraw();
      requestUpdate();
    });
    $("fill").addEventListener("click", () => {
      const src = source();
      if (!src) return setStatus("pick a source first", true);
      pushUndo();
      state.collage.data.set(src);
      for (let i = 3; i < src.length; i += 4) state.collage.data[i] = 255;
      redraw();
      requestUpdate();
    });
    $("download-collage").addEventListener("click", () => {
      const { collage, mask, known } = exportCollage();
      if (known === 0) return setStatus("the collage is empty: nothing to download", true);
      download(collage, "collage.png");
      setTimeout(() => download(mask, "mask.png"), 150);
    });
    $("more-samples").addEventListener("click", async () => {
      const seed = state.nextSeed;
      state.nextSeed += 4;
      await addSamples(seed, 4);
    });
    $("add-seed").addEventListener("click", async () => {
      const text = $("seed-input").value.trim();  // sent as typed: a Number would round seeds past 2^53
      if (!/^\d+$/.test(text) || BigInt(text) > 2n ** 63n - 1n) {
        return setStatus("seed must be a whole number from 0 to 9223372036854775807", true);
      }
      const seed = BigInt(text).toString();
      if (await addSamples(seed, 1)) selectSource(state.sources.length - 1);
    });
    $("upload-input").addEventListener("change", (e) => {
      upload(e.target.files[0]);
      e.target.value = "";
    });
    const panel = $("palette-panel");
    panel.addEventListener("dragover", (e) => {
      e.preventDefault();
      panel.classList.add("dragover");
    });
    panel.addEventListener("dragleave", () => panel.classList.remove("dragover"));
    panel.addEventListener("drop", (e) => {
      e.preventDefault();
      panel.classList.remove("dragover");
      if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
    });
    $("refine-toggle").addEventListener("change", requestUpdate);
    $("refine-steps").addEventListener("change", () => $("refine-toggle").checked && requestUpdate());
    $("paste-toggle").addEventListener("change", requestUpdate);
    $("complete").addEventListener("click", complete);
    $("output").addEventListener("click", () => {
      const src = $("output").src;
      if (src.startsWith("data:image/png;base64,")) addSource("output", src.split(",", 2)[1]);
    });
    document.addEventListener("keydown", (e) => {
      const t = e.target;
      if (t instanceof HTMLSelectElement) return;
      if (t instanceof HTMLInputElement && t.type !== "radio" && t.type !== "range" && t.type !== "checkbox") return;
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") {
        e.preventDefault();
        undo();
      } else if (!e.ctrlKey && !e.metaKey && !e.altKey) {
        const k = e.key.toLowerCase();
        if (k === "b") setTool("brush");
        else if (k === "r") setTool("rect");
        else if (k === "e") setTool("eraser");
        else if (k === "[") setSize(state.size - 1);
        else if (k === "]") setSize(state.size + 1);
      }
    });
  }

  async function init() {
    wire();
    $("undo").disabled = true;
    try {
      state.model = await api("/api/model");
    } catch (e) {
      setStatus(`cannot load the model info: ${e.message}`, true);
      return;
    }
    const m = state.model;
    state.res = m.resolution;
    state.limits = m.limits || {};
    canvas.width = canvas.height = m.resolution;
    state.collage = ctx.createImageData(m.resolution, m.resolution);
    $("brush-size").max = String(Math.max(2, Math.round(m.resolution / 2)));
    setSize(Math.max(2, Math.round(m.resolution / 8)));
    $("refine-steps").value = String(m.refine_default || 20);
    $("refine-steps").max = String(state.limits.max_refine ?? 200);
    $("model-info").textContent = `${m.name} · ${m.resolution}×${m.resolution} · ${m.channels} channel${m.channels > 1 ? "s" : ""} · latent ${m.space}`;
    document.title = `latentcomp · ${m.name}`;
    redraw();
    updateCli();
    state.nextSeed = 6;
    await addSamples(0, 6);
    setStatus("pick a source, then paint (brush) or drag a rectangle on the collage");
    document.body.dataset.ready = "true";
  }

  init();
})();
