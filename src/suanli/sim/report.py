"""A self-contained HTML report of a simulated run (`suanli sim ... --report FILE.html`).

Plotly draws the charts; its JavaScript is embedded once in the page, so the file opens from
disk with no server and no network. The page shows the run's metrics, the network (sites by
position, sized by GPUs, coloured by renewable share), each site's hourly energy balance
(load served by renewables, battery and grid; curtailment; battery state; tariff and carbon),
GPUs busy per site over time, and the cost parts. Everything is read from the run's
`Accounts` and segments: the numbers are the accounting's, not recomputed here.

In English (`lang="en"`) or Simplified Chinese (`lang="zh-CN"`): the Chinese page names cities
and sites as the dashboard does (one table, suanli/i18n/places_zh.json), gives money in ¥, and
times as 24-hour Beijing time (Asia/Shanghai) where the scenario has a `start`.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from suanli.accounting import Accounts
from suanli.model.scenario import Scenario
from suanli.model.schedule import Segment

PARTS = ("GPU rental", "energy", "transfer", "carbon price", "lateness", "unfinished", "demand response")
LANGS = ("en", "zh-CN")
SHANGHAI = ZoneInfo("Asia/Shanghai")

# the page's words in Chinese (English is the key itself)
ZH = {
    "GPU rental": "GPU 租金", "energy": "电费", "transfer": "传输", "carbon price": "碳价", "lateness": "逾期",
    "unfinished": "未完成", "demand response": "需求响应", "cities": "城市", "sites": "站点",
    "renewable share": "可再生能源占比", "longitude": "经度", "latitude": "纬度", "hour": "小时",
    "The network (sites sized by GPUs, coloured by renewable share)":
        "网络（站点大小表示 GPU 数，颜色表示可再生能源占比）",
    "GPUs busy per site (average over each hour)": "各站点在用 GPU（每小时平均）",
    "renewables used": "可再生能源（光伏、风电）", "battery": "储能电池", "grid": "电网",
    "renewables available": "可用可再生能源", "curtailed": "弃电", "battery kWh": "电池电量 kWh",
    "tariff CNY/kWh": "电价 ¥/kWh", "carbon kg/kWh": "碳强度 kg/kWh",
    "{site}: load (kWh per hour) by source, tariff and carbon": "{site}：按来源的负载（每小时 kWh）、电价与碳强度",
    "The objective, part by part (CNY)": "目标函数的组成（¥）", "Metrics": "指标",
    "suanli: {name} with {policy}": "suanli：{name}，策略 {policy}",
    "{sites} sites, {jobs} jobs, horizon {h} h, {T} hourly slots accounted. Numbers follow the suanli model "
    "(docs/MODEL.md).": "{sites} 个站点，{jobs} 个作业，时长 {h} 小时，共核算 {T} 个小时时段。数字遵循 suanli 模型"
    "（docs/MODEL.md）。",
    "Times are Beijing time (Asia/Shanghai), 24-hour.": "时间为北京时间（Asia/Shanghai），24 小时制。",
    "{name}: {gpus} GPUs, renewable {share}, utilisation {util}":
        "{name}：{gpus} 块 GPU，可再生能源 {share}，利用率 {util}",
    # the side-by-side page (`suanli bench --reports`)
    "suanli: {name}, policies side by side": "suanli：{name}，各策略对比",
    "{sites} sites, {jobs} jobs, horizon {h} h. Numbers follow the suanli model (docs/MODEL.md); the best of "
    "each row is in bold.": "{sites} 个站点，{jobs} 个作业，时长 {h} 小时。数字遵循 suanli 模型（docs/MODEL.md）；"
    "每行最优者以粗体显示。",
    "grid energy, all sites (kWh per hour)": "电网电量，全部站点（每小时 kWh）",
    "renewables used, all sites (kWh per hour)": "可再生能源电量，全部站点（每小时 kWh）",
    "GPUs busy per site: {policy}": "各站点在用 GPU：{policy}",
    "Lower bound {bound} ({status}); from `suanli bench`.": "下界 {bound}（{status}）；来自 `suanli bench`。",
}
METRICS_ZH = {
    "gpu_cost_cny": "GPU 租金", "transfer_cost_cny": "传输费用", "energy_cost_cny": "电费", "total_cost_cny": "总费用",
    "energy_kwh": "用电量 kWh", "grid_kwh": "电网电量 kWh", "renewable_used_kwh": "可再生能源电量 kWh",
    "curtailed_kwh": "弃电 kWh", "carbon_kg": "碳排放 kg", "dr_violation_kwh": "超出电网上限 kWh",
    "jobs_total": "作业总数", "jobs_finished": "已完成作业", "jobs_unfinished": "未完成作业",
    "late_gpu_h": "逾期 GPU·时", "deadline_misses": "错过截止时间", "mean_jct_h": "平均完成时间（小时）",
    "p95_jct_h": "P95 完成时间（小时）", "gpu_utilization": "GPU 利用率", "objective_cny": "目标函数",
    "wait_excess_gpu_h": "超出等待时限 GPU·时", "carbon_location_based_kg": "基于位置的碳排放 kg",
    "carbon_origin_grid_kg": "按来源地电网的碳排放 kg", "carbon_avoided_vs_origin_kg": "相比来源地避免的碳排放 kg",
    "carbon_origin_unknown_jobs": "来源省份未知的作业",
}


def report_paths(path: str, lang: str) -> list[tuple[str, str]]:
    """(file, language) of each report `--lang` asks for (`suanli sim --report`, `suanli bench
    --reports`): `en` or `zh-CN` writes FILE in that language, `both` FILE in English and FILE's
    name with `.zh-CN` before its suffix in Chinese (report.html, report.zh-CN.html). ValueError,
    one line, for any other `lang`."""
    if lang not in (*LANGS, "both"):
        raise ValueError(f"{lang!r} is not en, zh-CN or both")
    if lang != "both":
        return [(path, lang)]
    p = Path(path)
    return [(path, "en"), (str(p.with_name(f"{p.stem}.zh-CN{p.suffix or '.html'}")), "zh-CN")]


@cache
def places_zh() -> dict[str, dict[str, str]]:
    """The Chinese names of cities and provinces the dashboard uses (web/src/i18n.js reads the same file)."""
    return json.loads((resources.files("suanli") / "i18n" / "places_zh.json").read_text(encoding="utf-8"))


class Words:
    """The page's language: words, place names, money and times."""

    def __init__(self, lang: str, scn: Scenario):
        if lang not in LANGS:
            raise ValueError(f"lang: {lang!r} is not one of {', '.join(LANGS)}")
        self.zh = lang == "zh-CN"
        self.scn = scn

    def __call__(self, text: str, **kw) -> str:
        return (ZH.get(text, text) if self.zh else text).format(**kw)

    def city(self, c: str) -> str:
        return places_zh()["cities"].get(c.lower(), c) if self.zh else c

    def site(self, sid: str) -> str:
        """`qingyang-1` -> 庆阳-1: its city's name, then the rest of the id (as the dashboard)."""
        if not self.zh:
            return sid
        head = sid.rstrip("-0123456789_")
        name = places_zh()["cities"].get(head.lower())
        return name + sid[len(head):] if name else sid

    def metric(self, key: str) -> str:
        return METRICS_ZH.get(key, key) if self.zh else key

    def money(self, v: float, digits: int = 0) -> str:
        """CNY: `1,234 CNY`, or `¥1,234` in Chinese."""
        return f"¥{v:,.{digits}f}" if self.zh else f"{v:,.{digits}f} CNY"

    def value(self, key: str, v: float) -> str:
        if self.zh and key.endswith("_cny"):
            return f"¥{v:,.2f}"
        if self.zh and key == "gpu_utilization":
            return f"{v:.1%}"
        return f"{v:,.2f}" if abs(v) >= 100 else f"{v:.4g}"

    def hours(self, n: int) -> list:
        """The x axis: hour numbers, or, in Chinese with a scenario start, Beijing times (24-hour)."""
        start = self.scn.start
        if not (self.zh and start is not None):
            return list(range(n))
        if start.tzinfo is None:
            start = start.replace(tzinfo=SHANGHAI)
        return [(start + timedelta(hours=h)).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") for h in range(n)]


def objective_parts(scn: Scenario, m: dict[str, float]) -> list[float]:
    """The objective's terms (MODEL.md §6), in the order of PARTS, CNY."""
    o = scn.objective
    return [m["gpu_cost_cny"], m["energy_cost_cny"], m["transfer_cost_cny"], o.carbon_cny_per_kg * m["carbon_kg"],
            o.late_cny_per_gpu_h * m["late_gpu_h"], o.unfinished_cny * m["jobs_unfinished"],
            o.dr_cny_per_kwh * m["dr_violation_kwh"]]


def _busy_gpus(scn: Scenario, segments: Sequence[Segment], slots: int) -> dict[str, np.ndarray]:
    """Average GPUs busy per site per slot."""
    out = {sid: np.zeros(slots) for sid in scn.sites}
    for s in segments:
        first, last = math.floor(s.start_h), min(slots, math.ceil(s.end_h))
        for t in range(max(first, 0), last):
            out[s.site][t] += s.gpus * (min(t + 1.0, s.end_h) - max(float(t), s.start_h))
    return out


def render_report(scn: Scenario, policy: str, segments: Sequence[Segment], accounts: Accounts,
                  lang: str = "en") -> str:
    """The page, in `lang` ("en" or "zh-CN")."""
    import plotly.graph_objects as go
    from plotly.io import to_html
    from plotly.subplots import make_subplots

    w = Words(lang, scn)
    m = accounts.metrics
    T = accounts.slots
    hours = w.hours(T)
    xtitle = "" if w.zh and scn.start is not None else w("hour")
    figs: list[tuple[str, go.Figure]] = []

    # the network: sites and consumer cities by position (no map tiles: nothing to fetch)
    net = go.Figure()
    for lk in scn.network.graph.edges(data=True):
        (a, b, _) = lk
        (la, oa), (lb, ob) = scn.cities[a], scn.cities[b]
        net.add_trace(go.Scatter(x=[oa, ob], y=[la, lb], mode="lines", line={"color": "#bbb", "width": 1},
                                 hoverinfo="skip", showlegend=False))
    site_cities = {s.city for s in scn.sites.values()}
    others = [c for c in scn.cities if c not in site_cities]
    net.add_trace(go.Scatter(x=[scn.cities[c][1] for c in others], y=[scn.cities[c][0] for c in others],
                             mode="markers+text", text=[w.city(c) for c in others], textposition="top center",
                             marker={"color": "#555", "size": 7, "symbol": "square"}, name=w("cities")))
    sm = accounts.site_metrics
    share = [sm[sid]["renewable_used_kwh"] / sm[sid]["energy_kwh"] if sm[sid]["energy_kwh"] else 0.0
             for sid in scn.sites]
    gpus = [sum(p.count for p in s.gpus.values()) for s in scn.sites.values()]
    net.add_trace(go.Scatter(
        x=[scn.cities[s.city][1] for s in scn.sites.values()], y=[scn.cities[s.city][0] for s in scn.sites.values()],
        mode="markers+text", text=[w.site(sid) for sid in scn.sites], textposition="bottom center", name=w("sites"),
        marker={"size": [8 + 4 * math.sqrt(g) for g in gpus], "color": share, "colorscale": "YlGn", "cmin": 0,
                "cmax": 1, "showscale": True, "colorbar": {"title": w("renewable share")}, "line": {"width": 1}},
        customdata=[[g, f"{sh:.0%}", f"{sm[sid]['gpu_utilization']:.0%}"] for g, sh, sid in zip(gpus, share, scn.sites,
                                                                                                  strict=True)],
        hovertemplate=w("{name}: {gpus} GPUs, renewable {share}, utilisation {util}", name="%{text}",
                        gpus="%{customdata[0]}", share="%{customdata[1]}",
                        util="%{customdata[2]}") + "<extra></extra>"))
    net.update_layout(title=w("The network (sites sized by GPUs, coloured by renewable share)"),
                      xaxis_title=w("longitude"), yaxis_title=w("latitude"), height=480)
    figs.append(("network", net))

    # GPUs busy per site over time
    busy = _busy_gpus(scn, segments, T)
    util = go.Figure()
    for sid in scn.sites:
        util.add_trace(go.Scatter(x=hours, y=busy[sid], stackgroup="one", name=w.site(sid), line_shape="hv"))
    util.update_layout(title=w("GPUs busy per site (average over each hour)"), xaxis_title=xtitle, height=380)
    figs.append(("utilisation", util))

    # each site's energy balance: renewables (solar and wind used directly), the battery and the grid apart
    for sid, bal in accounts.balances.items():
        ser = accounts.series[sid]
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                            specs=[[{"secondary_y": True}], [{"secondary_y": True}]])
        for name, ys, color in (("renewables used", bal.used, "#2ca02c"), ("battery", bal.discharge, "#9467bd"),
                                ("grid", bal.grid, "#7f7f7f")):
            fig.add_trace(go.Bar(x=hours, y=ys, name=w(name), marker_color=color), row=1, col=1)
        fig.add_trace(go.Scatter(x=hours, y=ser.renewable_kw, name=w("renewables available"), line_shape="hv",
                                 line={"color": "#98df8a"}), row=1, col=1)
        fig.add_trace(go.Scatter(x=hours, y=bal.curtailed, name=w("curtailed"), line_shape="hv",
                                 line={"color": "#ff9896", "dash": "dot"}), row=1, col=1)
        if np.any(bal.soc):
            fig.add_trace(go.Scatter(x=hours, y=bal.soc, name=w("battery kWh"), line={"color": "#c5b0d5"}),
                          row=1, col=1, secondary_y=True)
        fig.add_trace(go.Scatter(x=hours, y=ser.cny_per_kwh, name=w("tariff CNY/kWh"), line_shape="hv",
                                 line={"color": "#1f77b4"}), row=2, col=1)
        fig.add_trace(go.Scatter(x=hours, y=ser.carbon_kg_per_kwh, name=w("carbon kg/kWh"), line_shape="hv",
                                 line={"color": "#d62728"}), row=2, col=1, secondary_y=True)
        fig.update_layout(barmode="stack", title=w("{site}: load (kWh per hour) by source, tariff and carbon",
                                                   site=w.site(sid)), height=460, bargap=0)
        figs.append((f"site {sid}", fig))

    parts = go.Figure(go.Bar(x=[w(p) for p in PARTS], y=objective_parts(scn, m)))
    parts.update_layout(title=w("The objective, part by part (CNY)"), height=360)
    figs.append(("objective", parts))

    rows = "".join(f"<tr><td>{html.escape(w.metric(k))}</td><td>{html.escape(w.value(k, v))}</td></tr>"
                   for k, v in (dict(m) | accounts.carbon).items())
    body = [to_html(f, include_plotlyjs=(i == 0), full_html=False, default_height=f.layout.height)
            for i, (_, f) in enumerate(figs)]
    title = html.escape(w("suanli: {name} with {policy}", name=scn.name, policy=policy))
    intro = w("{sites} sites, {jobs} jobs, horizon {h} h, {T} hourly slots accounted. Numbers follow the suanli model "
              "(docs/MODEL.md).", sites=len(scn.sites), jobs=m["jobs_total"], h=f"{scn.horizon_h:g}", T=T)
    if w.zh and scn.start is not None:
        intro += " " + w("Times are Beijing time (Asia/Shanghai), 24-hour.")
    return (f"<!DOCTYPE html><html lang='{'zh-CN' if w.zh else 'en'}'><head><meta charset='utf-8'><title>{title}"
            "</title><style>"
            "body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse}"
            "td{border-bottom:1px solid #ddd;padding:2px 10px}td:last-child{text-align:right}</style></head><body>"
            f"<h1>{title}</h1><p>{html.escape(intro)}</p>"
            f"<h2>{html.escape(w('Metrics'))}</h2><table>{rows}</table>" + "".join(body) + "</body></html>")


