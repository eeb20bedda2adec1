"""A self-contained HTML report of a simulated run (`suanli sim ... --report FILE.html`).

Plotly draws the charts; its JavaScript is embedded once in the page, so the file opens from
disk with no server and no network. The page shows the run's metrics, the network (sites by
position, sized by GPUs, coloured by renewable share), each site's hourly energy balance
(load served by renewables, battery and grid; curtailment; battery state; tariff and carbon),
GPUs busy per site over time, and the cost parts. Everything is read from the run's
`Accounts` and segments: the numbers are the accounting's, not recomputed here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

from suanli.accounting import Accounts
from suanli.model.scenario import Scenario
from suanli.model.schedule import Segment


def _busy_gpus(scn: Scenario, segments: Sequence[Segment], slots: int) -> dict[str, np.ndarray]:
    """Average GPUs busy per site per slot."""
    out = {sid: np.zeros(slots) for sid in scn.sites}
    for s in segments:
        first, last = math.floor(s.start_h), min(slots, math.ceil(s.end_h))
        for t in range(max(first, 0), last):
            out[s.site][t] += s.gpus * (min(t + 1.0, s.end_h) - max(float(t), s.start_h))
    return out


def render_report(scn: Scenario, policy: str, segments: Sequence[Segment], accounts: Accounts) -> str:
    import plotly.graph_objects as go
    from plotly.io import to_html
    from plotly.subplots import make_subplots

    m = accounts.metrics
    T = accounts.slots
    hours = list(range(T))
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
                             mode="markers+text", text=others, textposition="top center",
                             marker={"color": "#555", "size": 7, "symbol": "square"}, name="cities"))
    sm = accounts.site_metrics
    share = [sm[sid]["renewable_used_kwh"] / sm[sid]["energy_kwh"] if sm[sid]["energy_kwh"] else 0.0
             for sid in scn.sites]
    gpus = [sum(p.count for p in s.gpus.values()) for s in scn.sites.values()]
    net.add_trace(go.Scatter(
        x=[scn.cities[s.city][1] for s in scn.sites.values()], y=[scn.cities[s.city][0] for s in scn.sites.values()],
        mode="markers+text", text=list(scn.sites), textposition="bottom center", name="sites",
        marker={"size": [8 + 4 * math.sqrt(g) for g in gpus], "color": share, "colorscale": "YlGn", "cmin": 0,
                "cmax": 1, "showscale": True, "colorbar": {"title": "renewable share"}, "line": {"width": 1}},
        customdata=[[g, f"{sh:.0%}", f"{sm[sid]['gpu_utilization']:.0%}"] for g, sh, sid in zip(gpus, share, scn.sites,
                                                                                                  strict=True)],
        hovertemplate="%{text}: %{customdata[0]} GPUs, renewable %{customdata[1]}, "
                      "utilisation %{customdata[2]}<extra></extra>"))
    net.update_layout(title="The network (sites sized by GPUs, coloured by renewable share)",
                      xaxis_title="longitude", yaxis_title="latitude", height=480)
    figs.append(("network", net))

    # GPUs busy per site over time
    busy = _busy_gpus(scn, segments, T)
    util = go.Figure()
    for sid in scn.sites:
        util.add_trace(go.Scatter(x=hours, y=busy[sid], stackgroup="one", name=sid, line_shape="hv"))
    util.update_layout(title="GPUs busy per site (average over each hour)", xaxis_title="hour", height=380)
    figs.append(("utilisation", util))

    # each site's energy balance
    for sid, bal in accounts.balances.items():
        ser = accounts.series[sid]
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                            specs=[[{"secondary_y": True}], [{"secondary_y": True}]])
        for name, ys, color in (("renewables used", bal.used, "#2ca02c"), ("battery", bal.discharge, "#9467bd"),
                                ("grid", bal.grid, "#7f7f7f")):
            fig.add_trace(go.Bar(x=hours, y=ys, name=name, marker_color=color), row=1, col=1)
        fig.add_trace(go.Scatter(x=hours, y=ser.renewable_kw, name="renewables available", line_shape="hv",
                                 line={"color": "#98df8a"}), row=1, col=1)
        fig.add_trace(go.Scatter(x=hours, y=bal.curtailed, name="curtailed", line_shape="hv",
                                 line={"color": "#ff9896", "dash": "dot"}), row=1, col=1)
        if np.any(bal.soc):
            fig.add_trace(go.Scatter(x=hours, y=bal.soc, name="battery kWh", line={"color": "#c5b0d5"}),
                          row=1, col=1, secondary_y=True)
        fig.add_trace(go.Scatter(x=hours, y=ser.cny_per_kwh, name="tariff CNY/kWh", line_shape="hv",
                                 line={"color": "#1f77b4"}), row=2, col=1)
        fig.add_trace(go.Scatter(x=hours, y=ser.carbon_kg_per_kwh, name="carbon kg/kWh", line_shape="hv",
                                 line={"color": "#d62728"}), row=2, col=1, secondary_y=True)
        fig.update_layout(barmode="stack", title=f"{sid}: load (kWh per hour) by source, tariff and carbon",
                          height=460, bargap=0)
        figs.append((f"site {sid}", fig))

    parts = go.Figure(go.Bar(
        x=["GPU rental", "energy", "transfer", "carbon price", "lateness", "unfinished", "demand response"],
        y=[m["gpu_cost_cny"], m["energy_cost_cny"], m["transfer_cost_cny"],
           scn.objective.carbon_cny_per_kg * m["carbon_kg"], scn.objective.late_cny_per_gpu_h * m["late_gpu_h"],
           scn.objective.unfinished_cny * m["jobs_unfinished"], scn.objective.dr_cny_per_kwh * m["dr_violation_kwh"]]))
    parts.update_layout(title="The objective, part by part (CNY)", height=360)
    figs.append(("objective", parts))

    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:,.2f}</td></tr>" if abs(v) >= 100 else
                   f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
                   for k, v in (dict(m) | accounts.carbon).items())
    body = [to_html(f, include_plotlyjs=(i == 0), full_html=False, default_height=f.layout.height)
            for i, (_, f) in enumerate(figs)]
    title = html.escape(f"suanli: {scn.name} with {policy}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse}"
            "td{border-bottom:1px solid #ddd;padding:2px 10px}td:last-child{text-align:right}</style></head><body>"
            f"<h1>{title}</h1><p>{len(scn.sites)} sites, {m['jobs_total']} jobs, horizon {scn.horizon_h:g} h, "
            f"{T} hourly slots accounted. Numbers follow the suanli model (docs/MODEL.md).</p>"
            f"<h2>Metrics</h2><table>{rows}</table>" + "".join(body) + "</body></html>")
