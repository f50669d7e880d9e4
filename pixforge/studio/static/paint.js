// Paint page: edit a label map and instance map, pick styles, re-render through POST /studio/api/models/{name}/render.
// A stroke renders at pointer-up; other edits (undo, redo, style changes) are debounced. Renders are numbered:
// a response older than the one shown is dropped.
import { $, api, el, showError, colourise, bytesToBase64, base64ToBytes, download } from "./common.js";

const DEBOUNCE_MS = 120;
const s = {
  models: [], model: null, width: 0, height: 0, label: null, instance: null, clusters: {},
  tool: "brush", cls: null, selected: null, undo: [], redo: [],
  seq: 0, shown: 0, renders: 0, timer: null, pending: false, inflight: 0, drag: null, lastMs: null,
  loads: 0, loaded: null,  // scene loads started, and the model whose scene is on the canvas
  inputName: "scene", photo: null, shownAt: null,  // what downloads are named after; the photo on screen, and when
};
window.studio = s;

const colours = () => Object.fromEntries(s.model.classes.map((c) => [c.id, c.color]));
const classOf = (id) => s.model.classes.find((c) => c.id === id);

async function start() {
  try {
    s.models = (await api("/studio/api/models")).models.filter((m) => m.paint);
  } catch (error) { showError($("#error"), error); return; }
  if (!s.models.length) { showError($("#error"), await noPaintable()); return; }
  for (const m of s.models) $("#model").append(el("option", { value: m.name }, `${m.name} (${m.method})`));
  $("#model").addEventListener("change", () => choose($("#model").value));
  $("#load-start").addEventListener("click", loadStart);
  $("#save").addEventListener("click", save);
  $("#download-photo").addEventListener("click", () => s.photo && download(`${s.inputName}-photo.png`, s.photo));
  $("#download-labels").addEventListener("click", downloadLabels);
  $("#open").addEventListener("change", open);
  $("#style-seed").addEventListener("change", schedule);
  $("#size").addEventListener("input", () => { $("#size-value").textContent = $("#size").value; });
  $("#undo").addEventListener("click", () => step(s.undo, s.redo));
  $("#redo").addEventListener("click", () => step(s.redo, s.undo));
  for (const b of document.querySelectorAll("#tools button")) b.addEventListener("click", () => setTool(b.dataset.tool));
  $("#sel-class").addEventListener("change", () => recolourSelected(Number($("#sel-class").value)));
  $("#sel-cluster").addEventListener("change", () => styleSelected(Number($("#sel-cluster").value)));
  $("#sel-random").addEventListener("click", () => {
    const count = clusterCount(s.selected);
    if (count) styleSelected(Math.floor(Math.random() * count));
  });
  const overlay = $("#overlay");
  overlay.addEventListener("pointerdown", down);
  overlay.addEventListener("pointermove", move);
  overlay.addEventListener("pointerup", up);
  overlay.addEventListener("pointerleave", (e) => s.drag && up(e));
  document.addEventListener("keydown", shortcut);
  await choose(s.models[0].name);
}

async function choose(name) {
  clearTimeout(s.timer);  // a render scheduled for the previous model's scene
  s.pending = false;
  s.model = s.models.find((m) => m.name === name);
  [s.width, s.height] = s.model.size;
  for (const id of ["#labels", "#overlay"]) { $(id).width = s.width; $(id).height = s.height; }
  const palette = $("#palette");
  palette.replaceChildren();
  s.model.classes.forEach((c, i) => {
    palette.append(el("button", { "data-class": String(c.id), onclick: () => setClass(c.id) },
      el("span", { class: "swatch", style: `background: rgb(${c.color.join(",")})` }), c.name,
      i < CLASS_KEYS.length ? el("kbd", {}, CLASS_KEYS[i]) : ""));
  });
  $("#sel-class").replaceChildren(...s.model.classes.map((c) => el("option", { value: String(c.id) }, c.name)));
  const startBox = $("#start");
  startBox.replaceChildren(el("option", { value: "blank" }, "blank"));
  for (let i = 0; i < s.model.samples; i++) startBox.append(el("option", { value: String(i) }, `dataset sample ${i + 1}`));
  if (s.model.samples) startBox.value = "0";
  $("#seed-box").hidden = s.model.paint !== "scene";
  $("#note").textContent = s.model.note ? `${s.model.name}: ${s.model.note}.` : "";
  helpText();
  setClass(s.model.classes[Math.min(1, s.model.classes.length - 1)].id);
  await loadStart();
}

function setTool(tool) {
  s.tool = tool;
  for (const b of document.querySelectorAll("#tools button")) b.classList.toggle("on", b.dataset.tool === tool);
}

