// munit ui: plain JS over the JSON API of munit_cli/web/app.py (nothing loaded from elsewhere).
// Speed rule: each view (grid, editor, kept, walk) is a lane with at most one request in flight;
// a newer job replaces the waiting one (see schedule below), and the server drops a request that a
// newer one of its lane overtook (client, channel, seq), so a moving slider never builds a queue.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  photo: null,       // {id, name, width, height, image} from POST /api/photos
  photoBlob: null,   // its bytes, sent again if the server has forgotten the photo
  direction: null,   // "a2b" | "b2a"
  heads: false,      // translate the head crop and paste it back into the whole photo (translate --heads)
  head: null,        // what the server found in the photo with heads on: {found, window, width, height, message}
  grid: [],          // the random codes of the grid, as the server drew them
  kept: {},          // direction -> [{code, original, source, image}]: styles of that target domain
  selected: -1,      // index of the kept style in the editor
  client: Math.random().toString(36).slice(2) + Date.now().toString(36),
  seq: 0,
  inflight: new Map(),  // channel -> AbortController of its request in flight
  epoch: 0,          // bumped when the photo or the direction changes
  movedAt: null,     // performance.now() of the latest slider move not yet rendered
};
// Timings of the slider -> image path, read by people (footer) and by the browser test.
window.munitStats = { renders: 0, editor: [] };  // renders: editor images shown

// --- small helpers ---------------------------------------------------------------------

function status(message, isError = false) {
  const el = $("status");
  el.textContent = message;
  el.classList.toggle("error", isError);
}

function fail(err) {
  status(err && err.message ? err.message : String(err), true);
}

function kept() {
  if (!state.kept[state.direction]) state.kept[state.direction] = [];
  return state.kept[state.direction];
}

function dir() {
  return state.info.directions.find((d) => d.key === state.direction);
}

function stem(name) {
  return (name || "photo").replace(/\.[^.]*$/, "") || "photo";
}

async function errorOf(res) {
  const data = await res.json().catch(() => ({}));
  return new Error(data.error || `the server answered ${res.status} ${res.statusText}`);
}

function show(img, src) {
  img.src = src;
  return img.decode().catch(() => {});
}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function filenameOf(res, fallback) {
  const m = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "");
  return m ? m[1] : fallback;
}

function postJSON(path, body, signal) {
  return fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
}

// --- photos ----------------------------------------------------------------------------

