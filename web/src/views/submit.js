// Submit a job (POST /v1/jobs, a tenant token): the fields of JobIn (docs/SERVICE.md), with an
// Idempotency-Key per form so that a double click submits one job.
import { ApiError, send } from "../api.js";
import { html, raw } from "../format.js";

export const title = "Submit";

export function mount(app, _args, me) {
  if (me.role !== "tenant") {
    app.innerHTML = html`<div class="card"><p>Jobs are submitted with a tenant token; this is the operator's.</p></div>`;
    return {};
  }
  const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  app.innerHTML = html`
    <form id="submit" class="card form">
      <h2>Submit a job</h2>
      <label>name <input name="name" required value="finetune-demo" /></label>
      <label>command <input name="command" required value="echo &quot;job $SUANLI_JOB_ID&quot;; sleep 2" /></label>
      <label>GPUs <input name="gpus" type="number" min="1" step="1" value="1" required /></label>
      <label>work (hours on a speed-1 GPU) <input name="work_h" type="number" min="0" step="any" value="0.001" required /></label>
      <label>origin city <select name="origin">${raw(me.cities.map((c) => html`<option>${c}</option>`).join(""))}</select></label>
      <fieldset><legend>GPU types (none ticked: any)</legend>
        ${raw(me.gpu_types.map((g) => html`<label class="inline"><input type="checkbox" name="gpu_types" value="${g}" /> ${g}</label>`).join(""))}
      </fieldset>
      ${raw(me.job_classes.length ? html`<label>class <select name="class"><option value="">none</option>
        ${raw(me.job_classes.map((c) => html`<option>${c}</option>`).join(""))}</select></label>` : "")}
      <label>deadline (hours after submission, optional) <input name="deadline_h" type="number" min="0" step="any" /></label>
      <label>data to move (GB) <input name="data_gb" type="number" min="0" step="any" value="0" /></label>
      <label>max round trip (ms, optional) <input name="max_rtt_ms" type="number" min="0" step="any" /></label>
      <label>checkpoint every (h, optional) <input name="checkpoint_h" type="number" min="0" step="any" /></label>
      <button type="submit" id="submit-button">Submit</button>
      <p class="error" id="submit-error" hidden></p>
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
