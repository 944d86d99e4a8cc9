"""The study's run: tune the shifts, then every (seed, knob): baselines and the factorial's arms.

Each finished row goes to `store.json` at once (its per-image matrices to `hists/`), keyed by
a digest of everything it depends on, so an interrupted study resumes and a changed setting
is run again rather than mixed in.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import ablation
from ..checkpoint import load_checkpoint
from ..config import Profile, load_profile, profile_arg
from ..env import resolve_device
from ..errors import DepthGError
from ..io import json_digest, load_json, save_json, save_npz
from ..losses import OBJECTIVE_VERSION
from ..models import profile_weights_identity
from ..train.loop import load_frozen_backbone
from .report import publish_results, summarize, write_figures
from .scoring import (
    MAX_FIT_POINTS,
    cached_feats,
    fit_centroids,
    head_codes,
    linear_probe_raw,
    score_centroids,
    score_head,
    score_linear_raw,
)
from .splits import KNOB, KnobData, knob_key, knob_profile, prepare_knob, split_size
from .stats import METRICS, linear_miou, unsup_miou

STORE_VERSION = 1


class Store:
    """`store.json`: one row per finished (kind, name, knob, seed) with its identity; the
    per-image matrices of a row live in `hists/<id>.npz`. Written after every row."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "store.json"
        data = load_json(self.path) if self.path.exists() else {}
        if data and data.get("version") != STORE_VERSION:
            data = {}
        self.rows: list[dict] = data.get("rows", [])

    def find(self, identity: str) -> dict | None:
        return next((r for r in self.rows if r["id"] == identity), None)

    def add(self, row: dict, hists: dict[str, np.ndarray]) -> dict:
        if hists:
            save_npz(self.folder / "hists" / f"{row['id']}.npz", **hists)
        self.rows = [r for r in self.rows if r["id"] != row["id"]] + [row]
        save_json(self.path, {"version": STORE_VERSION, "rows": self.rows})
        return row

    def hists(self, row: dict) -> dict[str, np.ndarray]:
        with np.load(self.folder / "hists" / f"{row['id']}.npz") as z:
            return {k: z[k] for k in z.files}


def digest(obj) -> str:
    """A short, stable digest of a JSON-able description (the identity of a stored row)."""
    return json_digest(obj)


def profile_values(profile: Profile) -> dict:
    return {k: v for k, v in dataclasses.asdict(profile).items() if k != "source"}


def study_arms(profile: Profile) -> list[str]:
    arms = list(profile.study_arms) or list(ablation.ARMS)
    for arm in arms:
        ablation.arm_factors(arm)  # one clear error for an unknown name
    return arms


