// Translate page: an upload (image, or label map + instance map) through POST /v1/models/{name}/translate.
import { $, api, el, showError, idsOf, colourise, download } from "./common.js";

const state = { models: [], model: null, file: null, instance: null, output: null, seq: 0 };
window.studio = state;

async function start() {
  try {
    state.models = (await api("/v1/models")).models;
  } catch (error) { showError($("#error"), error); return; }
  for (const m of state.models) $("#model").append(el("option", { value: m.name }, `${m.name} (${m.method})`));
  $("#model").addEventListener("change", () => choose($("#model").value));
  $("#file").addEventListener("change", () => pick($("#file").files[0]));
  $("#instance").addEventListener("change", () => { state.instance = $("#instance").files[0] || null; translate(); });
  for (const id of ["#size", "#direction", "#style-kind", "#style-value"]) $(id).addEventListener("change", translate);
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); pick(e.dataTransfer.files[0]); });
  $("#download").addEventListener("click", () => state.output && download("output.png", state.output));
  if (state.models.length) choose(state.models[0].name);
}

function choose(name) {
  const m = state.models.find((x) => x.name === name);
  state.model = m;
  $("#model-info").textContent = modelInfo(m);
  $("#direction-box").hidden = !m.directions.length;
  $("#style-box").hidden = !m.styles;
  $("#instance-box").hidden = m.input !== "labels";
  $("#drop-text").innerHTML = m.input === "labels" ? "Drop a label map (class ids)<br>or pick one" : m.colorization ? "Drop a black-and-white photo<br>or pick one" : "Drop an image here<br>or pick one";
  const box = $("#explain-box");
  box.replaceChildren();
  box.hidden = !m.explain.length;
  for (const kind of m.explain) {
    box.append(el("label", {}, el("input", { type: "checkbox", id: `explain-${kind}`, onchange: translate }), ` show ${kind}`));
  }
  translate();
}

// What the model is: method, training step, input, and its test scores when the run has been evaluated.
function modelInfo(m) {
  const input =
    m.input === "labels"
      ? `label maps (${m.label_nc} classes)`
      : m.colorization
        ? "any photo, reduced to its lightness (colorization: the output keeps it)"
        : "images";
  const clusters = m.styles ? `; style clusters numbered from 0` : "";
  const scores = Object.entries(m.scores || {}).map(([k, v]) => `${k} ${Number(v).toPrecision(4)}`);
  const tested = scores.length ? `; ${m.scores_split} scores: ${scores.join(", ")}` : "";
  return `${m.method}, trained ${m.step} steps, takes ${input}${clusters}${tested}`;
}

async function pick(file) {
  if (!file) return;
  state.file = file;
  const drop = $("#drop");
  drop.querySelector("img")?.remove();
  const img = el("img", { alt: "input" });
  if (state.model?.input === "labels") {
    const { ids, width, height } = await idsOf(file);
    const canvas = el("canvas", { width, height });
    canvas.getContext("2d").putImageData(colourise(ids, width, height, state.model.palette), 0, 0);
    img.src = canvas.toDataURL();
  } else {
    img.src = URL.createObjectURL(file);
  }
  drop.append(img);
  translate();
}

async function translate() {
  const m = state.model;
  if (!m || !state.file) return;
  const form = new FormData();
  form.append(m.input === "labels" ? "label" : "image", state.file);
  if (state.instance && m.input === "labels") form.append("instance", state.instance);
  form.append("size", $("#size").value);
  if (m.directions.length) form.append("direction", $("#direction").value);
  if (m.styles) form.append($("#style-kind").value === "cluster" ? "cluster" : "style_seed", $("#style-value").value || "0");
  const shown = m.explain.filter((kind) => $(`#explain-${kind}`)?.checked);
  if (shown.length) form.append("explain", shown[0]);
  const seq = ++state.seq;
  const started = performance.now();
  $("#status").textContent = "translating…";
  showError($("#error"), null);
  try {
    const response = await api(`/v1/models/${encodeURIComponent(m.name)}/translate`, { method: "POST", body: form });
    if (seq !== state.seq) return;  // a newer request was sent meanwhile
    const frame = $("#output-frame");
    frame.querySelectorAll("img.overlay").forEach((x) => x.remove());
    if (response instanceof Response) {
      state.output = await response.blob();
    } else {
      const bytes = Uint8Array.from(atob(response.images.output), (c) => c.charCodeAt(0));
      state.output = new Blob([bytes], { type: "image/png" });
      for (const [name, data] of Object.entries(response.images)) {
        if (name === "output") continue;
        frame.append(el("img", { class: "overlay", alt: name, "data-map": name, src: `data:image/png;base64,${data}` }));
      }
    }
    const out = $("#output");
    out.src = URL.createObjectURL(state.output);
    out.hidden = false;
    out.dataset.seq = String(seq);
    $("#download").disabled = false;
    $("#status").textContent = `done in ${Math.round(performance.now() - started)} ms`;
  } catch (error) {
    if (seq === state.seq) { clearOutput(); showError($("#error"), error); $("#status").textContent = ""; }
  }
}

// A rejected input leaves no earlier output on screen and nothing to download.
function clearOutput() {
  state.output = null;
  const out = $("#output");
  if (out.src) URL.revokeObjectURL(out.src);
  out.removeAttribute("src");
  out.hidden = true;
  delete out.dataset.seq;
  $("#output-frame").querySelectorAll("img.overlay").forEach((x) => x.remove());
  $("#download").disabled = true;
}

start();
