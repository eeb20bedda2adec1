// The dashboard's shell: the token prompt, the navigation, a hash router (#/network,
// #/sites/ID, #/jobs, #/jobs/ID, #/submit, #/tenant) and the live poll that refreshes the
// current view every few seconds (ETags make an unchanged poll a 304 with no body).
import { ApiError, forget, get, setToken, token } from "./api.js";
import { disposeAll } from "./charts.js";
import { clock, esc, html, raw, setEpoch } from "./format.js";
import { getLang, LANGS, pickLang, setLang, t } from "./i18n.js";
import "./style.css";
import * as job from "./views/job.js";
import * as jobs from "./views/jobs.js";
import * as network from "./views/network.js";
import * as site from "./views/site.js";
import * as submit from "./views/submit.js";
import * as tenant from "./views/tenant.js";

const POLL_MS = 2500;
const app = document.getElementById("app");
let me = null;
let current = null;        // {key, view, handle}
let timer = null;

setLang(pickLang());

function route() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query));
  if (parts[0] === "sites" && parts[1]) return { view: site, args: { id: parts[1], params } };
  if (parts[0] === "jobs" && parts[1]) return { view: job, args: { id: parts[1], params } };
  if (parts[0] === "jobs") return { view: jobs, args: { params } };
  if (parts[0] === "submit") return { view: submit, args: { params } };
  if (parts[0] === "tenant") return { view: tenant, args: { params } };
  return { view: network, args: { params } };
}

function shell() {
  document.title = t("app.title");
  const brand = document.querySelector("header .brand");
  brand.title = t("brand.tip");
  brand.querySelector("span").textContent = t("brand.sub");
  document.getElementById("lang").innerHTML = Object.entries(LANGS).map(([k, label]) => html`<button type="button"
      lang="${k === "zh" ? "zh-CN" : "en"}" data-lang="${k}" aria-pressed="${k === getLang() ? "true" : "false"}">${label}</button>`).join("");
  document.getElementById("lang").setAttribute("aria-label", t("lang.switch"));
  for (const b of document.querySelectorAll("#lang button")) {
    b.onclick = () => {
      if (b.dataset.lang === getLang()) return;
      setLang(b.dataset.lang, true);
      shell();
      if (me && token()) {
        current = null;
        render();
      } else {
        login(document.getElementById("login-error")?.textContent ?? "");
      }
    };
  }
}

function nav(active) {
  const links = [["#/network", t("nav.network"), network], ["#/jobs", t("nav.jobs"), jobs]];
  if (me.role === "tenant") links.push(["#/submit", t("nav.submit"), submit]);
  links.push(["#/tenant", me.role === "tenant" ? t("nav.usage") : t("nav.tenants"), tenant]);
  const el = document.getElementById("nav");
  el.setAttribute("aria-label", t("nav.label"));
  el.innerHTML = links
    .map(([href, label, v]) => `<a href="${href}" class="${v === active ? "active" : ""}"${v === active ? ' aria-current="page"' : ""}>${esc(label)}</a>`).join("");
  document.getElementById("who").innerHTML = html`
    <span class="role">${me.role === "admin" ? t("who.operator") : t("who.tenant", { name: me.tenant })}</span>
    <span class="net">${me.network} · ${me.policy}</span>
    <button id="logout" type="button">${t("signout")}</button>`;
  document.getElementById("logout").onclick = () => {
    setToken(null);
    location.hash = "#/network";
    location.reload();
  };
}

function setStatus(text, bad = false) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = bad ? "bad" : "";
}

async function refresh() {
  if (!current || !current.handle.refresh) return;
  const key = current.key;
  try {
    await current.handle.refresh(current.args);
    scrollers();
    if (current && current.key === key) setStatus(t("status.live", { time: clock(new Date()) }));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut(t("login.expired"));
    if (current && current.key === key) showError(err);
  }
}

// A table wider than a phone scrolls inside its box, not the page; a box that scrolls takes the
// keyboard focus (tabindex) so that it can be scrolled without a mouse.
function scrollers() {
  for (const el of document.querySelectorAll(".scroll")) {
    if (el.scrollWidth > el.clientWidth + 1) {
      el.tabIndex = 0;
      el.setAttribute("role", "region");
      el.setAttribute("aria-label", el.querySelector("table")?.id || el.closest(".card")?.querySelector("h2, h3")?.textContent || "table");
    } else if (el.hasAttribute("tabindex")) {
      el.removeAttribute("tabindex");
      el.removeAttribute("role");
      el.removeAttribute("aria-label");
    }
  }
}

function showError(err) {
  const box = document.getElementById("view-error");
  const text = err instanceof ApiError ? err.message : `${err}`;
  if (box) {
    box.textContent = text;
    box.hidden = false;
  }
  setStatus(text, true);
}

async function render() {
  const { view, args } = route();
  const key = location.hash;
  if (current && current.key === key) return;
  disposeAll();
  clearInterval(timer);
  nav(view);
  const heading = view.title(args, me);
  document.title = `${heading} · suanli`;
  app.innerHTML = "";
  const handle = view.mount(app, args, me) || {};
  app.insertAdjacentHTML("afterbegin", html`<h1 id="view-title">${heading}</h1>
    <div id="view-error" class="error" role="alert" hidden></div>`);
  current = { key, view, args, handle };
  await refresh();
  timer = setInterval(refresh, POLL_MS);
}

function signOut(message) {
  setToken(null);
  forget();
  clearInterval(timer);
  current = null;
  login(message);
}

function login(message = "") {
  disposeAll();
  document.getElementById("nav").innerHTML = "";
  document.getElementById("who").innerHTML = "";
  setStatus("");
  app.innerHTML = html`
    <form id="login" class="card login">
      <h1>${t("login.h1")}</h1>
      <p>${raw(t("login.text"))}</p>
      <label for="token">${t("login.token")}</label>
      <input id="token" name="token" type="password" autocomplete="off" placeholder="sl_…" required />
      <button type="submit">${t("login.button")}</button>
      <p class="error" id="login-error" role="alert" ${raw(message ? "" : "hidden")}>${message}</p>
    </form>`;
  document.getElementById("login").onsubmit = async (e) => {
    e.preventDefault();
    setToken(document.getElementById("token").value.trim());
    await start();
  };
}

async function start() {
  if (!token()) return login();
  try {
    me = (await get("/v1/dashboard/me")).data;
  } catch (err) {
    return signOut(err instanceof ApiError && err.status === 401 ? t("login.unknown") : `${err.message}`);
  }
  setEpoch(me.epoch);
  current = null;
  await render();
}

shell();
window.addEventListener("hashchange", () => {
  if (me && token()) render();
});
start();
