// The dashboard's languages: English and Simplified Chinese (zh-CN). The language comes from
// localStorage ("suanli.lang", set by the header's 中文 / English switch), else from the
// browser's navigator.languages (the first zh* or en* entry), else English. Strings are looked up
// by key; {name} placeholders are filled in; a key with `_one`/`_other` forms follows the
// language's plural rules (Intl.PluralRules). Place names come from a table keyed by the network
// file's city id, falling back to the id itself.
import PLACES from "../../src/suanli/i18n/places_zh.json";

const KEY = "suanli.lang";
export const LANGS = { en: "English", zh: "中文" };

export function pickLang() {
  const stored = localStorage.getItem(KEY);
  if (stored && LANGS[stored]) return stored;
  for (const l of navigator.languages ?? [navigator.language ?? "en"]) {
    const p = String(l).toLowerCase();
    if (p.startsWith("zh")) return "zh";
    if (p.startsWith("en")) return "en";
  }
  return "en";
}

let lang = "en";

export function setLang(l, remember = false) {
  lang = LANGS[l] ? l : "en";
  if (remember) localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

export function getLang() {
  return lang;
}

// The BCP 47 tag for Intl.
export function locale() {
  return lang === "zh" ? "zh-CN" : "en-US";
}

// [English, 中文]
const S = {
  // shell
  "app.title": ["suanli 算力 dashboard", "suanli 算力 控制台"],
  "brand.sub": ["dashboard", "控制台"],
  "brand.tip": ["suanli (算力): compute power", "suanli（算力）"],
  "nav.label": ["Views", "视图"],
  "nav.network": ["Network", "网络"],
  "nav.jobs": ["Jobs", "作业"],
  "nav.submit": ["Submit a job", "提交作业"],
  "nav.usage": ["Usage & invoice", "用量与账单"],
  "nav.tenants": ["Tenants & invoices", "租户与账单"],
  "who.operator": ["operator", "运营方"],
  "who.tenant": ["tenant {name}", "租户 {name}"],
  "signout": ["Sign out", "退出"],
  "lang.switch": ["Language", "语言"],
  "status.live": ["live · updated {time}", "实时 · 更新于 {time}"],
  "times.note": ["Times are Beijing time (UTC+8), 24-hour.", "时间均为北京时间（UTC+8），24 小时制。"],
  // login
  "login.h1": ["Sign in", "登录"],
  "login.text": [
    "Paste a token from <code>suanli admin create-tenant</code> (a tenant: its own jobs and bill) or <code>suanli admin create-admin-token</code> (the operator: everything). It stays in this tab only (sessionStorage).",
    "粘贴由 <code>suanli admin create-tenant</code>（租户：只看自己的作业和账单）或 <code>suanli admin create-admin-token</code>（运营方：全部）生成的令牌。令牌只保存在本标签页（sessionStorage）。"],
  "login.token": ["Token", "令牌"],
  "login.button": ["Sign in", "登录"],
  "login.unknown": ["Unknown token.", "无效的令牌。"],
  "login.expired": ["The token is no longer valid.", "令牌已失效。"],
  // network
  "network.h1": ["Network", "算力网络"],
  "network.map": ["Map of the network", "网络地图"],
  "network.legend.share": ["renewable now", "当前可再生能源占比"],
  "network.legend.consumer": ["consumer city", "用户城市"],
  "network.legend.flow": ["job data flow", "作业数据流"],
  "network.legend.link": ["link", "链路"],
  "network.sites": ["Sites", "站点"],
  "network.summary_one": ["{n} site, {up} up; {gpus} GPUs, {used} in use, {free} free; {flows} active data flow.",
                          "{n} 个站点，{up} 个在线；共 {gpus} 块 GPU，{used} 块在用，{free} 块空闲；{flows} 条活跃数据流。"],
  "network.summary_other": ["{n} sites, {up} up; {gpus} GPUs, {used} in use, {free} free; {flows} active data flows.",
                            "{n} 个站点，{up} 个在线；共 {gpus} 块 GPU，{used} 块在用，{free} 块空闲；{flows} 条活跃数据流。"],
  "network.legend.down": ["site down (no GPUs offered)", "站点离线（不提供 GPU）"],
  "card.down": ["Down: its GPUs are not offered until its agent is back.", "离线：代理恢复前不提供 GPU。"],
  "card.battery_share": ["battery now", "当前储能放电"],
  "tip.free": ["{free} free", "{free} 块空闲"],
  "network.table": ["The map as a table", "地图数据表"],
  "site.up": ["up", "在线"],
  "site.down": ["down", "离线"],
  "site.drained": ["drained", "已排空"],
  "card.free": ["{free} free / {count}", "空闲 {free} / {count}"],
  "card.per_gpu_h": ["{price}/GPU-h", "{price}/GPU·时"],
  "card.pue": ["PUE", "PUE"],
  "card.load": ["load this hour", "本小时负载"],
  "card.renewables": ["renewables now", "当前可再生能源"],
  "card.of": ["of {basis}", "（占{basis}）"],
  "card.battery": ["battery", "储能电池"],
  "card.carbon": ["grid carbon now", "当前电网碳强度"],
  "card.price": ["grid price now", "当前电价"],
  "basis.this hour's load": ["this hour's load", "本小时负载"],
  "basis.full load": ["full load", "满载"],
  "tip.link": ["{a} ↔ {b}: {gbps} Gbit/s, {ms} ms, {price}/GB", "{a} ↔ {b}：{gbps} Gbit/s，{ms} 毫秒，{price}/GB"],
  "tip.link.jobs": ["; {n} active job(s), {gb} GB", "；{n} 个活跃作业，{gb} GB"],
  "tip.flow": ["{a} → {b}: {n} active job(s), {gb} GB of data", "{a} → {b}：{n} 个活跃作业，{gb} GB 数据"],
  "tip.city": ["{city}: consumer city", "{city}：用户城市"],
  "tip.city.jobs": [", {n} active job(s) from here", "，{n} 个活跃作业来自此地"],
  "tip.gpus": ["GPUs {used} used / {count}", "GPU 已用 {used} / {count}"],
  "col.site": ["site", "站点"],
  "col.city": ["city", "城市"],
  "col.state": ["state", "状态"],
  "col.gpus_used": ["GPUs used / total", "GPU 已用 / 总数"],
  "col.share": ["renewable share now", "当前可再生能源占比"],
  // site
  "site.h1": ["Site {site}", "站点 {site}"],
  "site.back": ["← network", "← 返回网络"],
  "site.range": ["Window", "时间范围"],
  "site.range.past": ["past {h} h and next 48 h", "过去 {h} 小时与未来 48 小时"],
  "site.range.24": ["24 h past · 48 h ahead", "过去 24 小时 · 未来 48 小时"],
  "site.range.72": ["72 h past · 48 h ahead", "过去 72 小时 · 未来 48 小时"],
  "site.range.168": ["7 d past · 48 h ahead", "过去 7 天 · 未来 48 小时"],
  "site.note": ["Hourly slots, Beijing time; shaded: the forecast (planned jobs and forecast renewables, tariff and carbon). The vertical line is now.",
                "按小时统计，北京时间；阴影部分为预测（计划中的作业及预测的可再生能源、电价与碳强度）。竖线表示现在。"],
  "site.energy": ["Energy: load vs renewables vs battery vs grid (kWh per hour)", "能源：负载、可再生能源、储能与电网（每小时 kWh）"],
  "site.prices": ["Tariff and grid carbon intensity", "电价与电网碳强度"],
  "site.totals": ["Totals over the window", "时间范围内合计"],
  "site.status": ["Agent", "代理"],
  "site.is_up": ["Up: its agent reports in.", "在线：代理正常上报。"],
  "site.is_down": ["Down: no heartbeat from its agent. The scheduler places nothing here until it is back.",
                   "离线：代理没有心跳。恢复之前调度器不会向此站点分配作业。"],
  "site.is_drained": ["Drained: it takes no new jobs.", "已排空：不再接收新作业。"],
  "site.last_seen": ["last heartbeat", "最近心跳"],
  "site.never": ["never", "从未"],
  "site.jobs": ["Jobs at this site", "此站点的作业"],
  "site.city_line": ["{city} · PUE {pue} · full load {kw} kW", "{city} · PUE {pue} · 满载 {kw} kW"],
  "s.renewables used": ["renewables used", "已用可再生能源"],
  "s.battery discharge": ["battery discharge", "储能放电"],
  "s.grid": ["grid", "电网"],
  "s.battery charge": ["battery charge", "储能充电"],
  "s.curtailed": ["curtailed", "弃电"],
  "s.load": ["load", "负载"],
  "s.renewables available": ["renewables available", "可用可再生能源"],
  "s.soc": ["battery state of charge", "储能电量"],
  "s.tariff": ["tariff", "电价"],
  "s.grid carbon": ["grid carbon", "电网碳强度"],
  "s.now": ["now", "现在"],
  "s.forecast": ["forecast", "预测"],
  "t.load": ["load", "负载"],
  "t.renewables": ["from renewables (solar, wind)", "来自可再生能源（光伏、风电）"],
  "t.battery": ["from the battery", "来自储能电池"],
  "t.grid": ["from the grid", "来自电网"],
  "t.curtailed": ["curtailed", "弃电"],
  "t.carbon": ["grid carbon", "电网碳排放"],
  "chart.energy.summary": ["Energy over {n} hours: load {load} kWh, {ren} kWh from renewables (solar and wind), {bat} kWh from the battery, {grid} kWh from the grid, {cur} kWh curtailed.",
                           "{n} 小时内能源：负载 {load} kWh，可再生能源（光伏与风电）{ren} kWh，储能电池 {bat} kWh，电网 {grid} kWh，弃电 {cur} kWh。"],
  "chart.prices.summary": ["Tariff from {tmin} to {tmax} per kWh; grid carbon from {cmin} to {cmax} kg CO₂e/kWh.",
                           "电价每 kWh {tmin} 至 {tmax}；电网碳强度 {cmin} 至 {cmax} kg CO₂e/kWh。"],
  "chart.data": ["Chart data", "图表数据"],
  "meters.h2": ["Meters: measured vs forecast vs model", "电表：实测、预测与模型对比"],
  "meters.renewables": ["Renewable power, kW (hourly mean)", "可再生能源功率，kW（小时均值）"],
  "meters.grid": ["Grid import, kW (hourly mean)", "电网购电，kW（小时均值）"],
  "meters.measured": ["measured", "实测"],
  "meters.forecast": ["forecast", "预测"],
  "meters.model": ["model", "模型"],
  "meters.none": ["No meter readings: the model is used.", "没有电表读数：使用模型。"],
  "meters.note.readings": ["Hours in Beijing time. Measured: the site's meters, where they covered at least half the hour. Forecast: what the scheduler plans with, issued this hour from the readings; only the hours ahead are forecast (past forecasts are not kept). Model: the network file's.",
                           "北京时间，按小时。实测：站点电表读数（覆盖至少半小时的时段）。预测：调度器使用的预测，本小时根据读数发布；仅预测未来时段（过去的预测不保留）。模型：网络文件中的模型。"],
  "meters.note.model": ["Hours in Beijing time. Measured: the site's meters, where they covered at least half the hour. Forecast: what the scheduler plans with; no recent readings when it was issued, so it is the model; only the hours ahead are forecast (past forecasts are not kept). Model: the network file's.",
                        "北京时间，按小时。实测：站点电表读数（覆盖至少半小时的时段）。预测：调度器使用的预测；发布时没有近期读数，因此与模型相同；仅预测未来时段（过去的预测不保留）。模型：网络文件中的模型。"],
  "meters.renewables.summary": ["Renewable power: measured {mkw} kW on average over {mn} hours; forecast {fkw} kW over the {fn} hours ahead; model {nkw} kW over {nn} hours.",
                                "可再生能源功率：实测 {mn} 小时平均 {mkw} kW；未来 {fn} 小时预测平均 {fkw} kW；模型 {nn} 小时平均 {nkw} kW。"],
  "meters.grid.summary": ["Grid import: measured {mkw} kW on average over {mn} hours; model {nkw} kW over {nn} hours.",
                          "电网购电：实测 {mn} 小时平均 {mkw} kW；模型 {nn} 小时平均 {nkw} kW。"],
  "meters.table": ["The charts as a table", "图表数据表"],
  "meters.col.measured": ["renewables measured, kW", "可再生能源实测，kW"],
  "meters.col.forecast": ["renewables forecast, kW", "可再生能源预测，kW"],
  "meters.col.model": ["renewables model, kW", "可再生能源模型，kW"],
  "meters.col.grid_measured": ["grid import measured, kW", "电网购电实测，kW"],
  "meters.col.grid_model": ["grid import model, kW", "电网购电模型，kW"],
  "col.hour": ["hour", "时段"],
  // jobs
  "jobs.h1": ["Jobs", "作业"],
  "jobs.state": ["state", "状态"],
  "jobs.site": ["site", "站点"],
  "jobs.tenant": ["tenant (part of the name)", "租户（名称的一部分）"],
  "jobs.search": ["search", "搜索"],
  "jobs.search.ph": ["id, name, reason…", "编号、名称、原因…"],
  "jobs.any": ["any", "全部"],
  "jobs.filter": ["Filter", "筛选"],
  "jobs.more": ["Showing the first 500 jobs that match.", "仅显示前 500 个匹配的作业。"],
  "jobs.none": ["No jobs match.", "没有匹配的作业。"],
  "jobs.count_one": ["{n} job", "{n} 个作业"],
  "jobs.count_other": ["{n} jobs", "{n} 个作业"],
  "jobs.sort": ["sort by {col}", "按{col}排序"],
  "col.id": ["id", "编号"],
  "col.name": ["name", "名称"],
  "col.tenant": ["tenant", "租户"],
  "col.site_gpu": ["site / GPU", "站点 / GPU"],
  "col.gpus": ["GPUs", "GPU 数"],
  "col.submitted": ["submitted", "提交时间"],
  "col.cost": ["cost so far", "累计费用"],
  "col.carbon": ["carbon, kg", "碳排放，kg"],
  "col.why": ["why", "原因"],
  // job
  "job.title": ["Job {id}", "作业 {id}"],
  "job.loading": ["Loading job {id}…", "正在加载作业 {id}…"],
  "job.notfound": ["No job {id}", "没有作业 {id}"],
  "job.notfound.text": ["A tenant sees only its own jobs.", "租户只能看到自己的作业。"],
  "job.all": ["All jobs", "全部作业"],
  "job.tenant": ["tenant {name}", "租户 {name}"],
  "job.cancel": ["Cancel", "取消作业"],
  "job.cancel.ask": ["Cancel job {id}? Its run stops and cannot be resumed.", "确定取消作业 {id}？运行会停止且无法恢复。"],
  "job.cancel.yes": ["Yes, cancel it", "确定取消"],
  "job.cancel.no": ["Keep it", "保留"],
  "job.placement": ["Placement", "分配"],
  "job.site": ["site", "站点"],
  "job.gpu": ["GPU type", "GPU 型号"],
  "job.start": ["start", "开始"],
  "job.end": ["end", "结束"],
  "job.origin": ["origin", "来源城市"],
  "job.work": ["work", "工作量"],
  "job.work.v": ["{h} h on a speed-1 GPU", "{h} 小时（速度为 1 的 GPU）"],
  "job.data": ["data", "数据"],
  "job.deadline": ["deadline", "截止时间"],
  "job.none": ["none", "无"],
  "job.command": ["command", "命令"],
  "job.cost": ["Cost and carbon so far", "累计费用与碳排放"],
  "job.total": ["total", "合计"],
  "job.rental": ["GPU rental", "GPU 租金"],
  "job.energy": ["energy", "电费"],
  "job.transfer": ["transfer", "传输"],
  "job.gputime": ["GPU time", "GPU 时长"],
  "job.kwh": ["energy use", "用电量"],
  "job.kwh.v": ["{kwh} kWh (grid {grid}, renewable {ren}, battery {bat})", "{kwh} kWh（电网 {grid}，可再生 {ren}，储能 {bat}）"],
  "job.estimated": ["so far, an estimate: the run is priced as it would be metered now; it is billed when it ends",
                    "截至目前的估算：按现在计量的方式计价；运行结束时计费"],
  "job.output": ["output", "输出"],
  "job.output.v": ["{site}: {path} ({bytes} bytes)", "{site}：{path}（{bytes} 字节）"],
  "job.carbon": ["carbon", "碳排放"],
  "job.why": ["Why here: the scheduler's explanation", "为何在此：调度器的解释"],
  "job.lifecycle": ["Lifecycle", "生命周期"],
  "state.suspended": ["suspended (waits to resume)", "已暂停（等待恢复）"],
  "plan.h": ["Plan in pieces", "分段运行计划"],
  "plan.line": ["Runs in {n} pieces to use cheaper, cleaner hours; stops at each piece's end keeping its checkpoint.",
                "分 {n} 段运行，以利用更便宜、更清洁的时段；每段结束时停止并保留检查点。"],
  "plan.suspended": ["Suspended at the end of its piece: it waits to resume from its checkpoint.",
                     "已在本段结束时暂停：等待从检查点恢复。"],
  "plan.piece": ["piece", "分段"],
  "plan.status": ["status", "状态"],
  "plan.done": ["done", "已完成"],
  "plan.running": ["running", "运行中"],
  "plan.next": ["next", "下一段"],
  "plan.later": ["later", "之后"],
  "plan.replan": ["next: being planned again", "下一段：重新规划中"],
  "plan.stopped": ["stopped", "已停止"],
  "col.at": ["at", "时间"],
  "col.ctl_h": ["controller h", "控制器小时"],
  "col.from": ["from", "从"],
  "col.to": ["to", "到"],
  "col.reason": ["reason", "原因"],
  "ex.undecided": ["Not decided yet: the job waits for the scheduler's next tick.", "尚未决定：作业等待调度器的下一轮。"],
  "ex.by": ["by", "策略"],
  "decision.place": ["place", "分配"],
  "decision.defer": ["defer", "推迟"],
  "decision.reject": ["reject", "拒绝"],
  "decision.preempt": ["preempt", "抢占"],
  "ex.at": ["at {time}", "于 {time}"],
  "ex.chosen": ["Chosen: {where}, start {start}, score {score} for the planned run", "选定：{where}，开始于 {start}，计划运行评分 {score}"],
  "ex.weighed_one": ["The policy weighed {n} candidate (a site and GPU type at a start time).", "策略评估了 {n} 个候选（站点、GPU 型号与开始时间）。"],
  "ex.weighed_other": ["The policy weighed {n} candidates (a site and GPU type at a start time).", "策略评估了 {n} 个候选（站点、GPU 型号与开始时间）。"],
  "ex.kept_one": ["It kept the best {n} for this explanation.", "本解释保留了最优的 {n} 个。"],
  "ex.kept_other": ["It kept the best {n} for this explanation.", "本解释保留了最优的 {n} 个。"],
  "ex.persite": ["Best candidate of each site and GPU type, and why it lost", "各站点与 GPU 型号的最优候选及落选原因"],
  "ex.unscored": ["Passed the filters, but no candidate", "通过筛选但没有候选"],
  "ex.lost.chosen": ["chosen", "已选定"],
  "ex.lost.more": ["{d} more: {parts}", "贵 {d}：{parts}"],
  "ex.lost.tie": ["as cheap; lost on the tie-break (earlier start, lower latency)", "同价；按次序规则落选（更早开始、更低时延）"],
  "ex.lost.backup": ["the chosen site is the backup of the job's failed site (preferred within the margin)", "选定站点是作业故障站点的备份（在余量内优先）"],
  "ex.lost.cheaper": ["{d} less, but not chosen", "便宜 {d}，但未选定"],
  "ex.all": ["Every candidate kept, best first", "保留的全部候选（由优到劣）"],
  "ex.notkept_one": ["Scored, but no candidate among the best kept: {sites}.", "已评估但未进入保留的最优候选：{sites}。"],
  "ex.notkept_other": ["Scored, but no candidate among the best kept: {sites}.", "已评估但未进入保留的最优候选：{sites}。"],
  "ex.vs": ["+{d} vs the chosen", "比选定高 {d}"],
  "ex.none": ["No candidate was scored.", "没有候选被评估。"],
  "ex.leftout": ["Sites left out, and why", "被排除的站点及原因"],
  "ex.leftout.none": ["None: every site was a candidate.", "无：所有站点都是候选。"],
  "ex.parts_one": ["Score parts of {n} candidate, in yuan: {list}.", "{n} 个候选的评分构成（元）：{list}。"],
  "ex.parts_other": ["Score parts of {n} candidates, in yuan: {list}.", "{n} 个候选的评分构成（元）：{list}。"],
  "col.cand": ["candidate site", "候选站点"],
  "col.gpu": ["GPU", "GPU"],
  "col.start": ["start", "开始"],
  "col.end": ["end", "结束"],
  "col.score": ["score (planned run)", "评分（计划运行）"],
  "col.vs": ["vs chosen", "与选定相比"],
  "col.cands": ["candidates kept", "保留候选数"],
  "col.whylost": ["why not chosen", "落选原因"],
  "col.pool": ["site / GPU type", "站点 / GPU 型号"],
  "part.rental": ["rental", "租金"],
  "part.transfer": ["transfer", "传输"],
  "part.energy": ["energy", "电费"],
  "part.carbon": ["carbon", "碳"],
  "part.delay": ["delay", "延迟"],
  "part.lateness": ["lateness", "逾期"],
  "part.late": ["lateness", "逾期"],
  "part.wait": ["waiting", "等待"],
  "part.room": ["room", "占位"],
  // submit
  "submit.h1": ["Submit a job", "提交作业"],
  "submit.operator": ["Jobs are submitted with a tenant token; this is the operator's.", "作业需使用租户令牌提交；当前是运营方令牌。"],
  "submit.name": ["name", "名称"],
  "submit.command": ["command", "命令"],
  "submit.gpus": ["GPUs", "GPU 数"],
  "submit.work": ["work (hours on a speed-1 GPU)", "工作量（速度为 1 的 GPU 上的小时数）"],
  "submit.origin": ["origin city", "来源城市"],
  "submit.types": ["GPU types (none ticked: any)", "GPU 型号（不勾选则任意）"],
  "submit.class": ["class", "类别"],
  "submit.deadline": ["deadline (hours after submission, optional)", "截止时间（提交后的小时数，可选）"],
  "submit.data": ["data to move (GB)", "需传输的数据（GB）"],
  "submit.rtt": ["max round trip (ms, optional)", "最大往返时延（毫秒，可选）"],
  "submit.ckpt": ["checkpoint every (h, optional)", "检查点间隔（小时，可选）"],
  "submit.button": ["Submit", "提交"],
  "submit.wait": ["may wait up to (h; empty: your tenant's default)", "最多可等待（小时；留空：租户默认）"],
  "submit.quote": ["Quote", "报价"],
  "quote.h2": ["Quote", "报价"],
  "quote.caption": ["What the {policy} policy would do now, booking nothing", "{policy} 策略此刻的安排（不预订资源）"],
  "quote.now": ["start now", "立即开始"],
  "quote.may_wait": ["may wait {h} h", "可等待 {h} 小时"],
  "quote.window": ["if it", "条件"],
  "quote.start": ["start (Beijing time)", "开始（北京时间）"],
  "quote.where": ["site / GPU", "站点 / GPU"],
  "quote.cost": ["cost", "费用"],
  "quote.carbon": ["carbon", "碳排放"],
  "quote.choose": ["Choose", "选择"],
  "quote.refused": ["a submit would be refused now", "此刻提交将被拒绝"],
  // tenant
  "tenant.h1": ["Usage and invoice", "用量与账单"],
  "tenant.h1.admin": ["Tenants and invoices", "租户与账单"],
  "tenant.month": ["month", "月份"],
  "tenant.tenant": ["tenant", "租户"],
  "tenant.all": ["all", "全部"],
  "tenant.show": ["Show", "显示"],
  "tenant.range": ["The invoice covers one calendar month (UTC, by the month a run ended).", "账单按自然月统计（UTC，按运行结束的月份）。"],
  "tenant.sub": ["{month} (UTC, by the month a run ended)", "{month}（UTC，按运行结束的月份）"],
  "tenant.csv": ["Download CSV", "下载 CSV"],
  "tenant.csv.label": ["Download CSV: {tenant}'s invoice", "下载 CSV：{tenant} 的账单"],
  "tenant.total": ["total", "合计"],
  "tenant.parts": ["GPU {gpu} · energy {energy} · transfer {transfer}", "GPU {gpu} · 电费 {energy} · 传输 {transfer}"],
  "tenant.budget": [" · budget {b}", " · 预算 {b}"],
  "tenant.gpuh": ["GPU-h", "GPU·时"],
  "tenant.where": ["kg CO₂e where the jobs ran", "kg CO₂e（作业运行地）"],
  "tenant.avoided": ["kg CO₂e avoided", "kg CO₂e 减排"],
  "tenant.vs": ["vs {kg} kg on the origins' grids", "相对来源地电网的 {kg} kg"],
  "tenant.unknown": ["; {n} job(s) whose origin names no province left out", "；{n} 个来源未注明省份的作业未计入"],
  "tenant.none": ["No run ended in this month.", "本月没有结束的运行。"],
  "tenant.notenants": ["No tenants.", "没有租户。"],
  "tenant.chart": ["carbon per job: where it ran vs on its origin's grid", "每个作业的碳排放：运行地与来源地电网对比"],
  "tenant.chart.summary": ["Carbon per job, where it ran vs at its origin: {list}.", "每个作业的碳排放（运行地 / 来源地）：{list}。"],
  "tenant.ran": ["where it ran", "运行地"],
  "tenant.origin": ["at origin", "来源地"],
  "tenant.job": ["job {id} ({origin})", "作业 {id}（{origin}）"],
  "col.job": ["job", "作业"],
  "col.basis": ["energy basis", "电量依据"],
  "basis.metered": ["metered", "计量"],
  "basis.modelled": ["modelled", "模型"],
  "basis.metered.title": ["energy and carbon from the site's meters", "电量与碳排放来自站点电表"],
  "basis.modelled.title": ["energy and carbon from the network file's models (no readings cover the run, or not yet)",
                           "电量与碳排放来自网络文件的模型（尚无读数覆盖该运行）"],
  "basis.mixed.title": ["some runs metered, some modelled", "部分运行按电表计量，部分按模型"],
  "tenant.trueup": ["true-up", "电表补差"],
  "tenant.trueup.title": ["a run of a closed month re-priced from the meters, less what that month billed",
                          "已结账月份的运行按电表重新计价，减去该月已计费用"],
  "col.attempts": ["runs", "运行次数"],
  "col.gpuh": ["GPU-h", "GPU·时"],
  "col.kwh": ["kWh", "kWh"],
  "col.kg": ["kg CO₂e", "kg CO₂e"],
  "col.gpu_cny": ["GPU", "GPU"],
  "col.energy_cny": ["energy", "电费"],
  "col.transfer_cny": ["transfer", "传输"],
  "col.total_cny": ["total", "合计"],
  "tenant.runs_one": ["{n} run", "{n} 次运行"],
  "tenant.runs_other": ["{n} runs", "{n} 次运行"],
};

const STATE_ZH = { PENDING: "等待中", PLACED: "已分配", TRANSFERRING: "传输中", RUNNING: "运行中", SUCCEEDED: "成功",
                   FAILED: "失败", CANCELLED: "已取消", PREEMPTED: "被抢占" };

export function stateName(s) {
  return lang === "zh" ? (STATE_ZH[s] ?? s) : s;
}

// t("key", {name: value}); with `n` among the values, the plural form of the language.
export function t(key, vars = {}) {
  let entry = S[key];
  if (vars.n !== undefined && (S[`${key}_one`] || S[`${key}_other`])) {
    const form = new Intl.PluralRules(locale()).select(Number(vars.n));
    entry = S[`${key}_${form}`] ?? S[`${key}_other`];
  }
  if (!entry) return key;
  const s = entry[lang === "zh" ? 1 : 0];
  return s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined ? m : String(vars[k])));
}