async function sendPhoto(blob, name) {
  if (blob.size > state.info.max_upload) {
    throw new Error(`${name} is ${(blob.size / 2 ** 20).toFixed(1)} MB, over the limit of ` +
      `${(state.info.max_upload / 2 ** 20).toFixed(0)} MB: use a smaller file`);
  }
  const res = await fetch(`/api/photos?name=${encodeURIComponent(name)}`, {
    method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" } });
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

async function usePhoto(blob, name) {
  status(`reading ${name}…`);
  try {
    const photo = await sendPhoto(blob, name);
    abortAll();
    state.photo = photo;
    state.photoBlob = blob;
    showHead(null);
    await show($("input-img"), photo.image);
    $("input-img").hidden = false;
    $("drop-hint").hidden = true;
    status(`${photo.name}: ${photo.width}x${photo.height} px`);
    refreshAll();
  } catch (err) {
    fail(err);
  }
}

async function useExample(name) {
  try {
    const res = await fetch(`/api/examples/${encodeURIComponent(name)}`);
    if (!res.ok) throw await errorOf(res);
    await usePhoto(await res.blob(), name);
  } catch (err) {
    fail(err);
  }
}

// --- heads ---------------------------------------------------------------------------------

// What the server found in the photo (data.head of a render with heads on; null: nothing to say):
// the note under the switch, and the crop window drawn over the photo.
function showHead(head) {
  const note = $("heads-note"), box = $("head-box");
  note.hidden = !head;
  note.textContent = head ? head.message : "";
  note.classList.toggle("warn", Boolean(head && !head.found));
  box.hidden = !(head && head.found);
  if (head && head.found) {
    const [l, t, r, b] = head.window;
    Object.assign(box.style, { left: `${(100 * l) / head.width}%`, top: `${(100 * t) / head.height}%`,
      width: `${(100 * (r - l)) / head.width}%`, height: `${(100 * (b - t)) / head.height}%` });
  }
  state.head = head;
}

function setHeads(on) {
  abortAll();
  state.heads = on;
  state.grid = [];
  showHead(null);
  refreshAll();
}

// --- rendering -------------------------------------------------------------------------

// Each view is a lane: at most one request in flight and one job waiting; a newer job replaces
// the waiting one, so a dragged slider shows a new image each time the last one lands (never a
// queue, never a frozen image until the drag stops). Changing the photo or the direction aborts
// what is in flight; the server also drops a request that a newer one of its lane overtook.
const lanes = new Map();  // channel -> {running, next}

function schedule(channel, job) {
  let lane = lanes.get(channel);
  if (!lane) lanes.set(channel, (lane = { running: false, next: null }));
  lane.next = job;
  if (!lane.running) runLane(lane);
}

async function runLane(lane) {
  lane.running = true;
  while (lane.next) {
    const job = lane.next;
    lane.next = null;
    try {
      await job();
    } catch (err) {
      fail(err);
    }
  }
  lane.running = false;
}

window.munitBusy = () => [...lanes.values()].some((lane) => lane.running);

function abortAll() {
  for (const ctl of state.inflight.values()) ctl.abort();
  state.inflight.clear();
  state.epoch += 1;  // results of the old photo or direction are not shown
}

// POST /api/render on `channel`; null when aborted or superseded.
async function render(channel, payload, retried = false) {
  if (!state.photo) return null;
  const ctl = new AbortController();
  state.inflight.set(channel, ctl);
  const seq = ++state.seq;
  try {
    const res = await postJSON("/api/render", { ...payload, photo: state.photo.id, direction: state.direction,
      heads: state.heads, client: state.client, channel, seq }, ctl.signal);
    if (res.status === 409) return null;
    if (res.status === 404 && !retried && state.photoBlob) {  // the server restarted: send the photo again
      state.photo = { ...state.photo, ...(await sendPhoto(state.photoBlob, state.photo.name)) };
      return render(channel, payload, true);
    }
    if (!res.ok) throw await errorOf(res);
    const data = await res.json();
    if (data.head && state.heads) showHead(data.head);
    return data;
  } catch (err) {
    if (err.name === "AbortError") return null;
    throw err;
  } finally {
    if (state.inflight.get(channel) === ctl) state.inflight.delete(channel);
  }
}

function cell(src, tag, onClick, title = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "cell";
  b.title = title;
  const img = document.createElement("img");
  if (src) img.src = src;
  img.alt = title || tag;
  const t = document.createElement("span");
  t.className = "tag";
  t.textContent = tag;
  b.append(img, t);
  b.addEventListener("click", onClick);
  return b;
}

function empty(el, text) {
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = text;
  el.replaceChildren(p);
}

function gridOptions() {
  const n = Number($("n").value), seed = Number($("seed").value), truncation = Number($("truncation").value);
  if (!Number.isInteger(n) || n < 1 || n > 32) throw new Error("N must be a whole number from 1 to 32");
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error("the seed must be a whole number >= 0");
  return { n, seed, truncation };
}

async function renderGrid() {
  if (!state.photo) return;
  const opts = gridOptions(), epoch = state.epoch;
  status(`translating ${state.photo.name} with ${opts.n} styles…`);
  const data = await render("grid", { random: opts });
  if (!data || epoch !== state.epoch) return;
  state.grid = data.codes;
  $("grid").replaceChildren(...data.images.map((src, k) => cell(src, `${k}`, () =>
    keep(data.codes[k], `random:seed=${opts.seed}:${k}`, src, data.preview), `seed ${opts.seed}, style ${k}: click to keep`)));
  $("download-grid").disabled = false;
  const framing = !data.head ? "" : data.head.found ? ", head pasted back" : ", no head: whole photo";
  status(`${state.photo.name} → ${dir().target}: ${data.images.length} styles, seed ${opts.seed}${framing} ` +
    `(${data.compute_ms} ms)`);
}

async function renderKept() {
  const list = kept(), epoch = state.epoch;
  if (!state.photo || !list.length) return;
  const codes = list.map((k) => k.code.slice());
  const data = await render("kept", { codes });
  if (!data || epoch !== state.epoch || list !== kept() || data.images.length !== list.length) return;
  data.images.forEach((src, i) => { list[i].image = src; list[i].preview = data.preview; });
  drawKept();
  if (state.selected >= 0) $("current-img").src = list[state.selected].image;
  updateDownloadCurrent();
}

// The slider path: the code as it is now, timed from the latest slider move (state.movedAt).
async function renderEditor() {
  const list = kept(), item = list[state.selected], epoch = state.epoch;
  if (!state.photo || !item) return;
  const t0 = state.movedAt ?? performance.now();
  state.movedAt = null;
  const data = await render("editor", { codes: [item.code.slice()] });
  if (!data || epoch !== state.epoch || list[state.selected] !== item) return;
  item.image = data.images[0];
  item.preview = data.preview;
  await show($("current-img"), item.image);
  await nextFrame();
  const total = performance.now() - t0;
  const thumb = $("kept").querySelectorAll(".cell img")[state.selected];
  if (thumb) thumb.src = item.image;
  updateDownloadCurrent();
  const stats = window.munitStats.editor;
  stats.push({ total_ms: total, server_ms: data.server_ms, compute_ms: data.compute_ms, wait_ms: data.wait_ms });
  if (stats.length > 200) stats.shift();
  window.munitStats.renders += 1;
  const recent = stats.slice(-20).map((s) => s.total_ms).sort((a, b) => a - b);
  $("latency").textContent = `slider → image ${total.toFixed(0)} ms (median of last ${recent.length}: ` +
    `${recent[Math.floor(recent.length / 2)].toFixed(0)} ms; model ${data.compute_ms} ms)`;
}

async function renderWalk() {
  const list = kept(), epoch = state.epoch;
  if (!state.photo) return;
  if (list.length < 2) {
    empty($("walk"), "Keep two styles to walk between them.");
    return;
  }
  const a = Number($("walk-from").value), b = Number($("walk-to").value);
  const steps = Number($("steps").value);
  if (!Number.isInteger(steps) || steps < 2 || steps > 16) throw new Error("steps must be a whole number from 2 to 16");
  if (!list[a] || !list[b]) return;
  const data = await render("walk", { interpolate: { from: list[a].code.slice(), to: list[b].code.slice(), steps } });
  if (!data || epoch !== state.epoch) return;
  $("walk").replaceChildren(...data.images.map((src, k) => cell(src, `${k}`, () =>
    keep(data.codes[k], `interpolate:#${a + 1}-#${b + 1}:${k}/${steps - 1}`, src, data.preview), "click to keep")));
}

const gridLater = () => schedule("grid", renderGrid);
const keptLater = () => schedule("kept", renderKept);
const editorLater = () => schedule("editor", renderEditor);
const walkLater = () => schedule("walk", renderWalk);

function refreshAll() {
  gridLater();
  keptLater();
  walkLater();
}

// --- kept styles and the editor ------------------------------------------------------

function drawKept() {
  const list = kept();
  $("kept-domain").textContent = state.info ? `${list.length} for ${dir().target}` : "";
  $("save-bank").disabled = !list.length;
  if (!list.length) {
    empty($("kept"), "Click an output above, or add the style of a reference photo.");
  } else {
    $("kept").replaceChildren(...list.map((item, i) => {
      const c = cell(item.image, `#${i + 1}`, () => select(i), item.source);
      c.classList.toggle("selected", i === state.selected);
      const x = document.createElement("span");
      x.className = "remove button";
      x.textContent = "×";
      x.title = "forget this style";
      x.addEventListener("click", (ev) => { ev.stopPropagation(); forget(i); });
      c.append(x);
      return c;
    }));
  }
  updateWalkSelects();
}

function updateWalkSelects() {
  const list = kept();
  for (const [id, fallback] of [["walk-from", 0], ["walk-to", list.length - 1]]) {
    const sel = $(id);
    const old = Number(sel.value);
    sel.replaceChildren(...list.map((item, i) => new Option(`#${i + 1}`, String(i))));
    sel.value = String(Number.isInteger(old) && old >= 0 && old < list.length && sel.dataset.touched ? old : fallback);
  }
}

// preview: `image` is scaled down (heads on, a large photo); the download asks for full size
function keep(code, source, image, preview = false) {
  const list = kept();
  list.push({ code: code.slice(), original: code.slice(), source, image, preview });
  $("walk-from").dataset.touched = "";
  $("walk-to").dataset.touched = "";
  select(list.length - 1);
  if (!image) keptLater();
  walkLater();
  status(`kept style #${list.length} (${source})`);
}

function forget(i) {
  const list = kept();
  list.splice(i, 1);
  let s = state.selected;
  if (s === i) s = list.length ? Math.min(i, list.length - 1) : -1;
  else if (s > i) s -= 1;
  select(s);
  walkLater();
}

function select(i) {
  const list = kept();
  state.selected = i >= 0 && i < list.length ? i : -1;
  const item = list[state.selected];
  drawKept();
  for (const b of ["reset-style", "copy-style"]) $(b).disabled = !item;
  $("editor-caption").textContent = item ? `#${state.selected + 1} · ${item.source}` : "keep a style to edit it";
  setSliders(item ? item.code : null);
  if (item && item.image) $("current-img").src = item.image;
  else $("current-img").removeAttribute("src");
  updateDownloadCurrent();
}

function buildSliders(dim) {
  const box = $("sliders");
  box.replaceChildren();
  for (let d = 0; d < dim; d++) {
    const label = document.createElement("label");
    const name = document.createElement("span");
    name.textContent = `s${d}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: "-3", max: "3", step: "0.01", value: "0", disabled: true });
    input.dataset.dim = String(d);
    const value = document.createElement("output");
    value.textContent = "0.00";
    input.addEventListener("input", () => {
      state.movedAt = performance.now();
      const item = kept()[state.selected];
      if (!item) return;
      item.code[d] = Number(input.value);
      value.textContent = Number(input.value).toFixed(2);
      editorLater();
    });
    input.addEventListener("change", walkLater);
    label.append(name, input, value);
    box.append(label);
  }
}

function setSliders(code) {
  for (const input of $("sliders").querySelectorAll("input")) {
    const d = Number(input.dataset.dim);
    input.disabled = !code;
    const v = code ? code[d] : 0;
    const span = Math.max(3, Math.ceil(Math.abs(v)));  // a reference's code may lie beyond +-3
    input.min = String(-span);
    input.max = String(span);
    input.value = String(v);
    input.nextElementSibling.textContent = v.toFixed(2);
  }
}

function updateDownloadCurrent() {
  const a = $("download-current");
  const item = kept()[state.selected];
  const ok = Boolean(item && item.image && state.photo);
  a.classList.toggle("disabled", !ok);
  if (ok) {
    a.href = item.image;
    a.download = `${stem(state.photo.name)}_${dir().target}_style${state.selected + 1}.png`;
  } else {
    a.removeAttribute("href");
  }
}

// --- references, downloads ------------------------------------------------------------

async function styleFromPhoto(blob, name) {
  try {
    if (!dir().style_from_photo) throw new Error(`this model has no style encoder for ${dir().target}`);
    if (blob.size > state.info.max_upload) throw new Error(`${name} is over the upload limit`);
    status(`encoding the style of ${name}…`);
    const heads = state.heads ? 1 : 0;  // with heads on, the reference's head gives the style
    const res = await fetch(`/api/style?direction=${state.direction}&name=${encodeURIComponent(name)}&heads=${heads}`, {
      method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" } });
    if (!res.ok) throw await errorOf(res);
    const data = await res.json();
    keep(data.code, `reference:${data.name}${heads ? ":head" : ""}`, null);
    if (data.note) status(data.note, true);
  } catch (err) {
    fail(err);
  }
}

async function saveBank() {
  const list = kept();
  if (!list.length) return;
  try {
    const res = await postJSON("/api/bank", { direction: state.direction, codes: list.map((k) => k.code),
      sources: list.map((k) => k.source) });
    if (!res.ok) throw await errorOf(res);
    const name = filenameOf(res, `${dir().target}-styles.safetensors`);
    download(await res.blob(), name);
    status(`saved ${list.length} style(s) as ${name}: munit translate PHOTOS --style-file ${name}`);
  } catch (err) {
    fail(err);
  }
}

// A data: URL -> Blob (fetch() of it would need connect-src data: in the page's CSP).
function dataUrlBlob(url) {
  const [head, b64] = url.split(",", 2);
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5).split(";")[0] });
}

// The selected style's image: as shown, or when that is a preview, rendered again at full size.
async function downloadCurrent(event) {
  const item = kept()[state.selected];
  if (!item || !item.preview || !state.photo) return;  // the link's own href is the full image
  event.preventDefault();
  const name = $("download-current").download;
  try {
    status("rendering the full-size image…");
    const res = await postJSON("/api/render", { photo: state.photo.id, direction: state.direction,
      heads: state.heads, codes: [item.code.slice()], full: true });
    if (!res.ok) throw await errorOf(res);
    const data = await res.json();
    download(dataUrlBlob(data.images[0]), name);
    status(`saved ${name} (full size)`);
  } catch (err) {
    fail(err);
  }
}

async function downloadGrid() {
  if (!state.photo || !state.grid.length) return;
  try {
    const res = await postJSON("/api/grid", { photo: state.photo.id, direction: state.direction, codes: state.grid,
      heads: state.heads });
    if (!res.ok) throw await errorOf(res);
    download(await res.blob(), filenameOf(res, `${stem(state.photo.name)}_grid.png`));
  } catch (err) {
    fail(err);
  }
}

// --- wiring -------------------------------------------------------------------------------

function dropZone(el, onFile) {
  el.addEventListener("dragover", (ev) => { ev.preventDefault(); el.classList.add("over"); });
  el.addEventListener("dragleave", () => el.classList.remove("over"));
  el.addEventListener("drop", (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    el.classList.remove("over");
    const file = ev.dataTransfer.files[0];
    if (file) onFile(file, file.name);
  });
}

function onFileInput(input, onFile) {
  input.addEventListener("change", () => {
    const file = input.files[0];
    if (file) onFile(file, file.name);
    input.value = "";  // the same file again fires change again
  });
}

async function init() {
  // a file dropped outside the zones must not replace the page
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());
  let info;
  try {
    const res = await fetch("/api/info");
    if (!res.ok) throw await errorOf(res);
    info = await res.json();
  } catch (err) {
    fail(new Error(`cannot reach munit ui: ${err.message}`));
    return;
  }
  state.info = info;
  state.direction = info.directions[0].key;
  $("model-line").textContent = `${info.model} · ${info.domains.a} ↔ ${info.domains.b} · ${info.device}, ` +
    `${info.precision} · ${info.size} px · style code of ${info.style_dim} numbers`;
  $("direction").replaceChildren(...info.directions.map((d) => new Option(`${d.source} → ${d.target}`, d.key)));
  if (info.examples.length) {
    $("examples-row").hidden = false;
    $("examples").classList.add("examples");
    $("examples").replaceChildren(...info.examples.map((name) => {
      const b = document.createElement("button");
      b.type = "button";
      b.title = name;
      b.dataset.example = name;
      const img = document.createElement("img");
      img.src = `/api/examples/${encodeURIComponent(name)}`;
      img.alt = name;
      b.append(img);
      b.addEventListener("click", () => useExample(name));
      return b;
    }));
  }
  buildSliders(info.style_dim);
  drawKept();
  const heads = info.heads;
  $("heads").disabled = !heads.available;
  $("heads").checked = state.heads = heads.available && heads.default;
  $("heads-label").title = heads.available
    ? `find the head with ${heads.detector}, translate its crop and paste it back (munit translate --heads)` +
      (heads.default ? "; on by default: this model was trained on head crops" : "")
    : `heads are off: ${heads.why}`;

  onFileInput($("file"), usePhoto);
  onFileInput($("file2"), usePhoto);
  onFileInput($("ref-file"), styleFromPhoto);
  dropZone($("drop"), usePhoto);
  dropZone($("kept-panel"), styleFromPhoto);
  $("drop").addEventListener("click", (ev) => { if (ev.target === $("drop") || ev.target === $("input-img")) $("file").click(); });
  $("drop").addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") $("file").click(); });
  $("direction").addEventListener("change", () => {
    abortAll();
    state.direction = $("direction").value;
    state.grid = [];
    select(kept().length ? 0 : -1);
    refreshAll();
  });
  $("heads").addEventListener("change", () => setHeads($("heads").checked));
  $("n").addEventListener("change", gridLater);
  $("seed").addEventListener("change", gridLater);
  $("reseed").addEventListener("click", () => { $("seed").value = String(Number($("seed").value || 0) + 1); gridLater(); });
  $("truncation").addEventListener("input", () => {
    $("truncation-out").textContent = Number($("truncation").value).toFixed(2);
    gridLater();
  });
  $("download-grid").addEventListener("click", downloadGrid);
  $("download-current").addEventListener("click", downloadCurrent);
  $("save-bank").addEventListener("click", saveBank);
  $("reset-style").addEventListener("click", () => {
    const item = kept()[state.selected];
    if (!item) return;
    item.code = item.original.slice();
    setSliders(item.code);
    editorLater();
    walkLater();
  });
  $("copy-style").addEventListener("click", () => {
    const item = kept()[state.selected];
    if (item) keep(item.code, `edited:${item.source}`, item.image);
  });
  for (const id of ["walk-from", "walk-to"]) {
    $(id).addEventListener("change", () => { $(id).dataset.touched = "1"; walkLater(); });
  }
  $("steps").addEventListener("change", walkLater);
  status(info.examples.length ? "Pick a photo, or try an example." : "Pick a photo.");
  document.body.dataset.ready = "1";
}

init();
