// Sign in with the studio token (pixforge studio --token): typed, or from a #token= link; the server keeps it
// in an HttpOnly cookie, so no page script ever holds it afterwards.
import { $, api, showError } from "./common.js";

async function signIn(token) {
  showError($("#error"), null);
  try {
    await api("/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) });
    location.replace("/studio/");
  } catch (error) { showError($("#error"), error); }
}

$("#login").addEventListener("submit", (event) => { event.preventDefault(); signIn($("#token").value.trim()); });
const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromLink) { history.replaceState(null, "", location.pathname); signIn(fromLink); }
