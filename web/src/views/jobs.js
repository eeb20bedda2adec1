// Jobs: a table filtered by state and site (through the API; both live in the URL:
// #/jobs?state=RUNNING&site=hami-1, so a filtered view can be shared and reloaded), by tenant
// (operator only: any part of the name, any case; also in the URL) and by a search over id, name,
// tenant, site and reason; sorted by any column. A poll redraws only what changed and gives the
// keyboard focus (and any opened "why") back to where it was.
import { get } from "../api.js";
import { html, int, jobBadge, money, qty, raw, STATES, when } from "../format.js";
import { reasonText, siteName, stateName, t } from "../i18n.js";

export const title = () => t("jobs.h1");

const COLS = [
  ["id", "col.id", (j) => j.id, true],
  ["name", "col.name", (j) => j.name],
  ["tenant", "col.tenant", (j) => j.tenant],
  ["state", "col.state", (j) => STATES.indexOf(j.state)],
  ["site", "col.site_gpu", (j) => `${j.site ?? "~"} ${j.gpu_type ?? ""}`],
  ["gpus", "col.gpus", (j) => j.gpus, true],
  ["submitted", "col.submitted", (j) => j.submit_h, true],
  ["cost", "col.cost", (j) => j.usage.total_cny, true],
  ["carbon", "col.carbon", (j) => j.usage.carbon_kg, true],
  ["why", "col.why", (j) => j.reason ?? ""],
];

let view = null;        // {params, data, sort, dir, search, tenant, drawn}

export function mount(app, { params }, me) {
  const option = (v, label, sel) => html`<option value="${v}" ${raw(v === sel ? "selected" : "")}>${label}</option>`;
  view = { params, data: null, sort: "id", dir: 1, search: "", tenant: (params.tenant ?? "").trim().toLowerCase(), drawn: "" };
  app.innerHTML = html`
    <section>
      <form id="filters" class="filters">
        <label>${t("jobs.state")} <select name="state">${raw(option("", t("jobs.any"), params.state ?? ""))}
          ${raw(STATES.map((s) => option(s, stateName(s), params.state)).join(""))}</select></label>
        <label>${t("jobs.site")} <select name="site">${raw(option("", t("jobs.any"), params.site ?? ""))}
          ${raw(me.sites.map((s) => option(s, siteName(s), params.site)).join(""))}</select></label>
        ${raw(me.role === "admin" ? html`<label>${t("jobs.tenant")} <input name="tenant" id="tenant-filter" value="${params.tenant ?? ""}"
              placeholder="${t("jobs.any")}" size="12" autocomplete="off" /></label>` : "")}
        <button type="submit">${t("jobs.filter")}</button>
        <label>${t("jobs.search")} <input type="search" id="job-search" placeholder="${t("jobs.search.ph")}" size="16" autocomplete="off" /></label>
        ${raw(me.role === "tenant" ? html`<a class="button" href="#/submit">${t("nav.submit")}</a>` : "")}
      </form>
      <p class="muted" id="jobs-count" aria-live="polite"></p>
      <div class="scroll">
      <table class="grid" id="jobs">
        <thead><tr>${raw(COLS.map(([k, label, , n]) => html`<th scope="col" data-col="${k}" class="${n ? "n" : ""}"
          aria-sort="${k === "id" ? "ascending" : "none"}"><button type="button" class="sort" data-sort="${k}"
          title="${t("jobs.sort", { col: t(label) })}">${t(label)}${raw(k === "cost" ? " (¥)" : "")}</button></th>`).join(""))}</tr></thead>
        <tbody></tbody>
      </table>
      </div>
      <p class="muted" id="jobs-more" hidden>${t("jobs.more")}</p>
    </section>`;
  document.getElementById("filters").onsubmit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) q.set(k, v.trim());
    location.hash = `#/jobs${q.toString() ? `?${q}` : ""}`;
  };
  document.getElementById("job-search").oninput = (e) => {
    view.search = e.target.value.trim().toLowerCase();
    draw();
  };
  const tf = document.getElementById("tenant-filter");
  if (tf) {
    tf.oninput = () => {
      view.tenant = tf.value.trim().toLowerCase();
      draw();
    };
  }
  for (const b of document.querySelectorAll("#jobs th button.sort")) {
    b.onclick = () => {
      view.dir = view.sort === b.dataset.sort ? -view.dir : 1;
      view.sort = b.dataset.sort;
      for (const th of document.querySelectorAll("#jobs th")) {
        th.setAttribute("aria-sort", th.dataset.col === view.sort ? (view.dir > 0 ? "ascending" : "descending") : "none");
      }
      draw();
    };
  }
  // a click anywhere on a row opens the job (the id is also a link, for the keyboard)
  document.querySelector("#jobs tbody").onclick = (e) => {
    const tr = e.target.closest("tr[data-job]");
    if (!tr || e.target.closest("a, summary, details, button")) return;
    location.hash = `#/jobs/${tr.dataset.job}`;
  };
  return { refresh: () => refresh(params) };
}

