// Images: versions with their sizes, the clients that boot each image,
// and (admin) set current, roll back, promote a client's volume.
import { call, enc, may } from "./api.js";
import { h, bytes, when, notice } from "./dom.js";

export async function imagesView(view) {
  const [images, clients] = await Promise.all([call("GET", "/images"), call("GET", "/clients")]);
  const versions = await Promise.all(images.map((im) =>
    call("GET", `/images/${enc(im.name)}/versions`).catch((e) => ({ error: e.message }))));
  const rollouts = await Promise.all(images.map((im) =>
    call("GET", `/images/${enc(im.name)}/rollout`).catch(() => null)));
  const cards = images.map((im, i) => imageCard(view, im, versions[i], clients.filter((c) => c.image === im.name), rollouts[i]));
  view.replaceChildren(h("h1", {}, "Images"), ...(cards.length ? cards : [h("p", { class: "muted" }, "No images yet.")]));
}

function imageCard(view, im, vs, users, ro) {
  const admin = may("admin");
  const act = (label, fn, confirmText) => async (ev) => {
    ev.preventDefault();
    if (confirmText && !confirm(confirmText)) return;
    try {
      notice(await fn());
      await imagesView(view);
    } catch (e) {
      notice(`${label}: ${e.message}`, true);
    }
  };
  const setCurrent = (n) => call("PUT", `/images/${enc(im.name)}/versions/current`, { version: n });
  let table;
  if (vs.error) {
    table = h("p", { class: "error" }, `versions: ${vs.error}`);
  } else {
    const sorted = [...vs].sort((a, b) => b.number - a.number);
    const cur = sorted.find((v) => v.current);
    const previous = cur && sorted.find((v) => v.number < cur.number);
    table = h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Version", "Size", "Created", "", ""].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, ...sorted.map((v) => h("tr", { dataset: { version: v.number, current: v.current } },
        h("td", {}, `v${v.number}`), h("td", {}, bytes(v.size)), h("td", {}, when(v.created)),
        h("td", {}, v.current ? h("span", { class: "badge ok" }, "current") : ""),
        h("td", {}, admin && !v.current ? h("button", { type: "button", class: "set-current",
          onclick: act("Set current", async () => { await setCurrent(v.number); return `${im.name}: v${v.number} is current`; },
            `Make v${v.number} of ${im.name} current? Clients boot it from their next boot.`) }, "Set current") : ""))))));
    if (admin && previous) {
      table.append(h("div", { class: "actions" }, h("button", { type: "button", class: "rollback",
        onclick: act("Roll back", async () => { await setCurrent(previous.number); return `${im.name} rolled back to v${previous.number}`; },
          `Roll ${im.name} back from v${cur.number} to v${previous.number}?`) }, `Roll back to v${previous.number}`)));
    }
  }
  const parts = [
    h("h2", {}, im.name, " ", h("small", { class: "muted" }, `${im.storage} · ${im.origin}${im.boot ? " · kernel boot" : ""}`)),
    table,
    h("p", {}, h("span", { class: "muted" }, `Clients (${users.length}): `),
      ...users.flatMap((c, i) => [i ? ", " : "", h("a", { href: `#/client/${enc(c.name)}` }, c.name)])),
  ];
  if (admin && users.length) {
    const sel = h("select", { name: "client", "aria-label": "Client to promote" }, ...users.map((c) => h("option", { value: c.name }, c.name)));
    parts.push(h("form", { class: "actions promote", onsubmit: act("Promote", async () => {
      const v = await call("POST", `/images/${enc(im.name)}/versions`, { action: "promote", client: sel.value });
      return `${sel.value}'s volume is ${im.name} v${v.number}${v.current ? " (current)" : ""}`;
    }, `Make ${sel.value}'s volume the next version of ${im.name}?`) }, "Promote the volume of ", sel, h("button", { type: "submit" }, "Promote")));
  }
  if (ro) parts.push(rolloutPart(im, vs, ro, admin, act));
  return h("section", { class: "card", dataset: { image: im.name } }, ...parts);
}

// rolloutPart shows a staged rollout (POST/GET images/{name}/rollout): in
// progress, the ring's clients and complete/abort; else, for admins, a
// version and a ring to start one.
function rolloutPart(im, vs, ro, admin, act) {
  const path = `/images/${enc(im.name)}/rollout`;
  if (ro.stage === "ring") {
    return h("div", { class: "rollout", dataset: { stage: ro.stage, version: ro.version } },
      h("p", {}, h("span", { class: "badge" }, "rollout"),
        ` v${ro.version} on ${ro.clients.length} ring client(s) first: ${ro.clients.join(", ")}`),
      admin ? h("div", { class: "actions" },
        h("button", { type: "button", class: "rollout-complete", onclick: act("Complete rollout", async () => {
          await call("POST", path, { action: "complete" });
          return `${im.name}: v${ro.version} is current for everyone`;
        }, `Make v${ro.version} of ${im.name} current for everyone?`) }, `Complete: v${ro.version} for everyone`),
        h("button", { type: "button", class: "rollout-abort", onclick: act("Abort rollout", async () => {
          await call("POST", path, { action: "abort" });
          return `${im.name}: rollout of v${ro.version} aborted`;
        }, `Abort the rollout of v${ro.version}?`) }, "Abort")) : null);
  }
  const candidates = vs.error ? [] : vs.filter((v) => !v.current).sort((a, b) => b.number - a.number);
  if (!admin || !candidates.length) return h("div", { class: "rollout", dataset: { stage: "none" } });
  const sel = h("select", { name: "version", "aria-label": "Version to roll out" },
    ...candidates.map((v) => h("option", { value: v.number }, `v${v.number}`)));
  const ring = h("input", { name: "ring", value: "ring=canary", size: 14, "aria-label": "Ring label" });
  return h("form", { class: "actions rollout", dataset: { stage: "none" }, onsubmit: act("Rollout", async () => {
    const r = await call("POST", path, { action: "start", version: Number(sel.value), ring: ring.value });
    return `${im.name}: v${r.version} on ${r.clients.length} ring client(s)` + (r.busy && r.busy.length ? `; running, reset later: ${r.busy.join(", ")}` : "");
  }) }, "Roll out ", sel, " to ", ring, " first ", h("button", { type: "submit" }, "Start rollout"));
}
