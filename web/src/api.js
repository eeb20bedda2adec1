// Talking to the suanli API: the token (sessionStorage: gone when the tab closes), the
// `Authorization: Bearer` header on every call, and ETag revalidation for polls.

const TOKEN_KEY = "suanli.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// url -> {etag, data}: a poll sends If-None-Match and reuses `data` on 304. We keep this
// ourselves (fetch with cache: "no-store") so that the browser's HTTP cache never holds a
// response fetched with another token.
const seen = new Map();

async function detailOf(res) {
  try {
    const body = await res.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    return res.statusText || `HTTP ${res.status}`;
  }
}

// GET `path` (with `params`); resolves to {data, changed}: `changed` is false when the server
// answered 304 (nothing new since the last poll of the same URL).
export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const url = query.toString() ? `${path}?${query}` : path;
  const headers = { Authorization: `Bearer ${token()}` };
  const old = seen.get(url);
  if (old) headers["If-None-Match"] = old.etag;
  const res = await fetch(url, { headers, cache: "no-store" });
  if (res.status === 304 && old) return { data: old.data, changed: false };
  if (!res.ok) throw new ApiError(res.status, await detailOf(res));
  const data = await res.json();
  const etag = res.headers.get("ETag");
  if (etag) seen.set(url, { etag, data });
  return { data, changed: true };
}

export async function send(method, path, body, extraHeaders = {}) {
  const headers = { Authorization: `Bearer ${token()}`, ...extraHeaders };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                  cache: "no-store" });
  if (!res.ok) throw new ApiError(res.status, await detailOf(res));
  return res.json();
}

// A text download (the invoice CSV) through the same header, handed to the browser as a file.
export async function download(path, params, filename) {
  const res = await fetch(`${path}?${new URLSearchParams(params)}`,
                          { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" });
  if (!res.ok) throw new ApiError(res.status, await detailOf(res));
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: filename });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function forget() {
  seen.clear();
}
