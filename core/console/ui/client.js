// A client's page: its boots as a timeline (a bar per boot, a segment per
// stage), its addresses and initiators, and the actions its role allows.
import { call, enc, may } from "./api.js";
import { h, seconds, when, notice } from "./dom.js";

const order = ["dhcp", "script", "iscsi_login", "handoff", "booted"];
const stageNames = { dhcp: "DHCP", script: "boot script", iscsi_login: "iSCSI login", handoff: "handoff", booted: "booted" };

// segments are a session's stages as [stage, from, to] in time order: a
// stage lasts until the next one is reached (the last until the session
// ended, or now while it runs).
function segments(s, now) {
  const reached = Object.entries(s.stages || {}).map(([st, t]) => [st, Date.parse(t)])
    .sort((a, b) => a[1] - b[1] || order.indexOf(a[0]) - order.indexOf(b[0]));
  const end = s.ended ? Date.parse(s.ended) : now;
  return reached.map(([st, t], i) => [st, t, i + 1 < reached.length ? reached[i + 1][1] : end]);
}

function timeline(sessions) {
  const now = Date.now();
  const rows = sessions.map((s) => ({ s, segs: segments(s, now), start: Date.parse(s.started) }));
  const longest = Math.max(1, ...rows.map((r) => (r.segs.length ? r.segs[r.segs.length - 1][2] - r.start : 0)));
  const legend = h("div", { class: "legend" },
    ...order.map((st) => h("span", { class: "seg-key", dataset: { stage: st } }, stageNames[st])),
    h("span", { class: "seg-key fail" }, "waited for, did not come"));
  for (const el of legend.children) {
    el.style.setProperty("--c", `var(--${el.dataset.stage || "failed"})`);
  }
  const list = h("div", { class: "timeline", role: "list" });
  for (const { s, segs, start } of rows) {
    const total = segs.length ? (segs[segs.length - 1][2] - start) / 1000 : 0;
    const track = h("div", { class: "track" });
    for (const [st, from, to] of segs) {
      const seg = h("div", { class: "seg", dataset: { stage: st }, title: `${stageNames[st] || st}: ${seconds((to - from) / 1000)}` });
      seg.style.width = `${(100 * (to - from)) / longest}%`;
      track.append(seg);
    }
    if (s.state === "failed" && segs.length) {
      // The last segment is the wait for the stage that never came.
      track.lastChild.classList.add("fail");
      track.lastChild.title += ` (then ${s.failed_stage} did not arrive)`;
    }
    const label = `${when(s.started)} · ${s.state === "failed" ? `failed at ${s.failed_stage}` : s.state} · ${seconds(total)}`;
    list.append(h("div", { class: "boot", role: "listitem", dataset: { session: s.id, state: s.state } },
      h("span", { class: "when" }, label), track));
  }
  if (!rows.length) list.append(h("p", { class: "muted" }, "No boots recorded."));
  return [legend, list];
}

export async function clientView(view, name) {
  const [c, sessions] = await Promise.all([
    call("GET", `/clients/${enc(name)}`),
    call("GET", `/sessions?client=${enc(name)}&limit=30`),
  ]);
  const facts = h("dl", { class: "facts" });
  const fact = (k, v) => { if (v !== undefined && v !== null && v !== "") facts.append(h("dt", {}, k), h("dd", {}, v)); };
  fact("MAC", c.mac);
  fact("Image", c.image);
  fact("Reserved address", c.address);
  fact("Last address", sessions.find((s) => s.address)?.address);
  fact("Extra addresses", (c.extra_addresses || []).join(", "));
  fact("Initiators", (c.initiators || []).join(", ") || "its own IQN only");
  fact("Volume", `${c.volume || c.name}${c.persistent ? " (persistent)" : " (fresh at every boot)"}`);
  fact("Labels", Object.entries(c.labels || {}).map(([k, v]) => `${k}=${v}`).join(", "));

  const parts = [
    h("p", {}, h("a", { href: "#/floor" }, "← Floor")),
    h("h1", { dataset: { client: c.name } }, c.name),
    h("section", { class: "card" }, facts),
  ];
  if (may("operator")) parts.push(await actions(c));
  parts.push(h("h2", {}, "Boots"), ...timeline(sessions));
  view.replaceChildren(...parts);
}

