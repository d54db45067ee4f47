// Small DOM helpers: elements are built with text, never parsed HTML, so
// names and labels from the API cannot inject markup.

// h makes an element: attrs are attributes (on* are listeners, dataset
// keys go through data-*), children strings or nodes (null skipped).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function seconds(s) {
  if (!s && s !== 0) return "";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function when(t) {
  if (!t) return "";
  const d = new Date(t);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

let noticeTimer;
// notice shows a short message; bad marks an error.
export function notice(msg, bad = false) {
  const n = document.getElementById("notice");
  n.textContent = msg;
  n.classList.toggle("bad", bad);
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, bad ? 8000 : 4000);
}
