// A participant's page: instructions, practice with feedback, timed trials, resumable after a reload.
// The page knows images only by opaque per-trial ids; it never learns which one is real or which method made it.
import { $, api, el, showError } from "./common.js";

const FEEDBACK_MS = 700;
const RETRY_MS = 250, RETRY_MAX_MS = 4000;
const s = { token: null, state: null, onset: null, busy: false, hideTimer: null, answers: 0, retries: 0 };
window.study = s;

function route() {
  const parts = location.pathname.split("/").filter(Boolean);  // study, NAME[, p, TOKEN]
  return { name: decodeURIComponent(parts[1] || ""), token: parts[2] === "p" ? parts[3] : null };
}

async function start() {
  const { name, token } = route();
  try {
    if (token) s.token = token;
    else {
      const given = new URLSearchParams(location.search);
      const query = new URLSearchParams();
      for (const key of ["worker", "sig"]) if (given.get(key)) query.set(key, given.get(key));
      const joined = await api(`/study/api/${encodeURIComponent(name)}/join${query.size ? `?${query}` : ""}`, {
        method: "POST", headers: { "content-type": "application/json" }, body: "{}",
      });
      s.token = joined.token;
      history.replaceState(null, "", `/study/${encodeURIComponent(name)}/p/${joined.token}`);
    }
    await refresh();
  } catch (error) { refuse(error); return; }
  $("#begin").addEventListener("click", () => { $("#intro").hidden = true; showTrial(); });
  for (const node of document.querySelectorAll("[data-side]")) node.addEventListener("click", () => answer(node.dataset.side));
  document.addEventListener("keydown", (e) => {
    const side = { f: "left", F: "left", ArrowLeft: "left", j: "right", J: "right", ArrowRight: "right" }[e.key];
    if (side) answer(side);
  });
}

function refuse(error) {
  for (const id of ["#intro", "#trial", "#progress"]) $(id).hidden = true;
  $("#title").textContent = error.status === 403 ? "Already taken part" : "This study link does not work";
  showError($("#error"), error);
}

async function refresh() {
  s.state = await api(`/study/api/session/${s.token}`);
  const st = s.state;
  $("#progress").hidden = false;
  $("#progress-bar").style.width = `${100 * st.answered / st.total}%`;
  $("#progress-text").textContent = `${st.answered} of ${st.total} answered`;
  if (!st.trial) { $("#trial").hidden = true; $("#intro").hidden = true; $("#done").hidden = false; return; }
  if (st.answered === 0 || !$("#intro").dataset.seen) {
    $("#intro").dataset.seen = "1";
    $("#question-intro").textContent = st.question;
    const ms = st.trial.exposure_ms;
    $("#timing").textContent = ms ? "for a short time, then they are hidden" : "until you answer";
    $("#practice-count").textContent = String(st.practice);
    $("#begin").textContent = st.answered ? `Continue (${st.answered} of ${st.total} done)` : "Start";
    $("#intro").hidden = false;
    $("#trial").hidden = true;
    return;
  }
  await showTrial();
}

// A trial's image; each is served once, so after a reload in the middle of a trial its slot stays empty.
async function loadImage(url) {
  let response;
  try { response = await api(url); } catch { return el("span", { class: "note" }, "(shown already)"); }
  const blob = await response.blob();
  const img = el("img", { alt: "", draggable: "false" });
  img.src = URL.createObjectURL(blob);
  await img.decode();
  return img;
}

async function showTrial() {
  const t = s.state.trial;
  clearTimeout(s.hideTimer);
  $("#trial").hidden = false;
  $("#feedback").textContent = ""; $("#feedback").className = "feedback";
  $("#phase").textContent = t.phase === "practice" ? `Practice ${t.index + 1} of ${s.state.practice}` : `Trial ${t.index + 1 - s.state.practice} of ${s.state.total - s.state.practice}`;
  $("#question").textContent = s.state.question;
  const buttons = [$("#answer-left"), $("#answer-right")];
  buttons.forEach((b) => { b.disabled = true; });
  const slots = [$("#slot-left"), $("#slot-right")];
  slots.forEach((slot) => slot.replaceChildren());
  const images = await Promise.all(t.images.map(loadImage));  // both, before either is shown
  slots.forEach((slot, i) => slot.append(images[i]));
  s.onset = performance.now();
  s.busy = false;
  buttons.forEach((b) => { b.disabled = false; });
  document.body.dataset.trial = String(t.index);
  if (t.exposure_ms > 0) {
    s.hideTimer = setTimeout(() => slots.forEach((slot) => slot.replaceChildren()), t.exposure_ms);
  }
}

async function answer(side) {
  const t = s.state?.trial;
  if (!t || s.busy || s.onset === null || $("#trial").hidden) return;
  s.busy = true;
  const responseMs = performance.now() - s.onset;
  clearTimeout(s.hideTimer);
  [$("#slot-left"), $("#slot-right")].forEach((slot) => slot.replaceChildren());
  try {
    const result = await send({ trial: t.index, choice: side, response_ms: responseMs });
    s.answers += 1;
    if (result.feedback) {
      const good = result.feedback.correct;
      $("#feedback").textContent = good ? "Correct: that was the real photo." : "Wrong: that one was generated.";
      $("#feedback").className = `feedback ${good ? "good" : "bad"}`;
      await new Promise((done) => setTimeout(done, FEEDBACK_MS));
    }
    s.onset = null;
    await retrying(refresh);
  } catch (error) { showError($("#error"), error); s.busy = false; }
}

// Retry a call while the server cannot be reached (a restart): an answer is sent again as it was, with the
// response time measured at the click, so an outage never lengthens a stored time. Errors the server gives
// (4xx) are final.
async function retrying(call) {
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await call();
      showError($("#error"), null);
      return result;
    } catch (error) {
      if (error.status !== undefined && error.status < 500) throw error;
      s.retries += 1;
      showError($("#error"), "The server is not answering; retrying. Your answers so far are saved.");
      await new Promise((done) => setTimeout(done, Math.min(RETRY_MS * 2 ** attempt, RETRY_MAX_MS)));
    }
  }
}

function send(body) {
  let sent = 0;
  return retrying(async () => {
    try {
      sent += 1;
      // a second try is marked: the report leaves out answers whose trial an outage interrupted
      const payload = sent > 1 ? { ...body, retried: true } : body;
      return await api(`/study/api/session/${s.token}/answer`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload),
      });
    } catch (error) {
      // the server took an earlier try and only its reply was lost: the answer is stored
      if (error.status === 409 && sent > 1) return { feedback: null, finished: false };
      throw error;
    }
  });
}

start();
