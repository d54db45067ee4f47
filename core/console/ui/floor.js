// The floor: a tile per client, grouped by a label, moved live by the
// API's event stream (GET events); polling GET floor only while the
// stream is down.
import { call, enc } from "./api.js";
import { h, seconds, notice } from "./dom.js";

const states = ["off", "dhcp", "script", "iscsi_login", "handoff", "booted", "failed"];
const stateNames = {
  off: "off", dhcp: "DHCP", script: "boot script", iscsi_login: "iSCSI login",
  handoff: "handoff", booted: "booted", failed: "failed",
};
const pollEvery = 3000;

function stateText(t) {
  if (t.state === "failed") return `failed at ${t.stage || "?"}`;
  if (t.stage && t.stage !== t.state && t.state !== "booted") return `${stateNames[t.state]} (${t.stage})`;
  return stateNames[t.state] || t.state;
}

// tile renders one client; update moves it in place.
function tile(t) {
  const el = h("a", { class: "tile", href: `#/client/${enc(t.name)}`, dataset: { client: t.name } },
    h("div", { class: "name" }, t.name),
    h("div", { class: "img" }),
    h("div", { class: "st" }),
    h("div", { class: "dur" }),
    h("div", { class: "mbadge" }, "maintenance"));
  update(el, t);
  return el;
}

function update(el, t) {
  el.dataset.state = t.state;
  el.dataset.stage = t.stage || "";
  const pin = (t.labels || {})["dls.version"]; // a staged rollout's ring
  el.querySelector(".img").textContent = t.image + (pin ? ` v${pin} (rollout)` : t.version ? ` v${t.version}` : "");
  el.querySelector(".st").textContent = stateText(t);
  el.querySelector(".dur").textContent = t.boot_seconds ? `last boot ${seconds(t.boot_seconds)}` : "";
  el.title = `${t.name}: ${stateText(t)}`;
  el.classList.toggle("maint", !!(t.labels || {})["dls.maintenance"]);
}