async function refresh(params) {
  const { tenant: _tenant, ...query } = params;           // the tenant filter is applied here, by substring
  const { data } = await get("/v1/jobs", { ...query, limit: 500 });
  if (!view || view.params !== params) return;
  view.data = data;
  draw();
}

function rowHtml(j) {
  const why = reasonText(j.reason);
  return html`<tr data-job="${j.id}" ${raw(j.suspended ? 'data-suspended="yes"' : "")}>
      <td><a href="#/jobs/${j.id}" data-focus="job-${j.id}">${j.id}</a></td><td>${j.name}</td><td>${j.tenant}</td><td>${jobBadge(j)}</td>
      <td>${j.site ? `${siteName(j.site)} / ${j.gpu_type}` : "—"}</td><td class="n">${int(j.gpus)}</td>
      <td>${when(j.submit_h)}</td><td class="n">${money(j.usage.total_cny)}</td><td class="n">${qty(j.usage.carbon_kg)}</td>
      <td class="why">${raw(why ? html`<details data-why="${j.id}"><summary data-focus="why-${j.id}" title="${why}">${why}</summary></details>` : "")}</td>
    </tr>`;
}

function draw() {
  const body = document.querySelector("#jobs tbody");
  if (!body || !view || !view.data) return;
  const col = COLS.find((c) => c[0] === view.sort) ?? COLS[0];
  const key = col[2];
  const match = (j) => (!view.tenant || j.tenant.toLowerCase().includes(view.tenant)) &&
    (!view.search || [j.id, j.name, j.tenant, j.site, j.gpu_type, j.state, stateName(j.state), j.reason, reasonText(j.reason),
                       j.suspended ? t("state.suspended") : null]
      .some((v) => v !== null && v !== undefined && String(v).toLowerCase().includes(view.search)));
  const rows = view.data.jobs.filter(match).sort((a, b) => {
    const x = key(a);
    const y = key(b);
    return (x < y ? -1 : x > y ? 1 : a.id - b.id) * view.dir;
  });
  const out = rows.length ? rows.map(rowHtml).join("") : html`<tr><td colspan="${COLS.length}" class="muted">${t("jobs.none")}</td></tr>`;
  document.getElementById("jobs-count").textContent = t("jobs.count", { n: rows.length });
  document.getElementById("jobs-more").hidden = view.data.next_cursor === null;
  if (out === view.drawn) return;                         // nothing new: leave the DOM (and the focus) alone
  view.drawn = out;
  const focused = body.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
  const open = [...body.querySelectorAll("details[open]")].map((d) => d.dataset.why);
  body.innerHTML = out;
  for (const id of open) {
    const d = body.querySelector(`details[data-why="${id}"]`);
    if (d) d.open = true;
  }
  if (focused) body.querySelector(`[data-focus="${focused}"]`)?.focus();
}
