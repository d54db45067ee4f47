// Images: versions with their sizes, the clients that boot each image,
// and (admin) set current, roll back, promote a client's volume.
import { call, enc, may } from "./api.js";
import { h, bytes, when, notice } from "./dom.js";

export async function imagesView(view) {
  const [images, clients] = await Promise.all([call("GET", "/images"), call("GET", "/clients")]);
  const versions = await Promise.all(images.map((im) =>
    call("GET", `/images/${enc(im.name)}/versions`).catch((e) => ({ error: e.message }))));
  const cards = images.map((im, i) => imageCard(view, im, versions[i], clients.filter((c) => c.image === im.name)));
  view.replaceChildren(h("h1", {}, "Images"), ...(cards.length ? cards : [h("p", { class: "muted" }, "No images yet.")]));
}

function imageCard(view, im, vs, users) {
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
  return h("section", { class: "card", dataset: { image: im.name } }, ...parts);
}
