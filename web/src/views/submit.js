// Submit a job (POST /v1/jobs, a tenant token): the fields of JobIn (docs/SERVICE.md), with an
// Idempotency-Key per form so that a double click submits one job. "Quote" asks the policy the
// controller runs what the job would cost and when it would start, now and if it may wait
// (POST /v1/quotes: books nothing), and a row's "Choose" sets the form's max_wait_h to it.
import { ApiError, send } from "../api.js";
import { html, money, qty, raw, stamp } from "../format.js";
import { cityName, locale, siteName, t } from "../i18n.js";

export const title = () => t("submit.h1");

export function mount(app, _args, me) {
  if (me.role !== "tenant") {
    app.innerHTML = html`<div class="card"><p>${t("submit.operator")}</p></div>`;
    return {};
  }
  const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  app.innerHTML = html`
    <form id="submit" class="card form">
            <label>${t("submit.name")} <input name="name" required value="finetune-demo" /></label>
      <label>${t("submit.command")} <input name="command" required value="echo &quot;job $SUANLI_JOB_ID&quot;; sleep 2" /></label>
      <label>${t("submit.gpus")} <input name="gpus" type="number" min="1" step="1" value="1" required /></label>
      <label>${t("submit.work")} <input name="work_h" type="number" min="0" step="any" value="0.001" required /></label>
      <label>${t("submit.origin")} <select name="origin">${raw(me.cities.map((c) => html`<option value="${c}">${cityName(c)}</option>`).join(""))}</select></label>
      <fieldset><legend>${t("submit.types")}</legend>
        ${raw(me.gpu_types.map((g) => html`<label class="inline"><input type="checkbox" name="gpu_types" value="${g}" /> ${g}</label>`).join(""))}
      </fieldset>
      ${raw(me.job_classes.length ? html`<label>${t("submit.class")} <select name="class"><option value="">${t("job.none")}</option>
        ${raw(me.job_classes.map((c) => html`<option>${c}</option>`).join(""))}</select></label>` : "")}
      <label>${t("submit.deadline")} <input name="deadline_h" type="number" min="0" step="any" /></label>
      <label>${t("submit.data")} <input name="data_gb" type="number" min="0" step="any" value="0" /></label>
      <label>${t("submit.rtt")} <input name="max_rtt_ms" type="number" min="0" step="any" /></label>
      <label>${t("submit.ckpt")} <input name="checkpoint_h" type="number" min="0" step="any" /></label>
      <label>${t("submit.wait")} <input name="max_wait_h" type="number" min="0" step="any" /></label>
      <div class="buttons">
        <button type="button" id="quote-button">${t("submit.quote")}</button>
        <button type="submit" id="submit-button">${t("submit.button")}</button>
      </div>
      <p class="error" id="submit-error" role="alert" hidden></p>
      <div id="quote" aria-live="polite"></div>
    </form>`;
  const form = document.getElementById("submit");
  const fields = () => {
    const f = new FormData(form);
    const body = { name: f.get("name"), command: f.get("command"), gpus: Number(f.get("gpus")),
                   work_h: Number(f.get("work_h")), origin: f.get("origin"), data_gb: Number(f.get("data_gb") || 0) };
    const types = f.getAll("gpu_types");
    if (types.length) body.gpu_types = types;
    for (const k of ["deadline_h", "max_rtt_ms", "checkpoint_h", "max_wait_h"]) if (f.get(k)) body[k] = Number(f.get(k));
    if (f.get("class")) body.class = f.get("class");
    return body;
  };
  const showError = (err) => {
    const box = document.getElementById("submit-error");
    box.textContent = err instanceof ApiError ? err.message : `${err}`;
    box.hidden = false;
  };
  document.getElementById("quote-button").onclick = async () => {
    const out = document.getElementById("quote");
    document.getElementById("submit-error").hidden = true;
    try {
      const q = await send("POST", "/v1/quotes", { ...fields(), windows: [0, 6, 24] });
      out.innerHTML = quoteTable(q);
      for (const b of out.querySelectorAll("button[data-wait]")) {
        b.onclick = () => { form.elements.max_wait_h.value = b.dataset.wait; };
      }
    } catch (err) {
      out.innerHTML = "";
      showError(err);
    }
  };
  form.onsubmit = async (e) => {
    e.preventDefault();
    const body = fields();
    const button = document.getElementById("submit-button");
    button.disabled = true;
    try {
      const job = await send("POST", "/v1/jobs", body, { "Idempotency-Key": key });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      showError(err);
      button.disabled = false;
    }
  };
  return {};
}

// The quote's options as a table: one row per window ("now" for 0), its start, site, cost and
// carbon, or why the policy would not place it; and why a submit would be refused, if it would.
function quoteTable(q) {
  const rows = q.options.map((o) => {
    const wait = o.max_wait_h === 0 ? t("quote.now") : t("quote.may_wait", { h: Number(o.max_wait_h).toLocaleString(locale(), { maximumFractionDigits: 2 }) });
    if (!o.placed) return html`<tr><th scope="row">${wait}</th><td colspan="4">${o.reason}</td><td></td></tr>`;
    return html`<tr><th scope="row">${wait}</th><td>${stamp(new Date(o.start))}</td><td>${siteName(o.site)} / ${o.gpu_type}</td>
      <td class="num">${money(o.cost_cny)}</td><td class="num">${qty(o.carbon_kg)} kg</td>
      <td><button type="button" data-wait="${o.max_wait_h}">${t("quote.choose")}</button></td></tr>`;
  });
  return html`<h2>${t("quote.h2")}</h2>
    ${raw(q.refused ? html`<p class="error" role="alert">${t("quote.refused")}: ${q.refused}</p>` : "")}
    <table class="quote"><caption>${t("quote.caption", { policy: q.policy })}</caption>
      <thead><tr><th scope="col">${t("quote.window")}</th><th scope="col">${t("quote.start")}</th>
        <th scope="col">${t("quote.where")}</th><th scope="col">${t("quote.cost")}</th>
        <th scope="col">${t("quote.carbon")}</th><th scope="col"><span class="sr-only">${t("quote.choose")}</span></th></tr></thead>
      <tbody>${raw(rows.join(""))}</tbody></table>`;
}
