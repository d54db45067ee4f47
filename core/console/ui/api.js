// The admin API as the console calls it: same origin, the session cookie,
// and the CSRF token on every write.
const prefix = "/api/v1";

export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let csrf = "";
let onSignedOut = () => {};

// session is who the page is signed in as: {user, role, csrf_token}.
export const session = { user: "", role: "" };

export function whenSignedOut(fn) { onSignedOut = fn; }

function remember(s) {
  session.user = s.user;
  session.role = s.role;
  csrf = s.csrf_token || "";
}

const rank = { viewer: 1, operator: 2, admin: 3 };

// may reports whether the signed-in role reaches role.
export function may(role) { return (rank[session.role] || 0) >= rank[role]; }

// call sends one request; body is sent as JSON. It answers the decoded
// JSON (null for 204) and throws APIError otherwise; 401 signs the page out.
export async function call(method, path, body) {
  const headers = {};
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(prefix + path, { method, headers, body: payload, credentials: "same-origin" });
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const msg = (data && data.error) || `${method} ${path}: ${res.status}`;
    if (res.status === 401 && path !== "/auth/session") {
      session.user = session.role = ""; csrf = "";
      onSignedOut(msg);
    }
    throw new APIError(res.status, msg);
  }
  return data;
}

// whoami asks who the cookie belongs to; null when nobody.
export async function whoami() {
  try {
    remember(await call("GET", "/auth/session"));
    return session;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

// signIn posts the sign-in form's fields, as the form itself would.
export async function signIn(username, password) {
  const res = await fetch(prefix + "/auth/session", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ username, password }),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new APIError(res.status, data.error || `sign-in: ${res.status}`);
  remember(data);
  return session;
}

export async function signOut() {
  await call("DELETE", "/auth/session");
  session.user = session.role = ""; csrf = "";
}

export const enc = encodeURIComponent;