// City ids of the network files -> Chinese names, and provinces; an id not in the table is shown
// as it is. One table (src/suanli/i18n/places_zh.json), shared with the simulator's HTML reports.
const CITY_ZH = PLACES.cities;
const PROVINCE_ZH = PLACES.provinces;

export function cityName(id) {
  if (lang !== "zh") return id ?? "";
  return CITY_ZH[id] ?? CITY_ZH[String(id).toLowerCase()] ?? id ?? "";
}

export function provinceName(p) {
  return lang === "zh" ? (PROVINCE_ZH[p] ?? p) : p;
}

// A site id "qingyang-1" -> "庆阳-1" (its city's name, then the rest of the id).
export function siteName(id) {
  if (lang !== "zh" || !id) return id ?? "";
  const m = /^([a-z]+)(.*)$/i.exec(id);
  return m && CITY_ZH[m[1].toLowerCase()] ? CITY_ZH[m[1].toLowerCase()] + m[2] : id;
}

// The scheduler's reasons are English text from the service; the common ones are translated,
// others are shown as they are.
const REASONS = [
  [/^(\w[\w-]*): best of (\d+) candidates?(?:; only ([\w-]+) could host it|; (\d+) sites could host it)?$/,
    (m) => (lang === "zh"
      ? `${m[1]}：${m[2]} 个候选中的最优` + (m[3] ? `；仅 ${siteName(m[3])} 可承载` : m[4] ? `；${m[4]} 个站点可承载` : "")
      : `${m[1]}: best of ${m[2]} ${Number(m[2]) === 1 ? "candidate" : "candidates"}` +
        (m[3] ? `; only ${m[3]} could host it` : m[4] ? `; ${m[4]} sites could host it` : ""))],
  [/^capacity: no free GPUs for the whole run in the hours it looked at$/,
    () => (lang === "zh" ? "容量：在考察的时段内没有足够的空闲 GPU 完成整个运行" : null)],
  [/^cost: no run there costs less than ([\d.]+) CNY, above the chosen's ([\d.]+) \(not priced further\)$/,
    (m) => (lang === "zh" ? `成本：此处任何运行都不低于 ¥${m[1]}，高于选定的 ¥${m[2]}（未进一步计价）` : null)],
  [/^outage: site is down$/, () => (lang === "zh" ? "故障：站点离线" : null)],
  [/^every site that could host it is down$/, () => (lang === "zh" ? "所有可承载它的站点均离线" : null)],
  [/^submitted$/, () => (lang === "zh" ? "已提交" : null)],
  [/^suspended: waits to resume from its checkpoint \(its plan's next piece: ([\d.]+) h\); its rest is planned again$/,
    (m) => (lang === "zh" ? `已暂停：等待从检查点恢复（计划的下一段：${m[1]} 小时）；其余部分重新规划` : null)],
  // a run stopped by its plan (service/controller.py `_suspend`, `_stop_planned`, `preempt`)
  [/^suspended for price and carbon: its plan in pieces stops it on ([\w-]+)\/([\w-]+) at the end of its piece, ([\d.]+) h, and resumes it at ([\d.]+) h, where the energy costs less as forecast; kept ([\d.]+) h of work(?: \(to its checkpoint at ([\d.]+) h\))?$/,
    (m) => (lang === "zh"
      ? `为电价与碳排放暂停：分段计划在 ${siteName(m[1])}/${m[2]} 上于本段结束（${m[3]} 小时）时停止，` +
        `并在 ${m[4]} 小时恢复，那时预测的能源更便宜；保留 ${m[5]} 小时的工作` + (m[6] ? `（至 ${m[6]} 小时的检查点）` : "")
      : null)],
  [/^stopped at the end of its plan: its run on ([\w-]+)\/([\w-]+) was booked to ([\d.]+) h for the work its group's learned lengths predicted, and it has not ended; its rest is planned again; kept ([\d.]+) h of work(?: \(to its checkpoint at ([\d.]+) h\))?$/,
    (m) => (lang === "zh"
      ? `按计划结束时停止：它在 ${siteName(m[1])}/${m[2]} 上的运行按同组已学得的时长预订到 ${m[3]} 小时，` +
        `尚未完成；其余部分重新规划；保留 ${m[4]} 小时的工作` + (m[5] ? `（至 ${m[5]} 小时的检查点）` : "")
      : null)],
  [/^stopped at the end of its plan: its rest, from its checkpoint, is planned again$/,
    () => (lang === "zh" ? "按计划结束时停止：其余部分从检查点起重新规划" : null)],
  [/^exit code (\d+)$/, (m) => (lang === "zh" ? `退出码 ${m[1]}` : null)],
  [/^dispatched to the agent of ([\w-]+) \(fence (\d+)\)$/, (m) => (lang === "zh" ? `已下发到 ${siteName(m[1])} 的代理（fence ${m[2]}）` : null)],
  [/^cancelled by the tenant$/, () => (lang === "zh" ? "租户已取消" : null)],
];

export function reasonText(s) {
  if (!s) return s ?? "";
  for (const [re, f] of REASONS) {
    const m = re.exec(s);
    if (m) return f(m) ?? s;
  }
  return s;
}