function setClass(id) {
  s.cls = id;
  for (const b of document.querySelectorAll("#palette button")) b.classList.toggle("on", Number(b.dataset.class) === id);
}

async function loadStart() {
  const choice = $("#start").value;
  const model = s.model;
  const ticket = ++s.loads;
  try {
    let scene;
    s.inputName = `${model.name}-${choice === "blank" ? "blank" : `sample${Number(choice) + 1}`}`;
    if (choice === "blank") {
      const base = model.classes[0].id;
      scene = { label: new Uint8Array(s.width * s.height).fill(base), instance: new Int32Array(s.width * s.height).fill(base), clusters: {} };
    } else {
      const json = await api(`/studio/api/models/${encodeURIComponent(model.name)}/samples/${choice}`);
      if (ticket !== s.loads) return;  // another model or start was chosen meanwhile: its scene wins
      scene = decode(json);
    }
    setScene(scene);
    s.loaded = model.name;
  } catch (error) { showError($("#error"), error); }
}

function decode(json) {
  if (json.width !== s.width || json.height !== s.height) throw new Error(`The scene is ${json.width}x${json.height}; this model paints ${s.width}x${s.height}.`);
  const instance = new Int32Array(base64ToBytes(json.instance).buffer);
  return { label: base64ToBytes(json.label), instance, clusters: { ...(json.clusters || {}) }, style_seed: json.style_seed };
}

function encode() {
  return {
    model: s.model.name, width: s.width, height: s.height,
    label: bytesToBase64(s.label), instance: bytesToBase64(new Uint8Array(s.instance.buffer)),
    clusters: s.clusters, style_seed: Number($("#style-seed").value || 0),
  };
}

function setScene(scene, keepHistory = false) {
  s.label = scene.label; s.instance = scene.instance; s.clusters = scene.clusters || {};
  if (scene.style_seed !== undefined) $("#style-seed").value = String(scene.style_seed);
  if (!keepHistory) { s.undo = []; s.redo = []; }
  select(null);
  draw(); history(); schedule();
}

function snapshot() { return { label: s.label.slice(), instance: s.instance.slice(), clusters: { ...s.clusters } }; }

function remember() { s.undo.push(snapshot()); s.redo = []; history(); }

function step(from, to) {
  if (!from.length) return;
  to.push(snapshot());
  const scene = from.pop();
  s.label = scene.label; s.instance = scene.instance; s.clusters = scene.clusters;
  if (s.selected !== null && !s.instance.includes(s.selected)) select(null);
  draw(); history(); schedule();
}

function history() { $("#undo").disabled = !s.undo.length; $("#redo").disabled = !s.redo.length; }

function draw() {
  $("#labels").getContext("2d").putImageData(colourise(s.label, s.width, s.height, colours()), 0, 0);
  drawOverlay();
}

function drawOverlay(rect) {
  const ctx = $("#overlay").getContext("2d");
  ctx.clearRect(0, 0, s.width, s.height);
  if (s.selected !== null) {
    const image = ctx.createImageData(s.width, s.height);
    for (let y = 0; y < s.height; y++) for (let x = 0; x < s.width; x++) {
      const i = y * s.width + x;
      if (s.instance[i] !== s.selected) continue;
      const edge = x === 0 || y === 0 || x === s.width - 1 || y === s.height - 1 ||
        s.instance[i - 1] !== s.selected || s.instance[i + 1] !== s.selected ||
        s.instance[i - s.width] !== s.selected || s.instance[i + s.width] !== s.selected;
      image.data.set(edge ? [255, 255, 255, 255] : [255, 255, 255, 70], 4 * i);
    }
    ctx.putImageData(image, 0, 0);
  }
  if (rect) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.strokeRect(rect.x + 0.5, rect.y + 0.5, rect.w, rect.h); }
}

function point(e) {
  const r = $("#overlay").getBoundingClientRect();
  return { x: Math.floor((e.clientX - r.left) / r.width * s.width), y: Math.floor((e.clientY - r.top) / r.height * s.height) };
}

// The instance id a stroke paints: a new one (class*1000 + k, Cityscapes style), or the class's own id (stuff).
function strokeInstance(cls) {
  if (!$("#new-instance").checked || s.tool === "eraser") return cls;
  let k = 0;
  for (const id of s.instance) if (id >= cls * 1000 && id < cls * 1000 + 1000) k = Math.max(k, id - cls * 1000);
  return cls * 1000 + k + 1;
}

