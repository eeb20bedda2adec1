// Submit a job (POST /v1/jobs, a tenant token): the fields of JobIn (docs/SERVICE.md), with an
// Idempotency-Key per form so that a double click submits one job.
import { ApiError, send } from "../api.js";
import { html, raw } from "../format.js";
import { cityName, t } from "../i18n.js";

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
      <button type="submit" id="submit-button">${t("submit.button")}</button>
      <p class="error" id="submit-error" role="alert" hidden></p>
    </form>`;
  const form = document.getElementById("submit");
  form.onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { name: f.get("name"), command: f.get("command"), gpus: Number(f.get("gpus")),
                   work_h: Number(f.get("work_h")), origin: f.get("origin"), data_gb: Number(f.get("data_gb") || 0) };
    const types = f.getAll("gpu_types");
    if (types.length) body.gpu_types = types;
    for (const k of ["deadline_h", "max_rtt_ms", "checkpoint_h"]) if (f.get(k)) body[k] = Number(f.get(k));
    if (f.get("class")) body.class = f.get("class");
    const button = document.getElementById("submit-button");
    button.disabled = true;
    try {
      const job = await send("POST", "/v1/jobs", body, { "Idempotency-Key": key });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      const box = document.getElementById("submit-error");
      box.textContent = err instanceof ApiError ? err.message : `${err}`;
      box.hidden = false;
      button.disabled = false;
    }
  };
  return {};
}
