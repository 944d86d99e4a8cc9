"""The study's closing claims and the checks of its written predictions, each sentence built
from the intervals of a results file (docs/study/results.json)."""

from __future__ import annotations

import numpy as np

from .splits import KNOB


def setting_label(results: dict, knob: str) -> str:
    return results.get("knob", {}).get("labels", {}).get(knob, f"{KNOB} {knob}")


def ci_at(results: dict, name: str, knob: str, metric: str = "unsup") -> dict | None:
    return results.get("ci95", {}).get(name, {}).get(knob, {}).get(metric)


def fmt_ci(ci: dict) -> str:
    return f"{ci['diff']:+.1f} [{ci['lo']:+.1f}, {ci['hi']:+.1f}]"


def at(results: dict, knob: str, ci: dict, who: str = "") -> str:
    """"camouflage 1 stego +0.4 [-0.9, +1.6]": a setting's interval, and whose it is."""
    return f"{setting_label(results, knob)} {who.split('-')[0] + ' ' if who else ''}{fmt_ci(ci)}"


def listed(results: dict, rows) -> str:
    """"camouflage 1 (STEGO +3.4 [+0.9, +5.6]); ...": (setting, arm, interval) rows."""
    return "; ".join(f"{setting_label(results, k)} ({LABEL[a]} {fmt_ci(c)})" for k, a, c in rows)


HEAD_ARMS = ("stego-corrected", "depthg-corrected")
LABEL = {"stego-corrected": "STEGO", "depthg-corrected": "DepthG"}
DEPTH = "depthg-corrected vs stego-corrected"


def claims(results: dict) -> dict:
    """The closing claims and the settings behind them: does a head beat k-means on the raw
    features by ≥ 3 unsupervised mIoU points (`head`), does DepthG beat STEGO (`depth`)?"""
    keys = results["knob"]["settings"]
    head_rows = [(k, a, c) for k in keys for a in HEAD_ARMS
                 if (c := ci_at(results, f"{a} vs kmeans_raw_train_fit", k))]
    depth_rows = [(k, c) for k in keys if (c := ci_at(results, DEPTH, k))]
    wins = [(k, a, c) for k, a, c in head_rows if c["lo"] > 0 and c["diff"] >= 3]
    others = [(k, a, c) for k, a, c in head_rows if (k, a, c) not in wins]
    best = max(others or head_rows, key=lambda r: r[2]["diff"], default=None)
    if wins:
        head = ("the head helps when the features carry class-free structure: it beats "
                "k-means on the raw features (fitted on train) by ≥ 3 unsupervised mIoU points "
                "with the interval above 0 at " + listed(results, wins))
        if others:
            head += (f", and not elsewhere (best other: {setting_label(results, best[0])}, "
                     f"{LABEL[best[1]]} {fmt_ci(best[2])})")
    elif head_rows:
        head = ("the head does not beat k-means on the raw features (fitted on train) by ≥ 3 "
                "unsupervised mIoU points with the interval above 0 at any setting of this "
                f"study: its best is {LABEL[best[1]]} at {setting_label(results, best[0])}, "
                f"{fmt_ci(best[2])}")
        small = [(k, a, c) for k, a, c in head_rows if c["lo"] > 0]
        if small:
            head += "; it is above k-means by less than 3 points at " + listed(results, small)
    else:
        head = "no head has been compared with k-means yet"
    helps = [(k, c) for k, c in depth_rows if c["lo"] > 0]
    hurts = [(k, c) for k, c in depth_rows if c["hi"] < 0]
    if helps:
        depth = ("depth helps when " + "; ".join(
            f"{setting_label(results, k)}: DepthG − STEGO {fmt_ci(c)}" for k, c in helps))
    elif depth_rows:
        depth = ("depth does not help at any setting of this study (DepthG − STEGO, "
                 "unsupervised mIoU: " + "; ".join(at(results, k, c) for k, c in depth_rows)
                 + ")")
    else:
        depth = "DepthG and STEGO have not been compared yet"
    if hurts and not helps:
        depth += "; it hurts at " + ", ".join(setting_label(results, k) for k, _ in hurts)
    return {"head": head, "depth": depth,
            "head_wins": [{"setting": k, "arm": a, **c} for k, a, c in wins],
            "depth_helps": [{"setting": k, **c} for k, c in helps]}


OUTCOME = {True: "held", False: "failed", None: "not tested yet"}


def prediction_checks(results: dict) -> list[tuple[str, str, str]]:
    """(prediction, outcome, numbers) per testable prediction of docs/study/PREDICTIONS.md."""
    settings = results["knob"]["settings"]
    nuisance = results["knob"].get("nuisance", {})
    cam = [k for k in settings if not nuisance.get(k)]
    nui = sorted([k for k in settings if nuisance.get(k)], key=lambda k: nuisance[k])
    base = cam[0] if cam else None  # what the nuisance settings are compared with
    return (regime_checks(results) + camouflage_checks(results, cam)
            + fall_checks(results, base, nui) + [UNTESTED]
            + nuisance_margin_checks(results, base, nui))


