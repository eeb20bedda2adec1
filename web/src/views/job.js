// A job: its lifecycle, placement, cost and carbon so far (an estimate while it runs), the
// scheduler's explanation: how many candidates the policy weighed, the best one of each site and
// GPU type it priced with why it lost (how much more, and which parts), the pools with no
// candidate and why (capacity, a price floor above the chosen), every kept candidate with the
// parts of its score, and the sites left out and why; where its output lies. Cancelling asks first.
import { ApiError, get, send } from "../api.js";
import { chart, describe, disposeAll } from "../charts.js";
import { badge, html, int, jobBadge, money, num, qty, raw, TERMINAL, when } from "../format.js";
import { cityName, reasonText, siteName, t } from "../i18n.js";

export const title = ({ id }) => t("job.title", { id });

let shown = "";       // the job as last drawn: a poll that brings nothing new redraws nothing
let asking = false;   // the cancel confirmation is open: a poll leaves it alone

let allSites = [];    // every site of the network (GET /v1/dashboard/me)

export function mount(app, { id }, me) {
  allSites = me?.sites ?? [];
  shown = "";
  asking = false;
  app.innerHTML = html`<section class="job" id="job" data-job="${id}"><p class="muted">${t("job.loading", { id })}</p></section>`;
  return { refresh: () => refresh(id) };
}

function part(k) {
  const s = t(`part.${k}`);
  return s === `part.${k}` ? k : s;
}

async function refresh(id) {
  let j;
  try {
    ({ data: j } = await get(`/v1/jobs/${encodeURIComponent(id)}`));
  } catch (err) {
    // Another tenant's job answers 404, exactly like a job that does not exist.
    if (err instanceof ApiError && err.status === 404) {
      document.getElementById("job").innerHTML = html`<div class="card notfound"><h2>${t("job.notfound", { id })}</h2>
        <p>${err.message}. ${t("job.notfound.text")}</p><a href="#/jobs">${t("job.all")}</a></div>`;
      return;
    }
    throw err;
  }
  const el = document.getElementById("job");
  const now = JSON.stringify(j);
  if (!el || now === shown || asking) return;
  shown = now;
  disposeAll();
  const u = j.usage;
  const spec = j.spec;
  el.innerHTML = html`
    <h2>${j.name} ${jobBadge(j)} <small>${t("job.tenant", { name: j.tenant })}</small>
      ${raw(TERMINAL.includes(j.state) ? "" : html`<button id="cancel" type="button" class="danger" aria-expanded="false"
        aria-controls="cancel-confirm">${t("job.cancel")}</button>`)}</h2>
    <div id="cancel-confirm" class="confirm" role="alertdialog" aria-labelledby="cancel-ask" hidden>
      <p id="cancel-ask">${t("job.cancel.ask", { id: j.id })}</p>
      <button type="button" id="cancel-yes" class="danger">${t("job.cancel.yes")}</button>
      <button type="button" id="cancel-no" class="secondary">${t("job.cancel.no")}</button>
    </div>
    <p class="reason">${reasonText(j.reason)}</p>
    <div class="panels">
      <div class="card"><h3>${t("job.placement")}</h3><dl>
        <dt>${t("job.site")}</dt><dd>${raw(j.site ? html`<a href="#/sites/${j.site}">${siteName(j.site)}</a>` : "—")}</dd>
        <dt>${t("job.gpu")}</dt><dd>${j.gpu_type ?? "—"} × ${int(j.gpus)}</dd>
        <dt>${t("job.start")}</dt><dd>${when(j.start_h)} <small>(${num(j.start_h, 4)} h)</small></dd>
        <dt>${t("job.end")}</dt><dd>${when(j.end_h)} <small>(${num(j.end_h, 4)} h)</small></dd>
        <dt>${t("job.origin")}</dt><dd>${cityName(spec.origin)}</dd>
        <dt>${t("job.work")}</dt><dd>${t("job.work.v", { h: qty(spec.work_h) })}</dd>
        <dt>${t("job.data")}</dt><dd>${qty(spec.data_gb ?? 0)} GB</dd>
        <dt>${t("job.deadline")}</dt><dd>${spec.deadline_h ? when(spec.deadline_h) : t("job.none")}</dd>
        <dt>${t("job.command")}</dt><dd><code>${j.command}</code></dd>
      </dl></div>
      <div class="card"><h3>${t("job.cost")}</h3><dl>
        <dt>${t("job.total")}</dt><dd><b>${money(u.total_cny)}</b></dd>
        <dt>${t("job.rental")}</dt><dd>${money(u.gpu_cny)}</dd>
        <dt>${t("job.energy")}</dt><dd>${money(u.energy_cny)}</dd>
        <dt>${t("job.transfer")}</dt><dd>${money(u.transfer_cny)}</dd>
        <dt>${t("job.gputime")}</dt><dd>${qty(u.gpu_seconds / 3600)} GPU-h</dd>
        <dt>${t("job.kwh")}</dt><dd id="job-kwh">${t("job.kwh.v", { kwh: qty(u.energy_kwh), grid: qty(u.grid_kwh), ren: qty(u.renewable_kwh),
                                                                   bat: qty(u.battery_kwh ?? 0) })}</dd>
        <dt>${t("job.carbon")}</dt><dd id="job-carbon"><b>${qty(u.carbon_kg)} kg CO₂e</b></dd>
      </dl>
      ${raw(u.estimated ? html`<p class="muted" id="estimated">${t("job.estimated")}</p>` : "")}
      ${raw((j.outputs ?? []).length ? html`<dl id="job-output">${raw(j.outputs.map((o) => html`<dt>${t("job.output")} (${o.fence})</dt>
        <dd><code>${t("job.output.v", { site: siteName(o.site), path: o.path, bytes: int(o.size_bytes) })}</code></dd>`).join(""))}</dl>` : "")}
      </div>
    </div>
    ${raw(plan(j))}
    <div class="card explanation" id="explanation"><h3>${t("job.why")}</h3>
      ${raw(explanation(j))}</div>
    <div class="card"><h3>${t("job.lifecycle")}</h3><div class="scroll">
      <table class="grid" id="lifecycle"><thead><tr><th scope="col">${t("col.at")}</th><th scope="col">${t("col.ctl_h")}</th>
        <th scope="col">${t("col.from")}</th><th scope="col">${t("col.to")}</th><th scope="col">${t("col.reason")}</th></tr></thead>
      <tbody>${raw(j.transitions.map((x) => html`<tr><td>${when(x.at_h)}</td><td class="n">${num(x.at_h, 4)}</td>
        <td>${x.from_state ? badge(x.from_state) : ""}</td><td>${badge(x.to_state)}</td><td>${reasonText(x.reason)}</td></tr>`).join(""))}
      </tbody></table></div></div>`;
  drawParts(j);
  const cancel = document.getElementById("cancel");
  if (cancel) {
    const box = document.getElementById("cancel-confirm");
    const close = () => {
      asking = false;
      box.hidden = true;
      cancel.setAttribute("aria-expanded", "false");
    };
    cancel.onclick = () => {
      asking = true;
      box.hidden = false;
      cancel.setAttribute("aria-expanded", "true");
      document.getElementById("cancel-no").focus();
    };
    document.getElementById("cancel-no").onclick = () => {
      close();
      cancel.focus();
    };
    document.getElementById("cancel-yes").onclick = async () => {
      document.getElementById("cancel-yes").disabled = true;
      try {
        await send("DELETE", `/v1/jobs/${j.id}`);
      } finally {
        close();
      }
      await refresh(id);
    };
  }
}

