"""The study's run (`run_study`, `rescore_published`): each finished row (baselines, arms, the
regime check) goes to `store.json` at once, keyed by a digest of all it depends on, so that an
interrupted study resumes and a changed setting is run again rather than mixed in."""

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
from ..knn import same_source_share
from ..losses import OBJECTIVE_VERSION
from ..models import profile_weights_identity
from ..nuisance import Nuisance, mean_norm
from ..train.loop import load_frozen_backbone
from . import scoring, splits
from .report import write_results
from .scoring import FitCache
from .shifts import SHIFT_NAMES, f_statistics, placed_shifts
from .shipped import load_shipped
from .splits import KnobData, Setting

STORE_VERSION = 1


class Store:
    """`store.json`: one row per finished (kind, name, knob, seed) with its identity, written
    after every row; a row's per-image matrices live in `hists/<id>.npz`."""

    def __init__(self, folder: Path):
        self.folder, self.path = folder, folder / "store.json"
        data = load_json(self.path) if self.path.exists() else {}
        self.rows: list[dict] = data.get("rows", []) if data.get("version") == STORE_VERSION else []

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


def profile_values(profile: Profile) -> dict:
    """A profile's settings as part of a row's identity, less the study's own design (knobs,
    arms, seeds), so that growing the study keeps the rows it has."""
    return {k: v for k, v in dataclasses.asdict(profile).items()
            if k != "source" and not k.startswith("study_") and k != "ablation_seeds"}


# the regime check: name → (steps in `ablation_steps`, decay schedules as a share of the run);
# the regime with the arms' own steps and schedule is their seed-0 run, stored once
REGIMES = {"short-steps": (1, False), "short-share": (1, True), "long-share": (5, True)}


def study_settings(profile: Profile) -> list[Setting]:
    """Every camouflage setting, then each nuisance strength at the first camouflage."""
    knobs = [Setting(float(k)) for k in profile.study_knob]
    bad = [s for s in profile.study_nuisance if not isinstance(s, int | float) or not 0 <= s < 1e3]
    if bad:
        raise DepthGError(f"profile {profile.name}: study_nuisance must list strengths >= 0, "
                          f"found {bad}")
    first = knobs[0].camouflage if knobs else 0.0
    return knobs + [Setting(first, float(s)) for s in profile.study_nuisance if s]