class Study:
    """One study run: profile, output folder, store, backbone, prepared knob settings."""

    def __init__(self, profile: Profile, out: Path, seeds: int, device, progress: bool,
                 n_boot: int, command: str):
        self.profile, self.out, self.progress, self.n_boot = profile, out, progress, n_boot
        self.seeds = list(range(seeds))
        self.arms = study_arms(profile)
        self.knobs = [float(k) for k in profile.study_knob]
        self.device = resolve_device(device)
        self.command = command
        self.store = Store(out)
        self.backbone = load_frozen_backbone(profile, self.device)
        self.fidelities = sorted({ablation.arm_factors(a)[2] for a in self.arms}
                                 | {profile.fidelity})
        self.knob_data: dict[float, KnobData] = {}
        self.steps = profile.ablation_steps or profile.steps
        self.val_every = max(1, self.steps // 8)
        self.shift_offset = 0.0
        self.tuning: dict = {}
        self.started = time.time()
        self.write_only = False  # True: only summarise what is stored, train nothing
        self.objective_version = OBJECTIVE_VERSION

    # -- identities: a stored row is reused only when everything it depends on is equal --
    def report_identity(self) -> dict:
        p = self.profile
        return {"report_seed": p.report_seed, "n": split_size(p, "report"), "size":
                p.synth_size, "eval_res": p.eval_res}

    def data_identity(self, knob: float) -> dict:
        p = self.profile
        return {"knob": knob_key(knob), "train_seed": p.synth_seed, "n_train": p.synth_n_train,
                "size": p.synth_size, "res": p.res, "backbone": p.backbone,
                "weights": profile_weights_identity(p)}

    def knob(self, value: float) -> KnobData:
        if value not in self.knob_data:
            self.knob_data[value] = prepare_knob(self.profile, value, self.fidelities,
                                                 self.backbone, self.device, self.progress)
        return self.knob_data[value]

    def shifted(self, profile: Profile) -> Profile:
        o = self.shift_offset
        return profile.replace(shift_intra=profile.shift_intra + o,
                               shift_inter=profile.shift_inter + o,
                               shift_neg=profile.shift_neg + o) if o else profile

    # -- one trained run -------------------------------------------------------------------
    def run_dir(self, arm: str, knob: float, seed: int, tag: str = "") -> Path:
        # the objective's version is in the path: a finished run folder of another objective
        # would otherwise be reused (training settings do not record it)
        return (self.out / "runs" / f"objective{OBJECTIVE_VERSION}" / f"{KNOB}{knob_key(knob)}"
                / f"{arm}{tag}" / f"seed{seed}")

    def train_arm(self, arm: str, knob: float, seed: int, base: Profile, tag: str = ""):
        kd = self.knob(knob)
        variant = ablation.arm_profile(self.shifted_base(base, kd), arm, self.steps,
                                       self.val_every)
        data, _ = kd.train_data[variant.fidelity]
        ckpt = ablation.run_arm(variant, self.run_dir(arm, knob, seed, tag), seed, data=data,
                                device=str(self.device), progress=self.progress)
        return variant, load_checkpoint(ckpt, profile=variant)

    def shifted_base(self, base: Profile, kd: KnobData) -> Profile:
        values = {k: getattr(base, k) for k in ("shift_intra", "shift_inter", "shift_neg")}
        return kd.profile.replace(**values)

    def arm_identity(self, arm: str, knob: float, seed: int) -> str:
        variant = ablation.arm_profile(self.shifted_base(self.shifted(self.profile),
                                                         self.knob_stub(knob)),
                                       arm, self.steps, self.val_every)
        return digest({"kind": "arm", "arm": arm, "seed": seed, "knob": knob_key(knob),
                       "objective": OBJECTIVE_VERSION,
                       "train": profile_values(variant), "data": self.data_identity(knob),
                       "tune_seed": self.profile.tune_seed, "report": self.report_identity()})

    def baseline_identity(self, name: str, knob: float, seed: int) -> str:
        p = self.profile
        return digest({"kind": "baseline", "name": name, "seed": seed, "knob": knob_key(knob),
                       "data": self.data_identity(knob), "report": self.report_identity(),
                       "fidelity": p.fidelity, "steps": self.steps, "batch": p.batch_size,
                       "probe_lr": p.probe_lr, "max_fit": MAX_FIT_POINTS})

    def arm_row(self, arm: str, knob: float, seed: int) -> dict:
        """Train (or reuse) one (arm, knob, seed) and score it on the report split."""
        base = self.shifted(self.profile)
        identity = self.arm_identity(arm, knob, seed)
        row = self.store.find(identity)
        if row is not None or self.write_only:
            return row
        t0 = time.time()
        variant, model = self.train_arm(arm, knob, seed, base)
        kd = self.knob(knob)
        report = kd.report[variant.fidelity]
        n = self.profile.n_classes
        hists = score_head(model, report, n)
        _, caches = kd.train_data[variant.fidelity]
        train_codes = head_codes(model.head, cached_feats(caches["train"]))
        cents = fit_centroids(train_codes, n, seed)
        hists["kmeans_codes"] = score_centroids(
            head_codes(model.head, report.feats, report.feats_flip), cents, report.labels, n)
        row = {"id": identity, "kind": "arm", "name": arm, "knob": knob_key(knob), "seed": seed,
               "unsup": unsup_miou(hists["unsup"].sum(0)),
               "linear": linear_miou(hists["linear"].sum(0)),
               "kmeans_codes": unsup_miou(hists["kmeans_codes"].sum(0)),
               "run_dir": str(self.run_dir(arm, knob, seed)),
               "seconds": round(time.time() - t0, 1)}
        return self.store.add(row, hists)

    def knob_stub(self, knob: float) -> KnobData:
        """The knob's profile without preparing its data (identities only)."""
        if knob in self.knob_data:
            return self.knob_data[knob]
        return KnobData(knob, knob_profile(self.profile, knob), {}, {}, {}, {})

    # -- baselines -------------------------------------------------------------------------
    def baseline_rows(self, knob: float, seed: int) -> None:
        """k-means (fitted on train or on report) and a linear probe on raw features."""
        p = self.profile
        fid = p.fidelity
        todo = [name for name in ("kmeans_raw_train_fit", "kmeans_raw_transductive",
                                  "linear_raw")
                if self.store.find(self.baseline_identity(name, knob, seed)) is None]
        if not todo or self.write_only:
            return
        kd = self.knob(knob)
        report = kd.report[fid]
        _, caches = kd.train_data[fid]
        n = p.n_classes
        for name in todo:
            t0 = time.time()
            if name == "kmeans_raw_train_fit":
                cents = fit_centroids(cached_feats(caches["train"]), n, seed)
                hists = {"unsup": score_centroids(report.feats, cents, report.labels, n)}
            elif name == "kmeans_raw_transductive":
                cents = fit_centroids(report.feats, n, seed)
                hists = {"unsup": score_centroids(report.feats, cents, report.labels, n)}
            else:
                probe = linear_probe_raw(caches["train"], n, self.steps, p.batch_size,
                                         p.probe_lr, seed)
                hists = {"linear": score_linear_raw(probe, report, n)}
            key = next(iter(hists))
            row = {"id": self.baseline_identity(name, knob, seed),
                   "kind": "baseline", "name": name, "knob": knob_key(knob), "seed": seed,
                   key: METRICS[key](hists[key].sum(0)), "seconds": round(time.time() - t0, 1)}
            self.store.add(row, hists)

    # -- the premise at each knob setting, on tune ------------------------------------------
    def premise_identity(self, knob: float) -> str:
        return digest({"kind": "premise", "knob": knob_key(knob), "data": self.data_identity(knob),
                       "tune_seed": self.profile.tune_seed, "n": split_size(self.profile, "tune"),
                       "eval_res": self.profile.eval_res})

    def premise(self, knob: float) -> dict:
        """Same-class AUROC of feature and depth similarity, FPS's share of points on things."""
        row = self.store.find(self.premise_identity(knob))
        if row is None and self.write_only:
            return {}
        if row is None:
            row = self.store.add({"id": self.premise_identity(knob), "kind": "premise",
                                  "name": "premise", "knob": knob_key(knob), "seed": 0,
                                  "premise": self.knob(knob).premise}, {})
        return row["premise"]

    # -- shifts, tuned on tune -------------------------------------------------------------
    def tune_shifts(self) -> None:
        """One shared shift offset for all arms, chosen for STEGO on the tune split."""
        offsets = [float(o) for o in self.profile.study_shift_offsets]
        p = self.profile
        arm = f"stego-{p.fidelity}"
        knob = self.knobs[0]
        if len(offsets) < 2:
            self.shift_offset = offsets[0] if offsets else 0.0
            self.tuning = {"tuned": False, "offset": self.shift_offset,
                           "note": "shifts fixed by the profile (not tuned in this study)"}
            return
        candidates = []
        for o in offsets:
            self.shift_offset = o
            base = self.shifted(p)
            identity = digest({"kind": "tune", "arm": arm, "offset": o, "knob": knob_key(knob),
                                "train": profile_values(base), "steps": self.steps,
                                "data": self.data_identity(knob), "tune_seed": p.tune_seed})
            row = self.store.find(identity)
            if row is None and self.write_only:
                continue
            if row is None:
                variant, model = self.train_arm(arm, knob, 0, base, tag=f"_shift{o:+g}")
                hists = score_head(model, self.knob(knob).tune[variant.fidelity], p.n_classes)
                row = self.store.add({"id": identity, "kind": "tune", "name": arm, "offset": o,
                                      "knob": knob_key(knob), "seed": 0,
                                      "tune_unsup": unsup_miou(hists["unsup"].sum(0)),
                                      "tune_linear": linear_miou(hists["linear"].sum(0))},
                                     hists)
            candidates.append({"offset": o, "shifts": [base.shift_intra, base.shift_inter,
                                                       base.shift_neg],
                               "tune_unsup_miou": round(row["tune_unsup"], 3),
                               "tune_linear_miou": round(row["tune_linear"], 3)})
        if not candidates:  # --write-only before any tuning run finished
            self.shift_offset, self.tuning = 0.0, {"tuned": False, "offset": 0.0,
                                                   "note": "tuning not run yet"}
            return
        best = max(candidates, key=lambda c: c["tune_unsup_miou"])
        self.shift_offset = best["offset"]
        self.tuning = {"tuned": True, "arm": arm, "knob": knob_key(knob), "seed": 0,
                       "split": "tune", "criterion": "unsupervised mIoU on the tune split",
                       "candidates": candidates, "offset": best["offset"],
                       "note": "one shared setting tuned for STEGO and used by every arm"}

    # -- everything ------------------------------------------------------------------------
    def run(self, results_path: Path, publish: Path | None = None) -> dict:
        self.tune_shifts()
        total = len(self.seeds) * len(self.knobs) * len(self.arms)
        bar = tqdm(total=total, desc="study", disable=not self.progress)
        results = {}
        for seed in self.seeds:
            for knob in self.knobs:
                self.premise(knob)
                self.baseline_rows(knob, seed)
                for arm in self.arms:
                    self.arm_row(arm, knob, seed)
                    bar.update(1)
            if not self.write_only:
                results = self.write(results_path, publish)
        bar.close()
        if self.write_only:
            results = self.write(results_path, publish)
        return results

    def write(self, results_path: Path, publish: Path | None) -> dict:
        results = summarize(self)
        save_json(results_path, results)
        figures = write_figures(results, results_path.parent)
        if publish is not None:
            publish_results(results, results_path, figures, publish)
        return results


def run_study(profile: Profile | str, out_dir: str | os.PathLike | None = None,
              seeds: int | None = None, report_seed: int | None = None, device: str = "auto",
              progress: bool = True, resume: bool = True, force: bool = False,
              n_boot: int = 1000, publish: str | os.PathLike | None = None,
              command: str | None = None, write_only: bool = False) -> dict:
    """Run (or resume) the study of `profile` and return its results (also in
    `<out>/results.json`, default `runs/<profile>/study`). `publish` is a folder (e.g.
    `docs/study`) that receives the results file and figures, which also go to `figures/`.
    `write_only` trains and scores nothing new: it writes the results of what is stored."""
    profile = load_profile(profile)
    if report_seed is not None:
        profile = profile.replace(report_seed=int(report_seed))
    out = Path(out_dir) if out_dir is not None else profile.paths.run_dir / "study"
    store = out / "store.json"
    if force and out.exists():
        shutil.rmtree(out / "hists", ignore_errors=True)
        store.unlink(missing_ok=True)
    elif store.exists() and not resume:
        raise DepthGError(f"{store} holds an earlier study; continue it with --resume or "
                          "start over with --force")
    out.mkdir(parents=True, exist_ok=True)
    n = profile.ablation_seeds if seeds is None else int(seeds)
    if command is None:
        command = f"python -m depthg_lib.study --profile {profile_arg(profile)} --seeds {n}" + (
            f" --report-seed {report_seed}" if report_seed is not None else "")
    with torch.random.fork_rng(devices=[]):
        study = Study(profile, out, n, device, progress, n_boot, command)
        study.write_only = write_only
        return study.run(out / "results.json", Path(publish) if publish else None)