// A plan in pieces (docs/SCHEDULER.md, "Suspend and resume"): the pieces it ran, each stopped at
// its end (`pieces_done`), then its placement (running, or the next), then the plan's later pieces
// (`pieces`), each [start_h, end_h) in Beijing time; nothing for a job never planned in pieces.
function plan(j) {
  const done = j.pieces_done ?? [];
  const later = j.pieces ?? [];
  if (!done.length && !later.length) return "";
  const rows = done.map(([a, b]) => [a, b, "done"]);
  if (j.start_h !== null && j.start_h !== undefined) {
    const now = j.state === "RUNNING" ? "running" : j.state === "SUCCEEDED" ? "done" : TERMINAL.includes(j.state) ? "stopped" : "ahead";
    rows.push([j.start_h, j.end_h, now]);
  } else if (j.suspended) {
    rows.push([null, null, "replan"]);          // PENDING: its rest is being planned again
  }
  for (const [a, b] of later) rows.push([a, b, TERMINAL.includes(j.state) ? "stopped" : "ahead"]);
  const first = rows.findIndex((r) => r[2] === "ahead");
  for (const [k, r] of rows.entries()) if (r[2] === "ahead") r[2] = k === first ? "next" : "later";
  return html`<div class="card" id="plan" data-pieces="${rows.length}"><h3>${t("plan.h")}</h3>
    <p id="plan-line">${t("plan.line", { n: rows.length })}</p>
    ${raw(j.suspended ? html`<p id="plan-suspended"><b>${t("plan.suspended")}</b></p>` : "")}
    <div class="scroll"><table class="grid" id="pieces"><thead><tr><th scope="col" class="n">${t("plan.piece")}</th>
      <th scope="col">${t("col.start")}</th><th scope="col">${t("col.end")}</th><th scope="col">${t("plan.status")}</th></tr></thead>
    <tbody>${raw(rows.map(([a, b, st], k) => html`<tr data-piece="${st}" class="${st === "running" || st === "next" ? "chosen" : ""}">
      <td class="n">${k + 1}</td><td>${when(a)}</td><td>${when(b)}</td><td>${t(`plan.${st}`)}</td></tr>`).join(""))}</tbody></table></div></div>`;
}