# the rows of the side-by-side table: (metric, label, format, lower is better)
COMPARED = (("objective_cny", "objective, CNY", ",.0f"), ("gpu_cost_cny", "GPU rental, CNY", ",.0f"),
            ("energy_cost_cny", "energy, CNY", ",.0f"), ("transfer_cost_cny", "transfer, CNY", ",.0f"),
            ("carbon_kg", "carbon, kg", ",.0f"), ("grid_kwh", "grid energy, kWh", ",.0f"),
            ("renewable_used_kwh", "renewables used, kWh", ",.0f"), ("curtailed_kwh", "curtailed, kWh", ",.0f"),
            ("dr_violation_kwh", "over grid caps, kWh", ",.1f"), ("late_gpu_h", "late GPU-hours", ",.1f"),
            ("deadline_misses", "deadline misses", ",.0f"), ("jobs_unfinished", "unfinished jobs", ",.0f"),
            ("mean_jct_h", "mean JCT, h", ",.2f"), ("p95_jct_h", "p95 JCT, h", ",.2f"),
            ("gpu_utilization", "GPU utilisation", ".1%"))
HIGHER_IS_BETTER = {"renewable_used_kwh", "gpu_utilization"}


def render_comparison(scn: Scenario, runs: dict[str, tuple[Sequence[Segment], Accounts]],
                      plotlyjs: bool | str = True, note: str = "", lang: str = "en") -> str:
    """One scenario, several policies side by side: the metrics table (the best of each row in
    bold), the objective's parts, the network's grid draw and renewables used hour by hour, and
    GPUs busy per site under each policy. `plotlyjs`: True embeds Plotly's JavaScript (a file
    that stands alone), "directory" refers to a plotly.min.js beside the file (`suanli bench`
    writes it once for all its reports). `lang`: "en" or "zh-CN", in the words of `render_report`
    (Chinese metric and site names, ¥, Beijing times where the scenario has a start); `note` is
    shown as given."""
    import plotly.graph_objects as go
    from plotly.io import to_html
    from plotly.subplots import make_subplots

    w = Words(lang, scn)
    names = list(runs)
    figs: list[go.Figure] = []
    parts = go.Figure()
    for k, part in enumerate(PARTS):
        ys = [objective_parts(scn, runs[p][1].metrics)[k] for p in names]
        if any(ys):
            parts.add_trace(go.Bar(x=names, y=ys, name=w(part)))
    parts.update_layout(barmode="stack", title=w("The objective, part by part (CNY)"), height=380)
    figs.append(parts)

    hourly = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=(
        w("grid energy, all sites (kWh per hour)"), w("renewables used, all sites (kWh per hour)")))
    for p in names:
        acc = runs[p][1]
        grid = np.sum([b.grid for b in acc.balances.values()], axis=0)
        used = np.sum([b.used for b in acc.balances.values()], axis=0)
        hours = w.hours(len(grid))
        hourly.add_trace(go.Scatter(x=hours, y=grid, name=p, legendgroup=p, line_shape="hv"), row=1, col=1)
        hourly.add_trace(go.Scatter(x=hours, y=used, name=p, legendgroup=p, showlegend=False, line_shape="hv"),
                         row=2, col=1)
    hourly.update_layout(height=520, xaxis2_title="" if w.zh and scn.start is not None else w("hour"))
    figs.append(hourly)

    busy = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=[
        w("GPUs busy per site: {policy}", policy=p) for p in names], vertical_spacing=0.04)
    colours = dict(zip(scn.sites, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                                   "#7f7f7f", "#bcbd22", "#17becf") * (len(scn.sites) // 10 + 1), strict=False))
    for row, p in enumerate(names, start=1):
        segs, acc = runs[p]
        b = _busy_gpus(scn, segs, acc.slots)
        for sid in scn.sites:
            busy.add_trace(go.Scatter(x=w.hours(acc.slots), y=b[sid], stackgroup=f"s{row}", name=w.site(sid),
                                      legendgroup=sid, showlegend=row == 1, line={"color": colours[sid]},
                                      line_shape="hv"), row=row, col=1)
    busy.update_layout(height=max(300, 230 * len(names)))
    figs.append(busy)

    head = "".join(f"<th>{html.escape(p)}</th>" for p in names)
    rows = []
    for key, label, fmt in COMPARED:
        vals = [runs[p][1].metrics.get(key) for p in names]
        known = [v for v in vals if v is not None]
        best = (max if key in HIGHER_IS_BETTER else min)(known) if known else None
        yuan = w.zh and key.endswith("_cny")        # in Chinese: ¥, the label without its unit
        cells = "".join("<td></td>" if v is None else
                        f"<td>{'<b>' if v == best and len(known) > 1 else ''}"
                        f"{w.money(v) if yuan else format(v, fmt)}"
                        f"{'</b>' if v == best and len(known) > 1 else ''}</td>" for v in vals)
        rows.append(f"<tr><td>{html.escape(w.metric(key) if w.zh else label)}</td>{cells}</tr>")
    body = [to_html(f, include_plotlyjs=plotlyjs if i == 0 else False, full_html=False,
                    default_height=f.layout.height) for i, f in enumerate(figs)]
    title = html.escape(w("suanli: {name}, policies side by side", name=scn.name))
    m0 = runs[names[0]][1].metrics
    intro = w("{sites} sites, {jobs} jobs, horizon {h} h. Numbers follow the suanli model (docs/MODEL.md); the best "
              "of each row is in bold.", sites=len(scn.sites), jobs=f"{m0['jobs_total']:.0f}", h=f"{scn.horizon_h:g}")
    if w.zh and scn.start is not None:
        intro += " " + w("Times are Beijing time (Asia/Shanghai), 24-hour.")
    return (f"<!DOCTYPE html><html lang='{'zh-CN' if w.zh else 'en'}'><head><meta charset='utf-8'><title>{title}"
            "</title><style>"
            "body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #ddd;padding:2px 10px}td:not(:first-child){text-align:right}"
            "</style></head><body>"
            f"<h1>{title}</h1><p>{html.escape(intro)} {html.escape(note)}</p>"
            f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>" + "".join(body) + "</body></html>")
