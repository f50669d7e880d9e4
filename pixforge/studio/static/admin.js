// Admin page: the studies, their open links, personal links, reports and answer exports (admin token needed).
import { $, api, el, showError, download } from "./common.js";

const token = () => sessionStorage.getItem("pixforge-admin") || "";
const call = (path, options = {}) => api(path, { ...options, headers: { ...(options.headers || {}), "x-admin-token": token() } });

async function list() {
  showError($("#error"), null);
  try {
    const { studies } = await call("/studio/api/admin/studies");
    const rows = studies.map((st) => el("tr", {},
      el("td", {}, st.name), el("td", {}, st.kind), el("td", {}, st.conditions.join(", ")), el("td", {}, st.exposure),
      el("td", {}, `${st.finished} / ${st.participants}`),
      el("td", {}, el("a", { href: st.link, target: "_blank" }, location.origin + st.link)),
      el("td", {}, el("button", { onclick: () => report(st.name) }, "Report"), " ",
        el("button", { onclick: () => links(st.name) }, "New link"), " ",
        el("button", { onclick: () => answers(st.name) }, "Answers CSV"))));
    const head = el("tr", {}, ...["study", "kind", "conditions", "exposure", "finished / participants", "open link", ""].map((h) => el("th", {}, h)));
    $("#studies").replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  } catch (error) { showError($("#error"), error); }
}

async function report(name) {
  try {
    const { html } = await call(`/studio/api/admin/studies/${encodeURIComponent(name)}/report`);
    // The name goes in as text (a study name is data, never markup); the fragment is escaped by the server.
    const body = el("div");
    body.innerHTML = html;
    $("#report").replaceChildren(el("h2", {}, name), body);
    $("#report").hidden = false;
  } catch (error) { showError($("#error"), error); }
}

async function links(name) {
  try {
    const result = await call(`/studio/api/admin/studies/${encodeURIComponent(name)}/links`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ count: 1 }),
    });
    $("#report").replaceChildren(el("p", {}, "Personal link: ", el("code", {}, location.origin + result.links[0])));
    $("#report").hidden = false;
  } catch (error) { showError($("#error"), error); }
}

async function answers(name) {
  try {
    const response = await call(`/studio/api/admin/studies/${encodeURIComponent(name)}/answers.csv`);
    download(`${name}-answers.csv`, await response.blob());
  } catch (error) { showError($("#error"), error); }
}

$("#connect").addEventListener("click", () => { sessionStorage.setItem("pixforge-admin", $("#token").value.trim()); list(); });
// The admin link carries the token in its fragment (#token=...); opening it in a tab already on this page
// changes only the fragment (no reload), so a hashchange reads it too.
function tokenFromLink() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) { sessionStorage.setItem("pixforge-admin", fromLink); history.replaceState(null, "", location.pathname); }
  $("#token").value = token();
  if (token()) list();
}

window.addEventListener("hashchange", tokenFromLink);
tokenFromLink();
