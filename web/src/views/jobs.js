// Jobs: a table filtered by state, site and (operator only) tenant; the filters live in the URL
// (#/jobs?state=RUNNING&site=hami-1) so a filtered view can be shared and reloaded.
import { get } from "../api.js";
import { badge, html, qty, raw, STATES, when } from "../format.js";

export const title = "Jobs";

export function mount(app, { params }, me) {
  const option = (v, label, sel) => html`<option value="${v}" ${v === sel ? "selected" : ""}>${label}</option>`;
  app.innerHTML = html`
    <section>
      <form id="filters" class="filters">
        <label>state <select name="state">${raw(option("", "any", params.state ?? ""))}
          ${raw(STATES.map((s) => option(s, s, params.state)).join(""))}</select></label>
        <label>site <select name="site">${raw(option("", "any", params.site ?? ""))}
          ${raw(me.sites.map((s) => option(s, s, params.site)).join(""))}</select></label>
        ${raw(me.role === "admin" ? html`<label>tenant <input name="tenant" value="${params.tenant ?? ""}"
              placeholder="any" size="12" /></label>` : "")}
        <button type="submit">Filter</button>
        ${raw(me.role === "tenant" ? '<a class="button" href="#/submit">Submit a job</a>' : "")}
      </form>
      <table class="grid" id="jobs">
        <thead><tr><th>id</th><th>name</th><th>tenant</th><th>state</th><th>site / GPU</th><th>GPUs</th>
          <th>submitted</th><th>cost so far, CNY</th><th>carbon, kg</th><th>why</th></tr></thead>
        <tbody></tbody>
      </table>
      <p class="muted" id="jobs-more" hidden>Showing the first 500 jobs that match.</p>
    </section>`;
  document.getElementById("filters").onsubmit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) q.set(k, v);
    location.hash = `#/jobs${q.toString() ? `?${q}` : ""}`;
  };
  return { refresh: () => refresh(params) };
}

async function refresh(params) {
  const { data } = await get("/v1/jobs", { ...params, limit: 500 });
  const body = document.querySelector("#jobs tbody");
  if (!body) return;
  body.innerHTML = data.jobs.length ? data.jobs.map((j) => html`
    <tr data-job="${j.id}" onclick="location.hash='#/jobs/${j.id}'">
      <td><a href="#/jobs/${j.id}">${j.id}</a></td><td>${j.name}</td><td>${j.tenant}</td><td>${badge(j.state)}</td>
      <td>${j.site ? `${j.site} / ${j.gpu_type}` : "—"}</td><td class="n">${j.gpus}</td>
      <td>${when(j.submit_h)}</td><td class="n">${qty(j.usage.total_cny)}</td><td class="n">${qty(j.usage.carbon_kg)}</td>
      <td class="why">${j.reason}</td>
    </tr>`).join("") : '<tr><td colspan="10" class="muted">No jobs match.</td></tr>';
  document.getElementById("jobs-more").hidden = data.next_cursor === null;
}