def regime_checks(results: dict) -> list[tuple[str, str, str]]:
    """R1, R2: the regime check's tune-split numbers (one seed, camouflage 0)."""
    reg = results.get("regime", {})
    st, dg = reg.get("stego-corrected", {}), reg.get("depthg-corrected", {})
    gains = {n: r.get("tune_gain_last_quarter") for n, r in st.items()}
    ok = all(g is not None and abs(g) <= 1 for g in gains.values()) if gains else None
    out = [("R1 STEGO flat over the last quarter in every regime", OUTCOME[ok],
            ", ".join(f"{n} {g:+.2f}" for n, g in gains.items() if g is not None))]
    if {"short-steps", "short-share", "long-share"} <= set(st) & set(dg):
        d = {n: dg[n]["tune_unsup"] - st[n]["tune_unsup"] for n in st if n in dg}
        ok = (d["short-steps"] <= -2 and abs(d["short-share"]) <= 1.5
              and abs(d["long-share"]) <= 1.5)
        out.append(("R2 DepthG − STEGO on tune: several points below with the decay in steps "
                    "over a short run, within ± 1.5 with the schedule as a share",
                    OUTCOME[ok], ", ".join(f"{n} {v:+.1f}" for n, v in d.items())))
    else:
        out.append(("R2 DepthG − STEGO by regime", OUTCOME[None], ""))
    return out


def camouflage_checks(results: dict, cam: list[str]) -> list[tuple[str, str, str]]:
    """C1, C2: the settings without nuisance."""
    cis = {k: ci_at(results, DEPTH, k) for k in cam}
    ok = all(c["lo"] <= 0 <= c["hi"] for c in cis.values()) if all(cis.values()) else None
    out = [("C1 DepthG − STEGO contains 0 at every camouflage setting", OUTCOME[ok],
            "; ".join(at(results, k, c) for k, c in cis.items() if c))]
    cis = {(k, a): ci_at(results, f"{a} vs kmeans_raw_train_fit", k) for k in cam
           for a in HEAD_ARMS}
    ok = all(c["lo"] <= 0 for c in cis.values()) if all(cis.values()) else None
    out.append(("C2 head − k-means below 0 or no detectable difference without nuisance",
                OUTCOME[ok], "; ".join(at(results, k, c, a) for (k, a), c in cis.items() if c)))
    return out


UNTESTED = ("N2 the position pattern hurts head and k-means alike; N3 the outliers cost little",
            "not tested by these runs", "the three kinds ran together; their separate effect on "
            "the raw baselines is in nuisance_levels.json")


def fall_checks(results: dict, base: str | None, nui: list[str]) -> list[tuple[str, str, str]]:
    """N0, N1: how far k-means, the linear probe and the heads fall from `base` under nuisance."""
    per = results.get("baselines", {})
    km, lin = per.get("kmeans_raw_train_fit", {}), per.get("linear_raw", {})
    if not (nui and base and all(km.get(k) is not None and lin.get(k) is not None
                                 for k in [base] + nui)):
        return [("N0/N1 the nuisance settings", OUTCOME[None], "")]
    strong = nui[-1]
    ok = km[strong] / lin[strong] <= 0.4 and lin[base] - lin[strong] <= 3
    out = [("N0 k-means falls to about a third of the linear probe or less, the "
            "linear probe by ≤ 3 points", OUTCOME[ok],
            "; ".join(f"{setting_label(results, k)}: k-means {km[k]:.1f}, linear "
                      f"{lin[k]:.1f}" for k in [base] + nui))]
    arms = results.get("arms", {})
    falls = []
    for k in nui:
        for a in HEAD_ARMS:
            v0, v1 = (arms.get(a, {}).get(s, {}).get("unsup") for s in (base, k))
            if v0 and v1:
                falls.append((k, a, np.mean(v0) - np.mean(v1), km[base] - km[k]))
    ok = all(f[2] < f[3] for f in falls) if len(falls) == 2 * len(nui) else None
    share = {k: v for k in [base] + nui
             if (v := results.get("premise", {}).get(k, {}).get("knn_same_source")) is not None}
    out.append(("N1 the heads fall less than k-means under the nuisance (and the kNN "
                "pairs turn into same-source pairs)", OUTCOME[ok],
                "; ".join(f"{setting_label(results, k)} {a.split('-')[0]} falls "
                          f"{h:.1f}, k-means {m:.1f}" for k, a, h, m in falls)
                + ("; kNN same-source share " + ", ".join(
                    f"{setting_label(results, k)} {v:.2f}" for k, v in share.items())
                   if share else "")))
    return out


def nuisance_margin_checks(results: dict, base: str | None, nui: list[str]
                           ) -> list[tuple[str, str, str]]:
    """N4, N5: the heads against k-means, and DepthG against STEGO, under the nuisance."""
    cis = {(k, a): ci_at(results, f"{a} vs kmeans_raw_train_fit", k) for k in nui
           for a in HEAD_ARMS}
    if nui and all(cis.get((nui[-1], a)) for a in HEAD_ARMS):
        strong = [cis[(nui[-1], a)] for a in HEAD_ARMS]
        ok = all(c["diff"] >= 3 and c["lo"] > 0 for c in strong)
        out = [("N4 at the strongest nuisance both heads beat k-means by ≥ 3 with the "
                "interval above 0", OUTCOME[ok],
                "; ".join(at(results, k, c, a) for (k, a), c in cis.items() if c))]
    else:
        out = [("N4 the head against k-means under nuisance", OUTCOME[None], "")]
    d0 = ci_at(results, DEPTH, base) if base else None
    dn = {k: ci_at(results, DEPTH, k) for k in nui}
    if d0 and nui and all(dn.values()):
        ok = all(c["diff"] >= 0 and c["diff"] > d0["diff"] for c in dn.values())
        out.append(("N5 DepthG − STEGO ≥ 0 under nuisance and larger than without",
                    OUTCOME[ok], "; ".join(at(results, k, c) for k, c in {base: d0, **dn}.items())))
    else:
        out.append(("N5 depth under nuisance", OUTCOME[None], ""))
    return out
