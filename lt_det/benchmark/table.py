"""The benchmark table: mean ± std over seeds per method, and each method against its baseline.

A difference is taken over the seeds both rows finished (a stage 2 against its own stage-1 runs),
and "exceeds the seeds' spread" when ``|Δ| > s_method + s_baseline`` (the two sample standard
deviations over those seeds, ddof = 1): with 3 seeds a conservative reading that does not assume
normality. With one common seed there is no spread and no claim is made.
"""
import json
import math
import statistics
from typing import Dict, List, Optional, Sequence

from .methods import Method

METRICS = ("AP", "APr", "APc", "APf")
TASK = "bbox"


def _mean_std(values: Sequence[float]):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan, 0
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), std, len(values)


def summarize(methods: Dict[str, Method], results: List[Dict]) -> List[Dict]:
    """One row per method that has results, in method-list order.

    Each row: name, stage, rfs, baseline, seeds (run / finished), status counts, per metric
    ``{mean, std, n}``, mean minutes per seed, and for AP and APr the difference from the baseline
    with ``exceeds_spread``; the logs of diverged or failed cells.
    """
    by_method: Dict[str, List[Dict]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(r)
    rows, per_seed = {}, {}
    for name, method in methods.items():
        cells = by_method.get(name)
        if not cells:
            continue
        ok = [c for c in cells if c["status"] == "ok"]
        row = {
            "method": name, "stage": method.stage, "rfs": method.rfs, "baseline": method.baseline,
            "cite": method.cite, "seeds": sorted(c["seed"] for c in cells), "finished": len(ok),
            "status": {s: sum(c["status"] == s for c in cells) for s in ("ok", "diverged", "failed", "skipped", "pending")},
            "logs": [c.get("log") for c in cells if c["status"] in ("diverged", "failed")],
            "minutes": statistics.fmean(c["seconds"] / 60 for c in ok) if ok else math.nan,
        }
        for m in METRICS:
            mean, std, n = _mean_std([c["metrics"].get(f"{TASK}/{m}") for c in ok])
            row[m] = {"mean": mean, "std": std, "n": n}
        rows[name] = row
        per_seed[name] = {m: {c["seed"]: c["metrics"].get(f"{TASK}/{m}") for c in ok} for m in METRICS}
    for name, row in rows.items():
        base = per_seed.get(row["baseline"]) if row["baseline"] else None
        for m in ("AP", "APr"):
            row[f"delta_{m}"] = _delta(per_seed[name][m], base[m]) if base else None
        row["verdict"] = _verdict(row)
    return list(rows.values())


def _delta(a: Dict[int, float], b: Dict[int, float]) -> Optional[Dict]:
    """a - b over the seeds both finished: {delta, spread, exceeds_spread, seeds}."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    (ma, sa, _), (mb, sb, _) = _mean_std([a[s] for s in seeds]), _mean_std([b[s] for s in seeds])
    spread = sa + sb
    return {"delta": ma - mb, "spread": spread, "exceeds_spread": bool(math.isfinite(spread) and abs(ma - mb) > spread),
            "seeds": seeds}


def _verdict(row: Dict) -> str:
    """In words, what the method does to APr and AP against its baseline on this data."""
    if row["finished"] == 0:
        return "no result"
    r, a = row.get("delta_APr"), row.get("delta_AP")
    if r is None:
        return "baseline" if row["baseline"] is None else "no baseline result"
    if not math.isfinite(r["spread"]):
        return "one seed: no claim"
    words = []
    for name, d in (("APr", r), ("AP", a)):
        if d["exceeds_spread"]:
            words.append(f"{'raises' if d['delta'] > 0 else 'lowers'} {name}")
    return ", ".join(words) if words else "no change beyond the seeds' spread"


def _fmt(stat: Dict) -> str:
    if not stat["n"]:
        return "–"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}" if math.isfinite(stat["std"]) else f"{stat['mean']:.1f}"


def _fmt_delta(d: Optional[Dict]) -> str:
    if d is None:
        return ""
    return f"{d['delta']:+.1f}" + (" *" if d["exceeds_spread"] else "")


def to_markdown(rows: List[Dict]) -> str:
    """The table as GitHub markdown (bbox AP in %)."""
    head = ("| method | stage | RFS | seeds | AP | APr | APc | APf | ΔAP | ΔAPr | vs | min / seed | verdict |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        notes = [f"{k} {v}" for k, v in r["status"].items() if k != "ok" and v]
        logs = [str(p) for p in r["logs"] if p]
        verdict = r["verdict"] + (f" ({', '.join(notes)}{': ' + ', '.join(logs) if logs else ''})" if notes else "")
        lines.append(
            f"| {r['method']} | {r['stage']} | {'yes' if r['rfs'] else 'no'} | {r['finished']} | "
            + " | ".join(_fmt(r[m]) for m in METRICS)
            + f" | {_fmt_delta(r['delta_AP'])} | {_fmt_delta(r['delta_APr'])} | {r['baseline'] or ''} | "
            + (f"{r['minutes']:.1f}" if math.isfinite(r["minutes"]) else "–") + f" | {verdict} |")
    return head + "\n".join(lines) + "\n"


def to_json(rows: List[Dict], meta: Dict) -> str:
    return json.dumps({"meta": meta, "rows": rows}, indent=1, allow_nan=True)
