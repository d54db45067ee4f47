// Boot times per hour for the last 24 hours, from the store (GET
// boot-times): a bar per hour up to p90 with p50 marked inside, and the
// same numbers as a table.
import { call } from "./api.js";
import { h, seconds } from "./dom.js";

export async function bootsView(view) {
  const bt = await call("GET", "/boot-times?hours=24");
  const top = Math.max(1, ...bt.hours.map((x) => x.p90 || 0));
  const hourText = (t) => new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const chart = h("div", { class: "chart", role: "img",
    "aria-label": "Boot time per hour, p50 and p90 (the table below has the numbers)" });
  for (const x of bt.hours) {
    const col = h("div", { class: "col", dataset: { boots: x.boots, failed: x.failed }, title:
      `${hourText(x.hour)}: ${x.boots} boots, ${x.failed} failed; p50 ${seconds(x.p50 || 0)}, p90 ${seconds(x.p90 || 0)}` });
    const p90 = h("div", { class: "p90" });
    const p50 = h("div", { class: "p50" });
    p90.style.height = `${(100 * (x.p90 || 0)) / top}%`;
    p50.style.height = `${(100 * (x.p50 || 0)) / top}%`;
    col.append(p90, p50);
    if (x.failed) col.append(h("span", { class: "fails" }, String(x.failed)));
    chart.append(col);
  }
  const rows = bt.hours.filter((x) => x.boots || x.failed || x.active).reverse().map((x) => h("tr", {},
    h("td", {}, hourText(x.hour)), h("td", {}, String(x.boots)), h("td", {}, String(x.failed)), h("td", {}, String(x.active)),
    h("td", {}, x.p50 ? seconds(x.p50) : ""), h("td", {}, x.p90 ? seconds(x.p90) : ""),
    h("td", {}, x.p99 ? seconds(x.p99) : ""), h("td", {}, x.max ? seconds(x.max) : "")));
  view.replaceChildren(
    h("h1", {}, "Boot times, last 24 hours"),
    h("p", { class: "muted" }, `Up to p90 per hour; the darker part is p50 (scale: ${seconds(top)}). Red numbers: failed boots.`,
      bt.truncated ? ` Only the newest ${bt.sessions} sessions: the oldest hours miss some.` : ""),
    chart,
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Hour", "Boots", "Failed", "Active", "p50", "p90", "p99", "max"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No boots in the last 24 hours."))])))));
}
