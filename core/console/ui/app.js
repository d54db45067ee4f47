// The console's entry: sign-in, the header, and the fragment router.
import { whoami, signIn, signOut, session, whenSignedOut } from "./api.js";
import { notice } from "./dom.js";
import { floorView } from "./floor.js";
import { clientView } from "./client.js";
import { imagesView } from "./images.js";
import { pluginsView, auditView } from "./admin.js";
import { bootsView } from "./boots.js";

// When the modules were loaded, since the navigation (for measurements).
document.body.dataset.modulesAt = String(Math.round(performance.now()));

const view = document.getElementById("view");
const form = document.getElementById("signin");
const header = document.querySelector("header.top");

// current is the shown view's stop function (closes its event stream).
let current = null;

function showSignIn(msg) {
  if (current) { current(); current = null; }
  header.hidden = true;
  document.getElementById("notice").hidden = true;
  view.replaceChildren(form);
  form.reset();
  form.hidden = false;
  document.getElementById("signin-error").textContent = msg || "";
  form.elements.username.focus();
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = document.getElementById("signin-error");
  err.textContent = "";
  try {
    await signIn(form.elements.username.value, form.elements.password.value);
    form.elements.password.value = "";
    route();
  } catch (e) {
    err.textContent = e.message;
  }
});

document.getElementById("signout").addEventListener("click", async () => {
  try { await signOut(); } catch (e) { notice(e.message, true); }
  showSignIn("Signed out.");
});

whenSignedOut((msg) => showSignIn(msg));

const routes = [
  [/^#\/floor(?:\?(.*))?$/, (m) => floorView(view, new URLSearchParams(m[1] || ""))],
  [/^#\/client\/([^/?]+)$/, (m) => clientView(view, decodeURIComponent(m[1]))],
  [/^#\/images$/, () => imagesView(view)],
  [/^#\/boots$/, () => bootsView(view)],
  [/^#\/plugins$/, () => pluginsView(view)],
  [/^#\/audit(?:\?(.*))?$/, (m) => auditView(view, new URLSearchParams(m[1] || ""))],
];

async function route() {
  if (!session.user) {
    let me = null;
    try { me = await whoami(); } catch (e) { notice(e.message, true); }
    if (!me) { showSignIn(); return; }
    document.body.dataset.signedInAt = String(Math.round(performance.now()));
  }
  header.hidden = false;
  form.hidden = true;
  document.getElementById("who").textContent = `${session.user} (${session.role})`;
  document.body.dataset.role = session.role;
  const hash = location.hash || "#/floor";
  for (const a of header.querySelectorAll("nav a")) {
    a.toggleAttribute("aria-current", hash.startsWith("#/" + a.dataset.nav));
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  if (current) { current(); current = null; }
  for (const [re, fn] of routes) {
    const m = hash.match(re);
    if (m) {
      try {
        current = (await fn(m)) || null;
      } catch (e) {
        if (e.status !== 401) notice(e.message, true);
      }
      return;
    }
  }
  location.hash = "#/floor";
}

window.addEventListener("hashchange", route);
route();