const sameAs = (a, b) => a && b && a.site === b.site && a.gpu_type === b.gpu_type && Math.abs(a.start_h - b.start_h) < 1e-9;

// how many candidates the policy priced: the explanation's `weighed`, else (an explanation stored
// before it had one) read from its reason, "cheapest: best of 7 candidates"
function weighed(e) {
  if (Number.isInteger(e.weighed) && e.weighed > 0) return e.weighed;
  const m = /best of (\d+) candidates?/.exec(e.reason ?? "");
  return m ? Number(m[1]) : null;
}

// why a pool's best candidate `c` lost to the chosen one: how much more it costs and which parts
// make the difference (largest first); the same total loses on the tie-break
function whyLost(c, chosen) {
  if (!chosen) return "";
  if (sameAs(c, chosen)) return t("ex.lost.chosen");
  const d = c.total - chosen.total;
  const eps = 1e-9 * Math.max(1, Math.abs(chosen.total));     // totals equal but for rounding
  if (Math.abs(d) <= eps) return t("ex.lost.tie");
  if (d < 0) return t("ex.lost.backup");
  const keys = [...new Set([...Object.keys(c.parts), ...Object.keys(chosen.parts)])];
  const diffs = keys.map((k) => [k, (c.parts[k] ?? 0) - (chosen.parts[k] ?? 0)])
    .filter(([, v]) => Math.abs(v) > eps).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 3);
  return t("ex.lost.more", { d: money(d), parts: diffs.map(([k, v]) => `${part(k)} ${v > 0 ? "+" : "−"}${money(Math.abs(v))}`).join(", ") });
}

