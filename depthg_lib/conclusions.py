"""Chapter 07's conclusions in words, read from a study's results file so that the sentences
change when the numbers do: a sentence per comparison with its paired 95 % intervals, and
what the file says about the hypotheses H1–H5."""

from __future__ import annotations

import numpy as np


def _intervals(node, path=()):
    """(path, interval) for every {diff, lo, hi} below `node` (setting levels, then probe)."""
    if isinstance(node, dict) and {"diff", "lo", "hi"} <= set(node):
        yield path, node
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _intervals(child, (*path, str(key)))


def verdict(lo: float, hi: float, up: str = "helps", down: str = "hurts") -> str:
    """What a 95 % interval of a difference says, from its two ends only."""
    return up if lo > 0 else down if hi < 0 else "no detectable difference"


def study_intervals(results: dict, comparison: str, probe: str = "unsup") -> list[tuple]:
    """[(setting, diff, lo, hi)] per knob setting of one comparison for one probe ([]: none)."""
    knob = (results.get("knob") or {}).get("name", "setting")
    found = _intervals((results.get("ci95") or {}).get(comparison, {}))
    return [(f"{knob} {', '.join(path[:-1])}" if path[:-1] else "", float(ci["diff"]),
             float(ci["lo"]), float(ci["hi"])) for path, ci in found if path and path[-1] == probe]


def _span(entries: list[tuple]) -> str:
    """"−4.1 [−5.7, −1.8] at camouflage 0 and −4.9 [−7.2, −2.3] at camouflage 1"."""
    parts = [f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]" + (f" at {s}" if s else "")
             for s, d, lo, hi in entries]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _overall(entries: list[tuple], up: str = "helps", down: str = "hurts") -> str:
    """What the intervals say together, in the comparison's own words for above / below 0."""
    said = [verdict(lo, hi, up, down) for _, _, lo, hi in entries]
    if len(set(said)) == 1:
        if len(said) == 1:
            return said[0]
        return said[0] + (" at any setting" if said[0].startswith("no ") else " at every setting")
    return "; ".join(f"{w} at {s}" for w, (s, *_rest) in zip(said, entries))


# (comparison in the results file, probe, what it measures, word above 0, word below 0)
CONCLUSIONS = (
    ("{ref} vs kmeans_raw_train_fit", "unsup",
     "The trained DepthG head minus k-means on the raw backbone features (fitted on the "
     "training crops, as the head is)", "the head beats k-means", "the head is below k-means"),
    ("stego-corrected vs kmeans_raw_train_fit", "unsup", "STEGO's head minus the same k-means",
     "the head beats k-means", "the head is below k-means"),
    ("depth-corrected vs stego-corrected", "unsup", "STEGO with the depth term minus STEGO",
     "depth helps", "depth hurts"),
    ("fps-corrected vs stego-corrected", "unsup",
     "STEGO with depth-guided FPS minus STEGO with random points", "FPS helps", "FPS hurts"),
    ("depthg-corrected vs stego-corrected", "unsup", "DepthG (both ingredients) minus STEGO",
     "DepthG helps", "DepthG hurts"),
    ("{ref} vs linear_raw", "linear",
     "The DepthG head's linear probe minus a linear probe on the raw features",
     "the head adds to the features", "the head loses what the features hold"),
)


def study_conclusions(results: dict) -> list[str]:
    """One sentence per comparison the file holds, with its paired 95 % intervals."""
    ref = results.get("reference_arm", "depthg-corrected")
    out = []
    for comparison, probe, words, up, down in CONCLUSIONS:
        entries = study_intervals(results, comparison.format(ref=ref), probe)
        if entries:
            kind = "unsupervised" if probe == "unsup" else "linear-probe"
            out.append(f"{words}, in points of {kind} mIoU: {_span(entries)} — "
                       f"{_overall(entries, up, down)}.")
    return out


def hypothesis_tests(results: dict) -> dict[str, str]:
    """H1–H5: the interval that bears on each and what it says, or why it cannot be tested."""
    out = {}
    h1 = study_intervals(results, "depth-released vs stego-released")
    if h1:
        out["H1"] = ("The released depth term (a lower, decaying intra shift) minus STEGO, "
                     f"both released, in points of unsupervised mIoU: {_span(h1)} — "
                     f"{_overall(h1)}. Were the shift what makes the paper's gain, this would "
                     "lie above 0.")
    rel = study_intervals(results, "fps-released vs stego-released")
    cor = study_intervals(results, "fps-corrected vs stego-corrected")
    if rel and cor:
        same = [verdict(*a[2:]) == verdict(*b[2:]) for a, b in zip(rel, cor)]
        out["H2"] = ("Released FPS (read transposed) minus random points, in points of "
                     f"unsupervised mIoU: {_span(rel)} — "
                     f"{_overall(rel)}; corrected FPS minus random points: {_span(cor)} — "
                     f"{_overall(cor)}. H2 predicts that both read alike; "
                     + ("they do at every setting." if all(same) else
                        "they differ at " + ", ".join(s for (s, *_r), ok in zip(rel, same)
                                                     if not ok) + "."))
    out["H3"] = ("Not testable with the study: it scores every arm with one metric on "
                 "SynthScenes; it needs the released checkpoint on the real dataset.")
    spreads = [(arm, setting, float(np.std(v["unsup"], ddof=1)), len(v["unsup"]))
               for arm in ("stego-corrected", "depthg-corrected")
               for setting, v in (results.get("arms", {}).get(arm) or {}).items()
               if len(v.get("unsup", [])) > 1]
    if spreads:
        lo, hi = min(spreads, key=lambda s: s[2]), max(spreads, key=lambda s: s[2])
        out["H4"] = (f"One run's spread: the standard deviation over {lo[3]} seeds of one arm's "
                     f"unsupervised mIoU is between {lo[2]:.1f} ({lo[0]}, setting {lo[1]}) and "
                     f"{hi[2]:.1f} points ({hi[0]}, setting {hi[1]}); a gap of that size between "
                     "two single runs is within seed-to-seed noise.")
    gains = [(k, v["auroc"]["depth_gain"]) for k, v in (results.get("premise") or {}).items()
             if isinstance(v, dict) and "auroc" in v]
    if gains:
        out["H5"] = ("Not testable on SynthScenes, but its premise there: depth adds "
                     + ", ".join(f"{g:+.4f} (setting {k})" for k, g in gains)
                     + " to the features' same-class AUROC — it says almost nothing the "
                     "features do not; whether it says more on Cityscapes needs the real data.")
    return out
