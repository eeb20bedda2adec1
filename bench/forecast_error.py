"""Forecast error by lead time: the nowcast from readings against the network file's model and
naive persistence, on a year of simulated readings (docs/ENERGY.md "Forecasts from readings").

    PYTHONPATH=src python bench/forecast_error.py [--days 365] [--seed 0] [--tau-scale 1] [--json out.json]

Readings come from `suanli.energy.simulated_readings` (the site's models under another draw of
their weather, 1 % meter noise; grid carbon with a daily cycle and AR(1) deviations), for the
shipped example's sites: three solar (qingyang-1, zhongwei-1, guiyang-1), two wind (hami-1,
ulanqab-1), carbon at all five. After a warm-up of `WINDOW_H` hours (four weeks: the nowcast's
history window), a forecast is issued every hour of `--days` days from the readings up to and
including that hour (lead L = L hours after the last reading), and compared with the reading at
each lead of `LEADS`:

- nowcast: `suanli.energy.nowcast.site_forecast`;
- model: the network file's series (what the service plans on without meters);
- persistence: the last reading, held.

Errors are forecast - reading. Renewables in % of the site's capacity, solar over daylight target
hours only (clear-sky output >= 5 % of capacity; at night every method is right or trivially
wrong), wind over all hours; carbon in % of the site's mean reading. Sites of a kind are pooled.
Deterministic: the same arguments print the same table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from suanli.energy import nowcast as nc
from suanli.energy.simulated_readings import readings
from suanli.model.load import load_scenario

LEADS = (1, 3, 6, 12, 24, 48, 72)
SOLAR = ("qingyang-1", "zhongwei-1", "guiyang-1")
WIND = ("hami-1", "ulanqab-1")
METHODS = ("nowcast", "model", "persistence")
NETWORK = Path(__file__).resolve().parent.parent / "examples" / "east-west.yaml"


def site_errors(scn, site: str, days: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """{series: {method: errors of shape (issues, leads)}} in % (see the module's docstring), and
    for solar a mask of daylight targets under the key "mask"."""
    warm = nc.WINDOW_H
    issues = days * 24
    horizon = max(LEADS)
    slots = warm + issues + horizon
    models = nc.site_models(scn, site)
    ren, car = readings(scn, site, slots, seed)
    model_ren = np.asarray(models.renewable.array(slots), dtype=float)
    model_car = np.asarray(models.carbon.array(slots), dtype=float)
    leads = np.array(LEADS)
    hours = np.arange(warm, warm + issues)
    targets = hours[:, None] + leads[None, :]
    got = {k: np.empty((issues, len(LEADS))) for k in ("renewables", "carbon")}
    for i, h in enumerate(hours):
        lo = h + 1 - nc.WINDOW_H
        f = nc.site_forecast(models, nc.HourlyHistory(int(lo), ren[lo:h + 1], car[lo:h + 1]), int(h), horizon)
        got["renewables"][i] = f.renewable_kw[leads]
        got["carbon"][i] = f.carbon_kg_per_kwh[leads]
    cap = models.capacity_kw
    out: dict[str, dict[str, np.ndarray]] = {}
    for kind, truth, model, scale in (("renewables", ren, model_ren, cap / 100.0),
                                      ("carbon", car, model_car, car.mean() / 100.0)):
        actual = truth[targets]
        out[kind] = {"nowcast": (got[kind] - actual) / scale,
                     "model": (model[targets] - actual) / scale,
                     "persistence": (truth[hours][:, None] - actual) / scale}
    if models.solar is not None:
        clear = models.clear.kw(0, slots)
        out["renewables"]["mask"] = clear[targets] >= nc.MIN_CLEAR_SHARE * cap
    else:
        out["renewables"]["mask"] = np.ones(targets.shape, dtype=bool)
    out["carbon"]["mask"] = np.ones(targets.shape, dtype=bool)
    return out


def summarise(parts: list[dict[str, np.ndarray]]) -> dict[str, dict[int, dict[str, float]]]:
    """{method: {lead: {mae, rmse, bias}}} pooled over sites, each lead over its masked targets."""
    res: dict[str, dict[int, dict[str, float]]] = {}
    for m in METHODS:
        res[m] = {}
        for j, lead in enumerate(LEADS):
            e = np.concatenate([p[m][:, j][p["mask"][:, j]] for p in parts])
            res[m][lead] = {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e * e).mean())),
                            "bias": float(e.mean()), "n": int(len(e))}
    return res


def table(results: dict[str, dict]) -> str:
    head = "| series | lead h | " + " | ".join(f"{m} MAE / RMSE / bias" for m in METHODS) + " |"
    lines = [head, "|" + "---|" * (2 + len(METHODS))]
    for series, res in results.items():
        for lead in LEADS:
            cells = [f"{res[m][lead]['mae']:.1f} / {res[m][lead]['rmse']:.1f} / {res[m][lead]['bias']:+.1f}"
                     for m in METHODS]
            lines.append(f"| {series} | {lead} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365, help="days of hourly forecasts measured (1-366)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the meter and carbon noise (>= 0)")
    ap.add_argument("--tau-scale", type=float, default=1.0,
                    help="multiply the nowcast's persistence times (TAU_*_H) by this, to see how much they matter")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    if not 1 <= args.days <= 366:
        print(f"--days: {args.days}: expected 1 to 366", file=sys.stderr)
        return 2
    if args.seed < 0:
        print(f"--seed: {args.seed}: expected an integer >= 0", file=sys.stderr)
        return 2
    if not 0.05 <= args.tau_scale <= 20:
        print(f"--tau-scale: {args.tau_scale}: expected 0.05 to 20", file=sys.stderr)
        return 2
    for name in ("TAU_SOLAR_H", "TAU_WIND_H", "TAU_CARBON_H"):       # read at call time
        setattr(nc, name, getattr(nc, name) * args.tau_scale)
    t0 = time.perf_counter()
    scn = load_scenario(str(NETWORK))
    per = {s: site_errors(scn, s, args.days, args.seed) for s in SOLAR + WIND}
    results = {
        "solar (% of capacity, daylight)": summarise([per[s]["renewables"] for s in SOLAR]),
        "wind (% of capacity)": summarise([per[s]["renewables"] for s in WIND]),
        "carbon (% of mean)": summarise([per[s]["carbon"] for s in SOLAR + WIND]),
    }
    print(f"forecast error by lead, {args.days} days of hourly issues, seed {args.seed}, "
          f"tau x {args.tau_scale:g}, sites {', '.join(SOLAR + WIND)}; MAE / RMSE / bias (forecast - reading)")
    print(table(results))
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"days": args.days, "seed": args.seed, "tau_scale": args.tau_scale,
                                          "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