function explanation(j) {
  const e = j.explanation;
  if (!e) return html`<p class="muted">${t("ex.undecided")}</p>`;
  const cands = e.candidates ?? [];
  const keys = [...new Set(cands.flatMap((c) => Object.keys(c.parts)))];
  const chosen = e.chosen;
  const rejected = Object.entries(e.rejected ?? {});
  // the best candidate of each pool (site and GPU type): among those kept, then the best of each
  // other pool the policy priced (`others`), best first
  const perPool = [];
  for (const c of [...cands, ...(e.others ?? [])]) {
    if (!perPool.some((p) => p.site === c.site && p.gpu_type === c.gpu_type)) perPool.push(c);
  }
  perPool.sort((a, b) => a.total - b.total);
  const unscored = Object.entries(e.unscored ?? {});
  const n = weighed(e);
  // sites that passed the filters yet have no candidate (an explanation stored before `unscored`)
  const named = new Set([...perPool.map((p) => p.site), ...unscored.map(([k]) => k.split("/")[0])]);
  const notKept = cands.length && !e.unscored ? allSites.filter((s) => !(s in (e.rejected ?? {})) && !named.has(s)) : [];
  const cell = (c) => html`<td>${siteName(c.site)}${sameAs(c, chosen) ? " ✔" : ""}</td><td>${c.gpu_type}</td>`;
  const vs = (c) => (chosen && !sameAs(c, chosen) ? `${c.total >= chosen.total ? "+" : "−"}${money(Math.abs(c.total - chosen.total))}` : "—");
  return html`
    <p><b>${t(`decision.${e.decision}`).replace(/^decision\./, "")}</b> ${t("ex.by")} <code>${e.policy ?? "?"}</code>${e.at_h !== undefined ? ` ${t("ex.at", { time: when(e.at_h) })}` : ""}:
       ${reasonText(e.reason) || ""} ${e.note ? `(${e.note})` : ""}</p>
    ${raw(chosen ? html`<p class="chosen">${t("ex.chosen", { where: `${siteName(chosen.site)} / ${chosen.gpu_type}`,
                                                             start: when(chosen.start_h), score: money(chosen.total) })}</p>` : "")}
    ${raw(cands.length ? html`
      <p id="weighed">${n !== null ? t("ex.weighed", { n }) : ""} ${t("ex.kept", { n: cands.length })}</p>
      <h4>${t("ex.persite")}</h4>
      <div class="scroll"><table class="grid" id="per-site"><thead><tr><th scope="col">${t("col.site")}</th><th scope="col">${t("col.gpu")}</th>
        <th scope="col">${t("col.start")}</th><th scope="col" class="n">${t("col.score")}</th><th scope="col" class="n">${t("col.vs")}</th>
        <th scope="col">${t("col.whylost")}</th></tr></thead>
      <tbody>${raw(perPool.map((c) => html`<tr class="${sameAs(c, chosen) ? "chosen" : ""}" data-site="${c.site}" data-gpu="${c.gpu_type}">${raw(cell(c))}
        <td>${when(c.start_h)}</td><td class="n">${money(c.total)}</td><td class="n">${vs(c)}</td><td class="why">${whyLost(c, chosen)}</td></tr>`).join(""))}
      ${raw(unscored.map(([k, why]) => html`<tr class="unscored" data-site="${k.split("/")[0]}" data-gpu="${k.split("/").slice(1).join("/")}">
        <td>${siteName(k.split("/")[0])}</td><td>${k.split("/").slice(1).join("/")}</td><td>—</td><td class="n">—</td><td class="n">—</td>
        <td class="why">${reasonText(why)}</td></tr>`).join(""))}
      </tbody></table></div>
      ${raw(notKept.length ? html`<p id="not-kept" class="muted">${t("ex.notkept", { n: notKept.length, sites: notKept.map(siteName).join(", ") })}</p>` : "")}
      <h4>${t("ex.all")}</h4>
      <div class="scroll"><table class="grid" id="candidates"><thead><tr><th scope="col">${t("col.cand")}</th><th scope="col">${t("col.gpu")}</th>
        <th scope="col">${t("col.start")}</th><th scope="col">${t("col.end")}</th>
        ${raw(keys.map((k) => html`<th scope="col" class="n" data-part="${k}">${part(k)}</th>`).join(""))}<th scope="col" class="n">${t("col.score")}</th></tr></thead>
      <tbody>${raw(cands.map((c) => html`<tr class="${sameAs(c, chosen) ? "chosen" : ""}">${raw(cell(c))}
        <td>${when(c.start_h)}</td><td>${when(c.end_h)}</td>
        ${raw(keys.map((k) => html`<td class="n">${money(c.parts[k] ?? 0)}</td>`).join(""))}
        <td class="n"><b>${money(c.total)}</b></td></tr>`).join(""))}</tbody></table></div>
      <div id="parts" class="chart small"></div>` : html`<p class="muted">${t("ex.none")}</p>`)}
    <h4>${t("ex.leftout")}</h4>
    ${raw(rejected.length ? html`<div class="scroll"><table class="grid" id="rejected"><thead><tr><th scope="col">${t("col.site")}</th>
      <th scope="col">${t("col.why")}</th></tr></thead>
      <tbody>${raw(rejected.map(([s, why]) => html`<tr data-site="${s}"><td>${siteName(s)}</td><td>${reasonText(why)}</td></tr>`).join(""))}</tbody></table></div>`
      : html`<p class="muted">${t("ex.leftout.none")}</p>`)}`;
}

function drawParts(j) {
  const el = document.getElementById("parts");
  const e = j.explanation;
  if (!el || !e) return;
  const cands = e.candidates ?? [];
  const keys = [...new Set(cands.flatMap((c) => Object.keys(c.parts)))];
  const narrow = el.clientWidth < 500;
  chart(el).setOption({
    animation: false,
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, confine: true, valueFormatter: (v) => money(v) },
    legend: { top: 0 },
    grid: { left: narrow ? 8 : 150, right: 30, top: 30, bottom: 25, containLabel: narrow },
    xAxis: { type: "value", name: "¥" },
    yAxis: { type: "category", inverse: true, data: cands.map((c) => `${siteName(c.site)} / ${c.gpu_type}`) },
    series: keys.map((k) => ({ name: part(k), type: "bar", stack: "score", data: cands.map((c) => c.parts[k] ?? 0) })),
  }, true);
  describe(el, t("ex.all"), t("ex.parts", {
    n: cands.length,
    list: cands.map((c) => `${siteName(c.site)} / ${c.gpu_type}: ${keys.map((k) => `${part(k)} ${money(c.parts[k] ?? 0)}`).join(", ")}`).join("; "),
  }));
}