// actions are the operator's buttons: each one API call.
async function actions(c) {
  const images = await call("GET", "/images");
  const path = `/clients/${enc(c.name)}`;
  const run = (label, fn, confirmText) => async (ev) => {
    ev.preventDefault();
    if (confirmText && !confirm(confirmText)) return;
    const btn = ev.submitter || ev.currentTarget;
    btn.disabled = true;
    try {
      const msg = await fn();
      notice(msg || `${label}: done`);
    } catch (e) {
      notice(`${label}: ${e.message}`, true);
    } finally {
      btn.disabled = false;
    }
  };
  const imageSel = h("select", { name: "image", "aria-label": "Image" },
    ...images.map((im) => h("option", { value: im.name, selected: im.name === c.image }, im.name)));
  const newName = h("input", { name: "name", "aria-label": "New name", placeholder: "new name", required: true, size: 12 });
  const body = (image) => ({
    mac: c.mac, image, address: c.address, initiators: c.initiators, extra_addresses: c.extra_addresses,
    persistent: c.persistent, labels: c.labels,
  });
  return h("section", { class: "card", "aria-label": "Actions" },
    h("div", { class: "actions" },
      h("button", { type: "button", id: "act-wake", onclick: run("Wake", async () => {
        const r = await call("POST", `${path}/wake`);
        return `Wake: magic packet sent to ${r.mac}`;
      }) }, "Wake"),
      h("button", { type: "button", id: "act-reset", onclick: run("Reset", async () => {
        const v = await call("POST", `${path}/volume`, { action: "reset" });
        return `Reset: fresh clone of ${v.image} v${v.version}`;
      }, `Discard every write on ${c.name}'s volume?`) }, "Reset volume"),
      h("button", { type: "button", id: "act-chap", onclick: run("Rotate CHAP", async () => {
        await call("POST", `${path}/chap`, { rotate: true });
        return "CHAP secret rotated (the client gets it in its next boot script)";
      }, `Rotate ${c.name}'s CHAP secret?`) }, "Rotate CHAP"),
      h("button", { type: "button", class: "danger", id: "act-delete", onclick: run("Delete", async () => {
        await call("DELETE", path);
        location.hash = "#/floor";
        return `${c.name} deleted (its volume stays on its storage)`;
      }, `Delete client ${c.name}?`) }, "Delete")),
    maintenance(c, path, run),
    h("div", { class: "actions" },
      h("form", { id: "act-image", onsubmit: run("Change image", async () => {
        await call("PUT", path, body(imageSel.value));
        return `${c.name} boots ${imageSel.value} from its next boot`;
      }) }, imageSel, h("button", { type: "submit" }, "Change image")),
      h("form", { id: "act-rename", onsubmit: run("Rename", async () => {
        const r = await call("POST", `${path}/rename`, { name: newName.value });
        location.hash = `#/client/${enc(r.name)}`;
        return `Renamed to ${r.name}`;
      }) }, newName, h("button", { type: "submit" }, "Rename"))));
}

// maintenance is the client's maintenance mode: start (operator), then
// promote (admin) or cancel; POST clients/{name}/maintenance.
function maintenance(c, path, run) {
  const since = (c.labels || {})["dls.maintenance"];
  const act = (action, label, confirmText) => h("button", { type: "button", id: `act-maintenance-${action}`,
    onclick: run(label, async () => {
      const r = await call("POST", `${path}/maintenance`, { action });
      setTimeout(() => window.dispatchEvent(new HashChangeEvent("hashchange")), 800); // redraw the page
      if (r.version) return `${c.name}'s volume is now ${r.version.image} v${r.version.number}`;
      return r.maintenance ? `${c.name} is in maintenance: its volume is kept across boots` : "Maintenance cancelled";
    }, confirmText) }, label);
  if (!since) {
    return h("div", { class: "actions" }, act("start", "Start maintenance",
      `Give ${c.name} a fresh clone of ${c.image}'s current version, kept across boots, to prepare the next version?`));
  }
  return h("div", { class: "actions maintenance" },
    h("span", { class: "badge" }, `in maintenance since ${new Date(since).toLocaleString()}`),
    may("admin") ? act("promote", `Promote to the next ${c.image} version`,
      `Make ${c.name}'s volume the next, current version of ${c.image}?`) : null,
    act("cancel", "Cancel maintenance", `End maintenance of ${c.name} (its volume stays as it is)?`));
}
