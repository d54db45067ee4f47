// Plugins and the audit log.
import { call, enc } from "./api.js";
import { h, when } from "./dom.js";

export async function pluginsView(view) {
  const ps = await call("GET", "/plugins");
  const rows = ps.map((p) => h("tr", { dataset: { plugin: p.name } },
    h("td", {}, p.name), h("td", {}, `${p.kind}/${p.type}`), h("td", {}, p.version || ""),
    h("td", {}, p.state), h("td", {}, h("span", { class: `badge ${p.healthy ? "ok" : "bad"}` }, p.healthy ? "healthy" : "unhealthy")),
    h("td", {}, String(p.restarts)), h("td", {}, when(p.since)), h("td", {}, p.error || "")));
  view.replaceChildren(h("h1", {}, "Plugins"), h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, ...["Name", "Kind", "Version", "State", "Health", "Restarts", "Since", "Error"].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, ...rows))));
}

export async function auditView(view, params) {
  const entries = await call("GET", "/audit?limit=1000");
  const filter = h("input", { type: "search", id: "audit-filter", placeholder: "actor, action, object…",
    "aria-label": "Filter the audit log", value: params.get("q") || "" });
  const tbody = h("tbody");
  const count = h("span", { class: "muted" });
  const show = () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const rows = entries.filter((e) => {
      const text = `${e.actor} ${e.action} ${e.object} ${e.detail || ""} ${e.source || ""}`.toLowerCase();
      return words.every((w) => text.includes(w));
    });
    count.textContent = `${rows.length} of ${entries.length}`;
    tbody.replaceChildren(...rows.map((e) => h("tr", { dataset: { action: e.action } },
      h("td", {}, when(e.time)), h("td", {}, e.actor), h("td", {}, e.action), h("td", {}, e.object),
      h("td", {}, e.detail || ""), h("td", {}, e.source || ""))));
  };
  filter.addEventListener("input", () => {
    show();
    history.replaceState(null, "", `#/audit${filter.value ? `?q=${enc(filter.value)}` : ""}`);
  });
  view.replaceChildren(h("h1", {}, "Audit log"), h("div", { class: "bar" }, filter, count),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Time", "Actor", "Action", "Object", "Detail", "Source"].map((x) => h("th", { scope: "col" }, x)))),
      tbody)));
  show();
}
