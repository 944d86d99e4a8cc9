"""The study's run: tune the shifts, then every (seed, knob): baselines and the factorial's arms.

Each finished row goes to `store.json` at once (its per-image matrices to `hists/`), keyed by
a digest of everything it depends on, so an interrupted study resumes and a changed setting
is run again rather than mixed in.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import ablation
from ..checkpoint import load_checkpoint
from ..config import Profile
from ..env import resolve_device
from ..errors import DepthGError
from ..io import save_json
from ..knn import same_source_share
from ..losses import OBJECTIVE_VERSION
from ..models import profile_weights_identity
from ..nuisance import Nuisance
from ..train.loop import load_frozen_backbone
from .report import publish_results, summarize, write_figures
from .scoring import (
    MAX_FIT_POINTS,
    cached_feats,
    feature_similarity,
    fit_centroids,
    head_codes,
    linear_probe_raw,
    score_centroids,
    score_head,
    score_linear_raw,
)
from .shifts import SHIFT_NAMES, f_statistics, placed_shifts
from .shipped import load_shipped
from .splits import (
    KNOB,
    NUISANCE_DEFAULTS,
    KnobData,
    Setting,
    apply_nuisance,
    clean_scale,
    knob_key,
    knob_profile,
    nuisance_spec,
    prepare_knob,
    split_size,
)
from .stats import METRICS, linear_miou, unsup_miou
from .store import Store, digest, profile_values

# the regime check (one seed, the reference arm and STEGO): short vs long runs, the decay
# schedules fixed in steps (`depth_decay_every`, as the earlier study ran) or as a share of
# the run (`depth_decay_share`, the released proportions); name → (steps in units of the
# study's `ablation_steps`, schedule as share). The row whose steps and schedule are the
# study's own arms' is their seed-0 run, stored once.
REGIMES = {"short-steps": (1, False), "short-share": (1, True), "long-share": (5, True)}








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
        self.knobs = study_settings(profile)
        self.device = resolve_device(device)
        self.command = command
        self.store = Store(out)
        self.backbone = load_frozen_backbone(profile, self.device)
        self.fidelities = sorted({ablation.arm_factors(a)[2] for a in self.arms}
                                 | {profile.fidelity})
        self.knob_data: dict[Setting, KnobData] = {}
        self.camouflage_data: dict[float, KnobData] = {}
        self.steps = profile.ablation_steps or profile.steps
        self.val_every = max(1, self.steps // 8)
        self.shift_offset = 0.0  # the offset in use while training (set per setting and arm)
        self.base_shifts: dict | None = None  # placed shifts in use (None: the profile's)
        self.offsets: dict[tuple[str, str], float] = {}  # (setting key, arm) → tuned offset
        self.tuning: dict = {}
        self.regime_rows: dict = {}
        self.started = time.time()
        self.write_only = False  # True: only summarise what is stored, train nothing
        self.no_training = False  # True: score stored or shipped heads only (--report-seed)
        self.objective_version = OBJECTIVE_VERSION

    # -- identities: a stored row is reused only when everything it depends on is equal --
    def report_identity(self) -> dict:
        p = self.profile
        return {"report_seed": p.report_seed, "n": split_size(p, "report"), "size":
                p.synth_size, "eval_res": p.eval_res}

    def data_identity(self, knob: Setting) -> dict:
        p = self.profile
        ident = {"knob": knob_key(knob), "train_seed": p.synth_seed, "n_train": p.synth_n_train,
                 "size": p.synth_size, "res": p.res, "backbone": p.backbone,
                 "weights": profile_weights_identity(p)}
        if knob.nuisance:
            ident["nuisance"] = nuisance_spec(knob.nuisance)
        return ident

    def knob(self, value: Setting) -> KnobData:
        if value not in self.knob_data:
            c = float(value.camouflage)
            if c not in self.camouflage_data:
                self.camouflage_data[c] = prepare_knob(self.profile, c, self.fidelities,
                                                       self.backbone, self.device,
                                                       self.progress)
            kd = self.camouflage_data[c]
            if value.nuisance:
                kd = apply_nuisance(kd, self.nuisance(value), self.profile, self.backbone,
                                    self.device, self.progress)
            self.knob_data[value] = kd
        return self.knob_data[value]

    def nuisance(self, value: Setting) -> Nuisance:
        """The setting's nuisance, in units of its clean training features' mean norm."""
        kd = self.camouflage_data[float(value.camouflage)]
        return Nuisance(float(value.nuisance), scale=clean_scale(kd, self.profile.fidelity),
                        dim=self.backbone.dim, **NUISANCE_DEFAULTS)

    def shifted(self, profile: Profile) -> Profile:
        """`profile` with the shifts in use: placed for the setting, plus the tuned offset."""
        o = self.shift_offset
        base = self.base_shifts or {k: getattr(profile, k) for k in SHIFT_NAMES.values()}
        return profile.replace(**{k: round(v + o, 6) for k, v in base.items()})

    def use_offset(self, knob: Setting, arm: str) -> None:
        """Train and identify `arm` at `knob` with the shifts placed for the setting and the
        offset tuned for the arm there."""
        self.shift_offset = self.offsets.get((knob.key, arm), 0.0)
        self.base_shifts = self.placement(knob)["shifts"] if knob.nuisance else None

    def placement(self, knob: Setting) -> dict:
        """The shifts placed by F's statistics at a nuisance setting (`shifts.placed_shifts`),
        stored once: clean and nuisance F per term on the training crops."""
        p = self.profile
        identity = digest({"kind": "placement", "data": self.data_identity(knob),
                           "samples": p.samples, "knn_k": p.knn_k, "pointwise": p.pointwise,
                           "shifts": [p.shift_intra, p.shift_inter, p.shift_neg]})
        row = self.store.find(identity)
        if row is None:
            kd = self.knob(knob)
            clean_data, clean_caches = self.camouflage_data[float(knob.camouflage)].train_data[
                p.fidelity]
            data, caches = kd.train_data[p.fidelity]
            stats = {name: f_statistics(c["train"].feats, d.knn, p.knn_k, p.samples,
                                        pointwise=p.pointwise)
                     for name, (d, c) in (("clean", (clean_data, clean_caches)),
                                          ("now", (data, caches)))}
            shifts = placed_shifts({k: getattr(p, k) for k in SHIFT_NAMES.values()},
                                   stats["clean"], stats["now"])
            row = self.store.add({"id": identity, "kind": "placement", "name": "placement",
                                  "knob": knob_key(knob), "seed": 0, "f": stats,
                                  "shifts": shifts}, {})
        return row


    # -- one trained run -------------------------------------------------------------------
    def run_dir(self, arm: str, knob: Setting, seed: int, tag: str = "") -> Path:
        # the objective's version is in the path: a finished run folder of another objective
        # would otherwise be reused (training settings do not record it)
        return (self.out / "runs" / f"objective{OBJECTIVE_VERSION}" / f"{KNOB}{knob_key(knob)}"
                / f"{arm}{tag}" / f"seed{seed}")

    def variant(self, arm: str, knob: Setting, regime: str = "") -> Profile:
        """The profile `arm` trains with at `knob` under `regime` (steps, schedules, shifts)."""
        self.use_offset(knob, arm)
        times, share = REGIMES[regime] if regime else (1, True)
        steps = times * self.steps
        base = self.shifted_base(self.shifted(self.profile), self.knob_stub(knob))
        base = base.replace(study_nuisance=[])  # the study's design, not the arm's
        if not share:
            base = base.replace(depth_decay_share=0.0, fps_sample_decay_share=0.0)
        return ablation.arm_profile(base, arm, steps, max(1, steps // 8))

    def train_arm(self, arm: str, knob: Setting, seed: int, variant: Profile, tag: str = "",
                  head_id: str | None = None):
        """The trained head: the run folder's, else the shipped one of `head_id`, else (unless
        `no_training`) trained now. None when it is neither there nor to be trained."""
        final = self.run_dir(arm, knob, seed, tag) / "checkpoints" / "final.pt"
        if not final.exists() and head_id is not None:
            model = load_shipped(head_id)
            if model is not None or self.no_training:
                return model
        if self.no_training:  # score what is there, never train
            return load_checkpoint(final, profile=variant) if final.exists() else None
        kd = self.knob(knob)
        data, _ = kd.train_data[variant.fidelity]
        ckpt = ablation.run_arm(variant, self.run_dir(arm, knob, seed, tag), seed, data=data,
                                device=str(self.device), progress=self.progress)
        return load_checkpoint(ckpt, profile=variant)

    def head_identity(self, arm: str, knob: Setting, seed: int, regime: str = "") -> str:
        """What a trained head depends on (not the report split): its shipped file's name."""
        train = profile_values(self.variant(arm, knob, regime))
        # where the data lie, the profile's name and the report split do not change the head
        for key in ("data_root", "name", "description", "report_seed"):
            train.pop(key)
        return digest({"kind": "head", "arm": arm, "seed": seed, "knob": knob_key(knob),
                       "objective": OBJECTIVE_VERSION, "train": train,
                       "data": self.data_identity(knob)})

    def shifted_base(self, base: Profile, kd: KnobData) -> Profile:
        values = {k: getattr(base, k) for k in ("shift_intra", "shift_inter", "shift_neg")}
        return kd.profile.replace(**values)

    def arm_identity(self, arm: str, knob: Setting, seed: int, regime: str = ""
                     ) -> str:
        self.use_offset(knob, arm)
        return digest({"kind": "arm", "arm": arm, "seed": seed, "knob": knob_key(knob),
                       "objective": OBJECTIVE_VERSION,
                       "train": profile_values(self.variant(arm, knob, regime)),
                       "data": self.data_identity(knob),
                       "tune_seed": self.profile.tune_seed, "report": self.report_identity()})

    def baseline_identity(self, name: str, knob: Setting, seed: int) -> str:
        p = self.profile
        return digest({"kind": "baseline", "name": name, "seed": seed, "knob": knob_key(knob),
                       "data": self.data_identity(knob), "report": self.report_identity(),
                       "fidelity": p.fidelity, "steps": self.steps, "batch": p.batch_size,
                       "probe_lr": p.probe_lr, "max_fit": MAX_FIT_POINTS})

    def arm_row(self, arm: str, knob: Setting, seed: int, regime: str = "") -> dict:
        """Train (or reuse) one (arm, knob, seed) and score it on the report split."""
        identity = self.arm_identity(arm, knob, seed, regime)
        row = self.store.find(identity)
        if row is not None or self.write_only:
            return row
        t0 = time.time()
        tag = f"_{regime}" if regime and variant_key(self.variant(arm, knob, regime)) != \
            variant_key(self.variant(arm, knob)) else ""
        variant = self.variant(arm, knob, regime)
        model = self.train_arm(arm, knob, seed, variant, tag,
                               self.head_identity(arm, knob, seed, regime))
        if model is None:
            return None
        kd = self.knob(knob)
        report = kd.report[variant.fidelity]
        n = self.profile.n_classes
        hists = score_head(model, report, n)
        _, caches = kd.train_data[variant.fidelity]
        train_codes = head_codes(model.head, cached_feats(caches["train"]))
        cents = fit_centroids(train_codes, n, seed)
        hists["kmeans_codes"] = score_centroids(
            head_codes(model.head, report.feats, report.feats_flip), cents, report.labels, n)
        tune = score_head(model, kd.tune[variant.fidelity], n)
        row = {"id": identity, "kind": "arm" if not tag else "regime",
               "name": arm, "knob": knob_key(knob), "seed": seed, "regime": regime,
               "steps": variant.steps, "depth_decay_every": variant.depth_decay_every,
               "fps_sample_decay_every": variant.fps_sample_decay_every,
               "shift_offset": self.shift_offset,
               "unsup": unsup_miou(hists["unsup"].sum(0)),
               "linear": linear_miou(hists["linear"].sum(0)),
               "kmeans_codes": unsup_miou(hists["kmeans_codes"].sum(0)),
               "tune_unsup": unsup_miou(tune["unsup"].sum(0)),
               "tune_linear": linear_miou(tune["linear"].sum(0)),
               "run_dir": str(self.run_dir(arm, knob, seed, tag)),
               "head_id": self.head_identity(arm, knob, seed, regime),
               "seconds": round(time.time() - t0, 1)}
        return self.store.add(row, hists)

    def knob_stub(self, knob: Setting) -> KnobData:
        """The knob's profile without preparing its data (identities only)."""
        if knob in self.knob_data:
            return self.knob_data[knob]
        return KnobData(knob, knob_profile(self.profile, float(knob.camouflage)), {}, {}, {},
                        {})

    # -- baselines -------------------------------------------------------------------------
    def baseline_rows(self, knob: Setting, seed: int) -> None:
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
    def premise_identity(self, knob: Setting) -> str:
        return digest({"kind": "premise", "knob": knob_key(knob), "data": self.data_identity(knob),
                       "tune_seed": self.profile.tune_seed, "n": split_size(self.profile, "tune"),
                       "eval_res": self.profile.eval_res, "version": 2})

    def premise(self, knob: Setting) -> dict:
        """Same-class AUROC of feature and depth similarity, FPS's share of points on things,
        and what F looks like at this setting (`feature_similarity`)."""
        row = self.store.find(self.premise_identity(knob))
        if row is None and self.write_only:
            return {}
        if row is None:
            kd = self.knob(knob)
            prem = dict(kd.premise)
            prem["similarity"] = feature_similarity(kd.tune[self.profile.fidelity],
                                                    self.profile.n_classes)
            knn = kd.train_data[self.profile.fidelity][0].knn
            prem["knn_same_source"] = round(same_source_share(
                knn, np.arange(len(knn)) // 5, self.profile.knn_k), 4)
            row = self.store.add({"id": self.premise_identity(knob), "kind": "premise",
                                  "name": "premise", "knob": knob_key(knob), "seed": 0,
                                  "premise": prem}, {})
        return row["premise"]

    # -- shifts, tuned on tune -------------------------------------------------------------
    def tuned_settings(self) -> list[Setting]:
        """Settings whose shifts are tuned: the nuisance settings (the clean features keep the
        shifts tuned for the embedded ViT, docs/reproduction.md)."""
        return [k for k in self.knobs if k.nuisance]

    def tune_shifts(self) -> None:
        """Per nuisance setting and arm, the shift offset (added to all three shifts) with the
        best unsupervised mIoU on the tune split — the same candidates, hence the same budget,
        for every arm; one training seed."""
        offsets = [float(o) for o in self.profile.study_shift_offsets]
        p = self.profile
        self.offsets = {("", ""): 0.0}
        self.tuning = {"tuned": bool(self.tuned_settings()) and len(offsets) > 1,
                       "split": "tune", "seed": 0, "candidates": offsets,
                       "criterion": "unsupervised mIoU on the tune split",
                       "note": ("clean features: the profile's shifts (tuned for the embedded "
                                "ViT); each nuisance setting: one offset added to the three "
                                "shifts, tuned per arm on tune from the same candidates"),
                       "per_setting": {}}
        if len(offsets) < 2:
            self.tuning["note"] = ("clean features: the profile's shifts (tuned for the "
                                   "embedded ViT); each nuisance setting: the shifts placed "
                                   "by F's statistics on the training crops "
                                   "(study.shifts.placed_shifts), the same rule for every "
                                   "arm, not tuned further by training")
            for knob in self.tuned_settings():
                for arm in self.arms:
                    self.offsets[(knob.key, arm)] = offsets[0] if offsets else 0.0
            return
        for knob in self.tuned_settings():
            for arm in self.arms:
                found = []
                for o in offsets:
                    self.offsets[(knob.key, arm)] = o
                    self.use_offset(knob, arm)
                    variant = self.variant(arm, knob)
                    identity = digest({"kind": "tune", "arm": arm, "offset": o,
                                       "knob": knob_key(knob), "train": profile_values(variant),
                                       "data": self.data_identity(knob),
                                       "tune_seed": p.tune_seed})
                    row = self.store.find(identity)
                    if row is None and (self.write_only or self.no_training):
                        continue
                    if row is None:
                        model = self.train_arm(arm, knob, 0, variant, tag=f"_shift{o:+g}")
                        hists = score_head(model, self.knob(knob).tune[variant.fidelity],
                                           p.n_classes)
                        row = self.store.add({"id": identity, "kind": "tune", "name": arm,
                                              "offset": o, "knob": knob_key(knob), "seed": 0,
                                              "tune_unsup": unsup_miou(hists["unsup"].sum(0)),
                                              "tune_linear": linear_miou(
                                                  hists["linear"].sum(0))}, hists)
                    found.append({"offset": o, "tune_unsup_miou": round(row["tune_unsup"], 3),
                                  "tune_linear_miou": round(row["tune_linear"], 3)})
                best = max(found, key=lambda c: c["tune_unsup_miou"])["offset"] if found \
                    else 0.0
                self.offsets[(knob.key, arm)] = best
                self.tuning["per_setting"].setdefault(knob.key, {})[arm] = {
                    "candidates": found, "offset": best,
                    "complete": len(found) == len(offsets)}

    # -- the regime check ------------------------------------------------------------------
    def regime(self, names=None) -> None:
        """Short vs long runs, schedules in steps vs as a share: one seed, STEGO and the
        reference arm, the first setting (scored on tune and on report)."""
        knob = self.knobs[0]
        for name in names or REGIMES:
            for arm in self.regime_arms():
                row = self.arm_row(arm, knob, 0, regime=name)
                if row is not None:
                    self.regime_rows.setdefault(arm, {})[name] = row

    def regime_arms(self) -> list[str]:
        fid = self.profile.fidelity
        return [a for a in (f"stego-{fid}", f"depthg-{fid}") if a in self.arms]

    # -- everything ------------------------------------------------------------------------
    def run(self, results_path: Path, publish: Path | None = None) -> dict:
        """The regime check's short runs, the shift tuning for the nuisance settings, then per
        seed every setting (baselines and arms) — the regime check's long runs after the first
        seed — so that every setting has as many seeds as the time allowed; results written
        after every seed."""
        short = [n for n, (times, _) in REGIMES.items() if times == 1]
        self.regime(short)
        self.tune_shifts()
        total = len(self.seeds) * len(self.knobs) * len(self.arms)
        bar = tqdm(total=total, desc="study", disable=not self.progress)
        results = {}
        for i, seed in enumerate(self.seeds):
            for knob in self.knobs:
                self.premise(knob)
                self.baseline_rows(knob, seed)
                for arm in self.arms:
                    self.arm_row(arm, knob, seed)
                    bar.update(1)
            if not self.write_only:
                results = self.write(results_path, publish)
            if i == 0:
                self.regime([n for n in REGIMES if n not in short])
        bar.close()
        if self.write_only or not results:
            results = self.write(results_path, publish)
        return results


    def write(self, results_path: Path, publish: Path | None) -> dict:
        results = summarize(self)
        save_json(results_path, results)
        figures = write_figures(results, results_path.parent)
        if publish is not None:
            publish_results(results, results_path, figures, publish)
        return results






def variant_key(variant: Profile) -> str:
    return digest(profile_values(variant))


def study_settings(profile: Profile) -> list[Setting]:
    """Every camouflage setting without nuisance, then each nuisance strength at the first
    camouflage setting (`study_nuisance`; 0 is the first setting itself)."""
    knobs = [Setting(float(k)) for k in profile.study_knob]
    bad = [s for s in profile.study_nuisance
           if not isinstance(s, int | float) or not 0 <= s < 1e3]
    if bad:
        raise DepthGError(f"profile {profile.name}: study_nuisance must list strengths >= 0, "
                          f"found {bad}")
    first = knobs[0].camouflage if knobs else 0.0
    return knobs + [Setting(first, float(s)) for s in profile.study_nuisance if s]