export async function floorView(view, params) {
  const groupBy = params.get("group") || localStorage.getItem("dls.floor.group") || "room";
  const started = performance.now();
  let tiles = new Map(); // name → {data, el}
  let stopped = false;

  const counts = h("ul", { class: "counts", "aria-label": "Clients per state" });
  const live = h("span", { class: "live", "aria-live": "polite" });
  const select = h("select", { id: "group-by", "aria-label": "Group by label" });
  const groups = h("div", { class: "groups" });
  const strip = h("div", { class: "strip", "aria-label": "Discovered machines" });
  const stripBox = h("section", { hidden: true }, h("h2", {}, "Waiting for adoption"), strip);
  view.replaceChildren(
    h("h1", {}, "Floor"),
    h("div", { class: "bar" }, counts, h("label", {}, "Group by ", select), live),
    stripBox, groups);
  select.addEventListener("change", () => {
    localStorage.setItem("dls.floor.group", select.value);
    location.hash = `#/floor?group=${enc(select.value)}`;
  });
  groups.addEventListener("keydown", arrowKeys);

  function renderCounts() {
    const n = Object.fromEntries(states.map((s) => [s, 0]));
    for (const { data } of tiles.values()) n[data.state] = (n[data.state] || 0) + 1;
    counts.replaceChildren(...states.map((s) =>
      h("li", { dataset: { state: s, count: n[s] } }, `${stateNames[s]} ${n[s]}`)));
  }

  function render(floor) {
    const keys = new Set(["image"]);
    for (const t of floor.tiles) for (const k of Object.keys(t.labels || {})) if (!k.startsWith("dls.")) keys.add(k);
    keys.add(groupBy);
    select.replaceChildren(...[...keys].sort().map((k) => h("option", { value: k, selected: k === groupBy }, k)));
    const byGroup = new Map();
    for (const t of floor.tiles) {
      const g = groupBy === "image" ? t.image : (t.labels || {})[groupBy] || "";
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g).push(t);
    }
    tiles = new Map();
    const frag = document.createDocumentFragment();
    for (const g of [...byGroup.keys()].sort((a, b) => (a === "") - (b === "") || a.localeCompare(b))) {
      const list = byGroup.get(g).sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
      const grid = h("div", { class: "tiles" });
      for (const t of list) {
        const el = tile(t);
        tiles.set(t.name, { data: t, el });
        grid.append(el);
      }
      frag.append(h("section", { class: "group", dataset: { group: g } },
        h("h2", {}, g ? `${groupBy} ${g}` : `no ${groupBy}`, h("small", {}, `${list.length}`)), grid));
    }
    groups.replaceChildren(frag);
    if (!floor.tiles.length) groups.replaceChildren(h("p", { class: "muted" }, "No clients yet."));
    renderCounts();
  }

  async function load() {
    const [floor, disc] = await Promise.all([call("GET", "/floor"), call("GET", "/discovered").catch(() => [])]);
    if (stopped) return;
    render(floor);
    stripBox.hidden = !disc.length;
    strip.replaceChildren(...disc.map((d) => h("div", { class: "disc", dataset: { mac: d.mac } },
      h("div", { class: "name" }, d.mac), h("div", { class: "muted" }, `seen ${d.count}×`))));
  }

  // Session events are applied once per frame: in a boot storm thousands
  // arrive a second, and only each tile's latest state needs drawing.
  let pending = new Map();
  let frame = 0;
  function onSession(ev) {
    const e = JSON.parse(ev.data);
    pending.set(e.client, e);
    if (!frame) frame = requestAnimationFrame(apply);
  }
  function apply() {
    frame = 0;
    const batch = pending;
    pending = new Map();
    for (const e of batch.values()) {
      const t = tiles.get(e.client);
      if (!t) continue; // a client the floor does not have yet: the clients event reloads
      Object.assign(t.data, { state: e.state, stage: e.stage, boot_seconds: e.boot_seconds, session: e.session.id });
      update(t.el, t.data);
    }
    renderCounts();
  }

  await load();
  // For measurements (the browser test): the first render's cost, and
  // when it happened since the page's navigation started.
  document.body.dataset.floorRenderMs = String(Math.round(performance.now() - started));
  document.body.dataset.floorRenderedAt = String(Math.round(performance.now()));
  document.body.dataset.floorTiles = String(tiles.size);

  // The stream; polling while it is down.
  let poll = null;
  let reload = null;
  const setLive = (mode, text) => { live.dataset.live = mode; live.textContent = text; };
  const startPolling = () => {
    if (poll || stopped) return;
    setLive("polling", "live stream down; polling");
    poll = setInterval(() => load().catch((e) => notice(e.message, true)), pollEvery);
  };
  const es = new EventSource("/api/v1/events");
  es.addEventListener("open", () => {
    if (poll) { clearInterval(poll); poll = null; load().catch(() => {}); }
    setLive("stream", "live");
  });
  es.addEventListener("session", onSession);
  es.addEventListener("clients", () => {
    clearTimeout(reload);
    reload = setTimeout(() => load().catch(() => {}), 300);
  });
  es.addEventListener("error", startPolling);
  setLive("connecting", "connecting…");

  return () => {
    stopped = true;
    cancelAnimationFrame(frame);
    es.close();
    clearInterval(poll);
    clearTimeout(reload);
  };
}

// arrowKeys moves the focus between tiles with the arrow keys, row by row
// as the grid lays them out.
function arrowKeys(ev) {
  const dirs = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: "up", ArrowDown: "down" };
  if (!(ev.key in dirs) || !ev.target.classList.contains("tile")) return;
  const all = [...ev.currentTarget.querySelectorAll(".tile")];
  const i = all.indexOf(ev.target);
  let j = i;
  const d = dirs[ev.key];
  if (typeof d === "number") j = i + d;
  else {
    const r = ev.target.getBoundingClientRect();
    const cands = all.filter((x) => {
      const q = x.getBoundingClientRect();
      return d === "down" ? q.top > r.top + 2 : q.bottom < r.bottom - 2;
    });
    let best = null; let bestD = Infinity;
    for (const x of cands) {
      const q = x.getBoundingClientRect();
      const dist = Math.abs(q.top - r.top) * 4 + Math.abs(q.left - r.left);
      if (dist < bestD) { bestD = dist; best = x; }
    }
    j = best ? all.indexOf(best) : i;
  }
  if (j >= 0 && j < all.length && j !== i) {
    ev.preventDefault();
    all[j].focus();
  }
}
