// Numbers, times and small DOM helpers shared by the views. Times are shown in Asia/Shanghai
// (Beijing time), 24-hour, whatever the browser's zone; numbers follow the page's language;
// money is always ¥ (yuan).
import { locale, stateName, t } from "./i18n.js";

let epochMs = 0;

export function setEpoch(iso) {
  epochMs = Date.parse(iso);
}

// Controller hours (hours since the service epoch, docs/SERVICE.md "The clock") -> Date.
export function wall(h) {
  return new Date(epochMs + h * 3600e3);
}

const TZ = "Asia/Shanghai";
const fmts = new Map();

function parts(d, withSeconds = true) {
  const key = withSeconds ? "s" : "m";
  let f = fmts.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat("en-CA", { timeZone: TZ, hourCycle: "h23", year: "numeric", month: "2-digit",
                                           day: "2-digit", hour: "2-digit", minute: "2-digit",
                                           ...(withSeconds ? { second: "2-digit" } : {}) });
    fmts.set(key, f);
  }
  return Object.fromEntries(f.formatToParts(d).map((p) => [p.type, p.value]));
}

// YYYY-MM-DD HH:MM:SS, Beijing time, 24-hour.
export function stamp(d) {
  const p = parts(d);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

export function clock(d) {
  const p = parts(d);
  return `${p.hour}:${p.minute}:${p.second}`;
}

export function when(h) {
  if (h === null || h === undefined) return "—";
  return stamp(wall(h));
}

export function hourLabel(d) {
  const p = parts(d, false);
  return `${p.month}-${p.day} ${p.hour}:00`;
}

export function num(x, digits = 2) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return Number(x).toLocaleString(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// Small figures (a test job's few grams) keep significant digits instead of printing 0.00.
export function qty(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  const a = Math.abs(x);
  if (a === 0) return "0";
  if (a >= 100) return num(x, 0);
  if (a >= 1) return num(x, 2);
  return Number(Number(x).toPrecision(digits)).toLocaleString(locale(), { maximumSignificantDigits: digits });
}

// Money: yuan, in both languages.
export function money(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return `${x < 0 ? "−" : ""}¥${digits === undefined ? qty(Math.abs(x)) : num(Math.abs(x), digits)}`;
}

export function int(x) {
  return x === null || x === undefined ? "—" : Number(x).toLocaleString(locale());
}

export function pct(x) {
  return x === null || x === undefined ? "—" : `${Math.round(x * 100)}%`;
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// A tagged template whose ${values} are HTML-escaped unless wrapped in raw().
export function html(strings, ...values) {
  return strings.reduce((out, s, i) => {
    if (i === 0) return s;
    const v = values[i - 1];
    const text = v && v.__raw !== undefined ? v.__raw
      : Array.isArray(v) ? v.map((x) => (x && x.__raw !== undefined ? x.__raw : esc(x))).join("")
      : esc(v);
    return out + text + s;
  }, "");
}

export function raw(s) {
  return { __raw: s };
}

export const TERMINAL = ["SUCCEEDED", "FAILED", "CANCELLED"];
export const STATES = ["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "PREEMPTED"];

export function badge(state) {
  return raw(`<span class="state state-${esc(state).toLowerCase()}" data-state="${esc(state)}">${esc(stateName(state))}</span>`);
}

// A job's state; one suspended at its piece's end (the API's `suspended`: it waits, PENDING or
// PLACED, to resume from its checkpoint) reads so, its state kept in data-state.
export function jobBadge(j) {
  if (!j.suspended) return badge(j.state);
  return raw(`<span class="state state-suspended" data-state="${esc(j.state)}" data-suspended="yes">${esc(t("state.suspended"))}</span>`);
}

// Renewable share 0..1 -> a colour from grid brown to green.
export function shareColour(share) {
  const s = Math.max(0, Math.min(1, share ?? 0));
  const from = [160, 110, 70];
  const to = [34, 160, 80];
  const c = from.map((f, i) => Math.round(f + (to[i] - f) * s));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