function paintDisc(p, cls, inst) {
  const r = Number($("#size").value) / 2;
  for (let y = Math.max(0, Math.floor(p.y - r)); y <= Math.min(s.height - 1, Math.ceil(p.y + r)); y++) {
    for (let x = Math.max(0, Math.floor(p.x - r)); x <= Math.min(s.width - 1, Math.ceil(p.x + r)); x++) {
      if ((x - p.x) ** 2 + (y - p.y) ** 2 <= r * r + 0.25) { s.label[y * s.width + x] = cls; s.instance[y * s.width + x] = inst; }
    }
  }
}

function line(a, b, cls, inst) {
  const n = Math.max(Math.abs(b.x - a.x), Math.abs(b.y - a.y), 1);
  for (let t = 0; t <= n; t++) paintDisc({ x: Math.round(a.x + (b.x - a.x) * t / n), y: Math.round(a.y + (b.y - a.y) * t / n) }, cls, inst);
}

function flood(p, cls, inst) {
  const start = p.y * s.width + p.x, fromLabel = s.label[start], fromInst = s.instance[start];
  if (fromLabel === cls && fromInst === inst) return;
  const stack = [start], seen = new Uint8Array(s.label.length);
  while (stack.length) {
    const i = stack.pop();
    if (seen[i] || s.label[i] !== fromLabel || s.instance[i] !== fromInst) continue;
    seen[i] = 1; s.label[i] = cls; s.instance[i] = inst;
    const x = i % s.width;
    if (x > 0) stack.push(i - 1);
    if (x < s.width - 1) stack.push(i + 1);
    if (i >= s.width) stack.push(i - s.width);
    if (i < s.label.length - s.width) stack.push(i + s.width);
  }
}

function down(e) {
  const p = point(e);
  if (s.tool === "select") { select(s.instance[p.y * s.width + p.x]); return; }
  $("#overlay").setPointerCapture(e.pointerId);
  remember();
  const cls = s.tool === "eraser" ? s.model.classes[0].id : s.cls;
  const inst = strokeInstance(cls);
  s.drag = { start: p, last: p, cls, inst };
  if (s.tool === "fill") { flood(p, cls, inst); s.drag = null; draw(); renderNow(); }
  else if (s.tool !== "rect") { paintDisc(p, cls, inst); draw(); }
}

function move(e) {
  if (!s.drag) return;
  const p = point(e);
  if (s.tool === "rect") {
    const a = s.drag.start;
    drawOverlay({ x: Math.min(a.x, p.x), y: Math.min(a.y, p.y), w: Math.abs(p.x - a.x), h: Math.abs(p.y - a.y) });
  } else { line(s.drag.last, p, s.drag.cls, s.drag.inst); draw(); }
  s.drag.last = p;
}

function up(e) {
  if (!s.drag) return;
  const p = point(e), a = s.drag.start;
  if (s.tool === "rect") {
    for (let y = Math.max(0, Math.min(a.y, p.y)); y <= Math.min(s.height - 1, Math.max(a.y, p.y)); y++) {
      for (let x = Math.max(0, Math.min(a.x, p.x)); x <= Math.min(s.width - 1, Math.max(a.x, p.x)); x++) {
        s.label[y * s.width + x] = s.drag.cls; s.instance[y * s.width + x] = s.drag.inst;
      }
    }
  }
  s.drag = null;
  draw(); renderNow();
}

function majorityClass(id) {
  const counts = new Map();
  for (let i = 0; i < s.instance.length; i++) if (s.instance[i] === id) counts.set(s.label[i], (counts.get(s.label[i]) || 0) + 1);
  let best = null, most = -1;
  for (const [cls, n] of counts) if (n > most) { best = cls; most = n; }
  return best;
}

function clusterCount(id) { return id === null ? 0 : (s.model.clusters[String(majorityClass(id))] || 0); }

function select(id) {
  s.selected = id;
  $("#selection").hidden = id === null;
  if (id !== null) {
    $("#sel-id").textContent = String(id);
    $("#sel-class").value = String(majorityClass(id));
    const count = clusterCount(id);
    $("#sel-style").hidden = s.model.paint !== "scene";
    $("#sel-cluster").replaceChildren(el("option", { value: "-1" }, "from the style seed"),
      ...Array.from({ length: count }, (_, k) => el("option", { value: String(k) }, `cluster ${k}`)));
    $("#sel-cluster").value = String(s.clusters[String(id)] ?? -1);
    $("#sel-random").disabled = !count;
  }
  drawOverlay();
}

function recolourSelected(cls) {
  if (s.selected === null) return;
  remember();
  for (let i = 0; i < s.instance.length; i++) if (s.instance[i] === s.selected) s.label[i] = cls;
  delete s.clusters[String(s.selected)];
  select(s.selected); draw(); schedule();
}

function styleSelected(k) {
  if (s.selected === null) return;
  remember();
  if (k < 0) delete s.clusters[String(s.selected)]; else s.clusters[String(s.selected)] = k;
  $("#sel-cluster").value = String(k);
  schedule();
}