class Study:
    """One study run: profile, output folder, store, backbone, prepared knob settings."""

    def __init__(self, profile: Profile, out: Path, seeds: int, device, progress: bool,
                 n_boot: int, command: str, write_only: bool = False, no_training: bool = False,
                 fits_dir: str | os.PathLike | None = None):
        self.profile, self.out, self.progress, self.n_boot = profile, out, progress, n_boot
        self.seeds = list(range(seeds))
        self.arms = list(profile.study_arms) or list(ablation.ARMS)
        self.knobs = study_settings(profile)
        self.device = resolve_device(device)
        self.command = command
        self.store = Store(out)
        self.backbone = load_frozen_backbone(profile, self.device)
        # arm_factors: one clear error for an unknown arm name
        self.fidelities = sorted({ablation.arm_factors(a)[2] for a in self.arms}
                                 | {profile.fidelity})
        self.knob_data: dict[Setting, KnobData] = {}
        self.steps = profile.ablation_steps or profile.steps
        offsets = list(profile.study_shift_offsets)
        if len(offsets) > 1:
            raise DepthGError(f"{profile.source or profile.name}: study_shift_offsets takes one "
                              f"offset (added to the placed shifts), not {offsets}; keep one")
        self.offset = float(offsets[0]) if offsets else 0.0  # at the nuisance settings
        self.regime_rows: dict = {}
        self.write_only = write_only  # only summarise what is stored, train nothing
        self.no_training = no_training  # score stored or shipped heads only (--report-seed)
        self.fits = FitCache(fits_dir)  # report-independent fits kept on disk (re-scoring only)

    # -- identities: a stored row is reused only when everything it depends on is equal --
    def report_identity(self) -> dict:
        p = self.profile
        return {"report_seed": p.report_seed, "n": splits.split_size(p, "report"),
                "size": p.synth_size, "eval_res": p.eval_res}

    def data_identity(self, knob: Setting) -> dict:
        p = self.profile
        return {"knob": knob.key, "train_seed": p.synth_seed, "n_train": p.synth_n_train,
                "size": p.synth_size, "res": p.res, "backbone": p.backbone,
                "weights": profile_weights_identity(p),
                **({"nuisance": splits.nuisance_spec(knob.nuisance)} if knob.nuisance else {})}

    def add_row(self, identity: str, kind: str, name: str, knob: Setting, seed: int,
                hists: dict | None = None, **values) -> dict:
        """Store a finished row (and its per-image matrices) at once."""
        return self.store.add({"id": identity, "kind": kind, "name": name,
                               "knob": knob.key, "seed": seed, **values}, hists or {})

    def identity(self, kind: str, knob: Setting, **values) -> str:
        """The digest of a row of `kind` at `knob`: its data and `values`."""
        return json_digest({"kind": kind, "knob": knob.key,
                            "data": self.data_identity(knob), **values})

    def head_identity(self, arm: str, knob: Setting, seed: int, regime: str = "") -> str:
        """What a trained head depends on (not the report split): its shipped file's name."""
        # where the data lie, the profile's name and the report split do not change the head
        train = {k: v for k, v in profile_values(self.variant(arm, knob, regime)).items()
                 if k not in ("data_root", "name", "description", "report_seed")}
        return self.identity("head", knob, arm=arm, seed=seed, objective=OBJECTIVE_VERSION,
                             train=train)

    def arm_identity(self, arm: str, knob: Setting, seed: int, regime: str = "") -> str:
        return self.identity("arm", knob, arm=arm, seed=seed, objective=OBJECTIVE_VERSION,
                             train=profile_values(self.variant(arm, knob, regime)),
                             tune_seed=self.profile.tune_seed, report=self.report_identity())

    def baseline_identity(self, name: str, knob: Setting, seed: int) -> str:
        p = self.profile
        return self.identity("baseline", knob, name=name, seed=seed,
                             report=self.report_identity(), fidelity=p.fidelity,
                             steps=self.steps, batch=p.batch_size, probe_lr=p.probe_lr,
                             max_fit=scoring.MAX_FIT_POINTS)

    def premise_identity(self, knob: Setting) -> str:
        p = self.profile
        return self.identity("premise", knob, tune_seed=p.tune_seed,
                             n=splits.split_size(p, "tune"), eval_res=p.eval_res, version=2)

    # -- the data of a setting -------------------------------------------------------------
    def knob(self, value: Setting) -> KnobData:
        """A setting's data, prepared once; a nuisance setting's from its clean setting's."""
        if value not in self.knob_data:
            if value.nuisance:
                kd = splits.apply_nuisance(self.knob(Setting(value.camouflage)),
                                           self.nuisance(value), self.profile, self.backbone,
                                           self.device, self.progress)
            else:
                kd = splits.prepare_knob(self.profile, float(value.camouflage), self.fidelities,
                                         self.backbone, self.device, self.progress)
            self.knob_data[value] = kd
        return self.knob_data[value]

    def nuisance(self, value: Setting) -> Nuisance:
        """The setting's nuisance, in units of its clean training features' mean norm."""
        train = self.knob(Setting(value.camouflage)).train_data[self.profile.fidelity][1]["train"]
        return Nuisance(float(value.nuisance), scale=mean_norm(train.feats[:500]),
                        dim=self.backbone.dim)

    def placement(self, knob: Setting) -> dict:
        """The shifts placed by F's statistics on the training crops at a nuisance setting."""
        p = self.profile
        identity = json_digest({"kind": "placement", "data": self.data_identity(knob),
                                "samples": p.samples, "knn_k": p.knn_k, "pointwise": p.pointwise,
                                "shifts": [p.shift_intra, p.shift_inter, p.shift_neg]})
        row = self.store.find(identity)
        if row is not None:
            return row
        now = self.knob(knob).train_data[p.fidelity]
        clean = self.knob(Setting(knob.camouflage)).train_data[p.fidelity]
        stats = {name: f_statistics(caches["train"].feats, data.knn, p.knn_k, p.samples,
                                    pointwise=p.pointwise)
                 for name, (data, caches) in (("clean", clean), ("now", now))}
        shifts = placed_shifts({k: getattr(p, k) for k in SHIFT_NAMES.values()},
                               stats["clean"], stats["now"])
        return self.add_row(identity, "placement", "placement", knob, 0, f=stats, shifts=shifts)

    # -- one trained run -------------------------------------------------------------------
    def run_dir(self, arm: str, knob: Setting, seed: int, tag: str = "") -> Path:
        # the objective in the path: training settings do not record it, its runs would be reused
        return (self.out / "runs" / f"objective{OBJECTIVE_VERSION}"
                / f"{splits.KNOB}{knob.key}" / f"{arm}{tag}" / f"seed{seed}")

    def variant(self, arm: str, knob: Setting, regime: str = "") -> Profile:
        """The profile `arm` trains with at `knob` under `regime` (steps, schedules, shifts)."""
        offset = self.offset if knob.nuisance else 0.0
        shifts = (self.placement(knob)["shifts"] if knob.nuisance else
                  {k: getattr(self.profile, k) for k in SHIFT_NAMES.values()})
        times, share = REGIMES[regime] if regime else (1, True)
        steps = times * self.steps
        # the study's design (its nuisance strengths) is not the arm's
        base = splits.knob_profile(self.profile, float(knob.camouflage)).replace(
            study_nuisance=[], **{k: round(v + offset, 6) for k, v in shifts.items()})
        if not share:
            base = base.replace(depth_decay_share=0.0, fps_sample_decay_share=0.0)
        return ablation.arm_profile(base, arm, steps, max(1, steps // 8))

    def train_arm(self, arm: str, knob: Setting, seed: int, variant: Profile, tag: str,
                  head_id: str):
        """The trained head: the run folder's, else the shipped one of `head_id`, else (unless
        `no_training`) trained now. None when it is neither there nor to be trained."""
        final = self.run_dir(arm, knob, seed, tag) / "checkpoints" / "final.pt"
        if not final.exists():
            model = load_shipped(head_id)
            if model is not None or self.no_training:
                return model
        elif self.no_training:  # score what is there, never train
            return load_checkpoint(final, profile=variant)
        data, _ = self.knob(knob).train_data[variant.fidelity]
        ckpt = ablation.run_arm(variant, self.run_dir(arm, knob, seed, tag), seed, data=data,
                                device=str(self.device), progress=self.progress)
        return load_checkpoint(ckpt, profile=variant)

    def arm_row(self, arm: str, knob: Setting, seed: int, regime: str = "") -> dict:
        """Train (or reuse) one (arm, knob, seed) and score it on the report split."""
        identity = self.arm_identity(arm, knob, seed, regime)
        row = self.store.find(identity)
        if row is not None or self.write_only:
            return row
        t0 = time.time()
        variant = self.variant(arm, knob, regime)
        tag = f"_{regime}" if regime and profile_values(variant) != profile_values(
            self.variant(arm, knob)) else ""
        head_id = self.head_identity(arm, knob, seed, regime)
        model = self.train_arm(arm, knob, seed, variant, tag, head_id)
        if model is None:
            return None
        kd, n = self.knob(knob), self.profile.n_classes
        report, train = kd.report[variant.fidelity], kd.train_data[variant.fidelity][1]["train"]
        hists = scoring.score_head(model, report, n)
        cents = self.fits.centroids(
            scoring.fit_identity("kmeans_codes", train, seed, n, model.head),
            lambda: scoring.fit_centroids(
                scoring.head_codes(model.head, scoring.cached_feats(train)), n, seed))
        codes = scoring.head_codes(model.head, report.feats, report.feats_flip)
        hists["kmeans_codes"] = scoring.score_centroids(codes, cents, report.labels, n)
        tune = scoring.score_head(model, kd.tune[variant.fidelity], n)
        return self.add_row(
            identity, "arm" if not tag else "regime", arm, knob, seed, hists, regime=regime,
            steps=variant.steps, depth_decay_every=variant.depth_decay_every,
            fps_sample_decay_every=variant.fps_sample_decay_every,
            shift_offset=self.offset if knob.nuisance else 0.0,
            **{m: scoring.METRICS[m](hists[m].sum(0)) for m in ("unsup", "linear")},
            kmeans_codes=scoring.unsup_miou(hists["kmeans_codes"].sum(0)),
            **{f"tune_{m}": scoring.METRICS[m](tune[m].sum(0)) for m in ("unsup", "linear")},
            run_dir=str(self.run_dir(arm, knob, seed, tag)), head_id=head_id,
            seconds=round(time.time() - t0, 1))

    # -- baselines and the premise ---------------------------------------------------------
    def baseline_rows(self, knob: Setting, seed: int) -> None:
        """k-means (fitted on train or on report) and a linear probe on raw features."""
        p = self.profile
        todo = [name for name in scoring.RAW_BASELINES
                if self.store.find(self.baseline_identity(name, knob, seed)) is None]
        if not todo or self.write_only:
            return
        kd, n = self.knob(knob), p.n_classes
        report, train = kd.report[p.fidelity], kd.train_data[p.fidelity][1]["train"]
        for name in todo:
            t0 = time.time()
            if name == "linear_raw":
                probe = self.fits.probe(
                    scoring.fit_identity(name, train, seed, n, steps=self.steps,
                                         batch=p.batch_size, lr=p.probe_lr),
                    lambda: scoring.linear_probe_raw(train.feats, train.labels, n, self.steps,
                                                     p.batch_size, p.probe_lr, seed))
                hists = {"linear": scoring.score_linear_raw(probe, report, n)}
            elif name == "kmeans_raw_train_fit":  # fitted on train: kept
                cents = self.fits.centroids(
                    scoring.fit_identity(name, train, seed, n),
                    lambda: scoring.fit_centroids(scoring.cached_feats(train), n, seed))
            else:  # fitted on the report images, each time
                cents = scoring.fit_centroids(report.feats, n, seed)
            if name != "linear_raw":
                hists = {"unsup": scoring.score_centroids(report.feats, cents, report.labels, n)}
            key = next(iter(hists))
            self.add_row(self.baseline_identity(name, knob, seed), "baseline", name, knob, seed,
                         hists, **{key: scoring.METRICS[key](hists[key].sum(0))},
                         seconds=round(time.time() - t0, 1))

    def premise(self, knob: Setting) -> dict:
        """The premise on tune (same-class AUROCs, FPS on things); kNN same-source share (train)."""
        row = self.store.find(self.premise_identity(knob))
        if row is None and not self.write_only:
            kd, p = self.knob(knob), self.profile
            knn = kd.train_data[p.fidelity][0].knn  # five crops per source image
            share = round(same_source_share(knn, np.arange(len(knn)) // 5, p.knn_k), 4)
            row = self.add_row(self.premise_identity(knob), "premise", "premise", knob, 0,
                               premise={**kd.premise, "knn_same_source": share})
        return row["premise"] if row else {}

    # -- everything ------------------------------------------------------------------------
    def regime(self, names) -> None:
        """Short vs long runs, schedules in steps vs as a share: one seed, the first setting."""
        fid = self.profile.fidelity
        for name in names:
            for arm in (a for a in (f"stego-{fid}", f"depthg-{fid}") if a in self.arms):
                row = self.arm_row(arm, self.knobs[0], 0, regime=name)
                if row is not None:
                    self.regime_rows.setdefault(arm, {})[name] = row

    def run(self, results_path: Path, publish: Path | None = None) -> dict:
        """Per seed every setting (the regime check's short runs before, its long ones after
        the first seed), so that every setting has as many seeds as time allowed."""
        short = [n for n, (times, _) in REGIMES.items() if times == 1]
        self.regime(short)
        results = {}
        with tqdm(total=len(self.seeds) * len(self.knobs) * len(self.arms), desc="study",
                  disable=not self.progress) as bar:
            for i, seed in enumerate(self.seeds):
                for knob in self.knobs:
                    self.premise(knob)
                    self.baseline_rows(knob, seed)
                    for arm in self.arms:
                        self.arm_row(arm, knob, seed)
                        bar.update(1)
                if not self.write_only:
                    results = write_results(self, results_path, publish)
                if i == 0:
                    self.regime([n for n in REGIMES if n not in short])
        if self.write_only or not results:
            results = write_results(self, results_path, publish)
        return results


def run_study(profile: Profile | str, out_dir: str | os.PathLike | None = None,
              seeds: int | None = None, report_seed: int | None = None, device: str = "auto",
              progress: bool = True, resume: bool = True, force: bool = False,
              n_boot: int = 1000, publish: str | os.PathLike | None = None,
              command: str | None = None, write_only: bool = False,
              fits_dir: str | os.PathLike | None = None) -> dict:
    """Run (or resume) a study into `<out>/results.json`, and `publish` (docs/study). `write_only`:
    nothing new; `report_seed`: the stored or shipped heads re-scored, fits kept in `fits_dir`."""
    profile = load_profile(profile)
    if report_seed is not None:
        profile = profile.replace(report_seed=int(report_seed))
    out = Path(out_dir) if out_dir is not None else profile.paths.run_dir / "study"
    store = out / "store.json"
    if force:
        shutil.rmtree(out / "hists", ignore_errors=True)
        store.unlink(missing_ok=True)
    elif store.exists() and not resume:
        raise DepthGError(f"{store} holds an earlier study; continue it with --resume or "
                          "start over with --force")
    n = profile.ablation_seeds if seeds is None else int(seeds)
    if command is None:
        command = f"python -m depthg_lib.study --profile {profile_arg(profile)} --seeds {n}" + (
            f" --report-seed {report_seed}" if report_seed is not None else "")
    if fits_dir is None and report_seed is not None:
        fits_dir = out / "rescore_fits"
    with torch.random.fork_rng(devices=[]):
        study = Study(profile, out, n, device, progress, n_boot, command, write_only,
                      no_training=report_seed is not None, fits_dir=fits_dir)
        return study.run(out / "results.json", Path(publish) if publish else None)


def rescore_published(report_seed: int, seeds: int = 1, profile: Profile | str = "study",
                      out_dir: str | os.PathLike | None = None, device: str = "auto",
                      progress: bool = False) -> dict:
    """The shipped heads of the first camouflage setting (clean and nuisance) and `seeds` seeds
    scored on another report split; the fits on the training crops kept in `rescore_fits/`."""
    p = load_profile(profile)
    p = p.replace(study_knob=list(p.study_knob[:1]))
    out = Path(out_dir) if out_dir is not None else (p.paths.run_dir / f"rescore{report_seed}")
    return run_study(p, out_dir=out, seeds=seeds, report_seed=report_seed, device=device,
                     progress=progress, resume=True, n_boot=500,
                     fits_dir=out.parent / "rescore_fits")