function schedule() {
  clearTimeout(s.timer);
  s.pending = true;
  s.timer = setTimeout(render, DEBOUNCE_MS);
}

// A finished stroke renders at once: the debounce would only add its wait to what the user sees.
function renderNow() {
  clearTimeout(s.timer);
  render();
}

async function render() {
  s.pending = false;
  const seq = ++s.seq;
  const started = performance.now();
  s.inflight += 1;
  try {
    const response = await api(`/studio/api/models/${encodeURIComponent(s.model.name)}/render?seq=${seq}`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(encode()),
    });
    const blob = await response.blob();
    if (seq < s.shown) return;  // a newer render is already on screen
    s.photo = blob;
    $("#download-photo").disabled = false;
    s.shown = seq; s.renders += 1; s.lastMs = performance.now() - started; s.shownAt = performance.now();
    const out = $("#output");
    URL.revokeObjectURL(out.src);
    out.src = URL.createObjectURL(blob);
    out.hidden = false;
    out.dataset.seq = String(seq);
    $("#status").textContent = `render ${seq}: ${Math.round(s.lastMs)} ms (server ${response.headers.get("x-render-ms")} ms)`;
    showError($("#error"), null);
  } catch (error) { showError($("#error"), error); } finally { s.inflight -= 1; }
}

function save() { download(`${s.model.name}-scene.json`, new Blob([JSON.stringify(encode())], { type: "application/json" })); }

async function open() {
  const file = $("#open").files[0];
  if (!file) return;
  try {
    const json = JSON.parse(await file.text());
    remember();
    setScene(decode(json), true);
    s.inputName = file.name.replace(/\.[^.]*$/, "");
    $("#note").textContent = json.model && json.model !== s.model.name
      ? `This scene was painted for model ${json.model}; it is rendered with ${s.model.name}.` : "";
  } catch (error) { showError($("#error"), error); }
}

// The label map as the model's own input: class ids (grey levels) for pix2pixHD, the colour picture otherwise.
function downloadLabels() {
  const canvas = el("canvas", { width: s.width, height: s.height });
  const grey = Object.fromEntries(s.model.classes.map((c) => [c.id, [c.id, c.id, c.id]]));
  const image = s.model.paint === "scene" ? colourise(s.label, s.width, s.height, grey) : colourise(s.label, s.width, s.height, colours());
  canvas.getContext("2d").putImageData(image, 0, 0);
  canvas.toBlob((blob) => download(`${s.inputName}-labels.png`, blob), "image/png");
}

// Why no served model can be painted, model by model.
async function noPaintable() {
  const all = (await api("/studio/api/models")).models;
  const why = all.map((m) => `${m.name}: ${m.note || "its inputs are not label maps"}`).join("; ");
  return `No served model takes painted label maps (${why}).`;
}

// Keyboard shortcuts (listed in the help panel): tools, classes by their place in the palette, brush size.
const TOOL_KEYS = { b: "brush", r: "rect", f: "fill", e: "eraser", s: "select" };
const CLASS_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

function shortcut(e) {
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") {
    e.preventDefault(); step(e.shiftKey ? s.redo : s.undo, e.shiftKey ? s.undo : s.redo); return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey || ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName)) return;
  const key = e.key.toLowerCase();
  const size = $("#size");
  if (TOOL_KEYS[key]) setTool(TOOL_KEYS[key]);
  else if (CLASS_KEYS.includes(key) && s.model.classes[CLASS_KEYS.indexOf(key)]) setClass(s.model.classes[CLASS_KEYS.indexOf(key)].id);
  else if (key === "[" || key === "]") {
    size.value = String(Number(size.value) + (key === "]" ? 1 : -1));
    $("#size-value").textContent = size.value;
  } else if (key === "n") $("#new-instance").checked = !$("#new-instance").checked;
  else if (key === "?" || key === "h") $("#help").open = !$("#help").open;
  else return;
  e.preventDefault();
}

function helpText() {
  const scene = s.model.paint === "scene";
  $("#help-canvas").textContent = `${s.model.name} paints ${s.width}×${s.height} label maps ` +
    (scene ? "(pix2pixHD: class ids and instances)." : "(drawn in the palette's colours and translated as a picture).");
  $("#help-instance").textContent = scene
    ? "New instance (N): the next stroke makes a new object of its class, with its own instance id " +
      "(class × 1000 + k) and its own style, instead of growing the class's region; pix2pixHD draws a " +
      "boundary around it. Untick it to paint more of the same object or of a class without instances (stuff)."
    : "New instance (N) has no effect for this model: it translates the colours and knows no instances.";
}

s.encode = encode;
start();
