"""`python -m depthg_lib.fetch --profile NAME`: download what a paper profile needs, where it
reads it (docs/reproduction.md §1 and §6).

    python -m depthg_lib.fetch --profile cityscapes-vitb8 --dry-run   # the plan and the disk
    python -m depthg_lib.fetch --profile cityscapes-vitb8             # fetch what is missing
    python -m depthg_lib.fetch --profile stego-cityscapes-vitb8 --only checkpoint

What comes from where:
- backbones — the DINO release files the released code loads (ViT-S/8 is the *300-epoch*
  `dino_deitsmall8_300ep_pretrain.pth`, not the file timm's `vit_small_patch8_224.dino` tag
  points at; ViT-B/8 `dino_vitbase8_pretrain.pth`), saved as `<timm name>.pth` in the folder
  `load_backbone` reads; DINOv2 through the Hugging Face hub cache (timm's hub ids), linked
  there as `<timm name>.safetensors`.
- depth models — through the Hugging Face hub cache (`Intel/zoedepth-nyu` as released,
  Depth-Anything V2 Small), where the depth stage looks for them.
- datasets — STEGO's preprocessed archives (`cocostuff.zip`, `cityscapes.zip`, `potsdam.zip`;
  `potsdamraw.zip` on request), extracted atomically into the profile's dataset folder, then
  checked as `python -m depthg_lib.data check` does.
- released checkpoints — STEGO's from its public storage; DepthG's are on a shared drive and
  are placed by hand (the command says where).

HTTP downloads resume (a `.part` file and a Range request), show a progress bar, and their
sha256 is written to a ledger (`<data_root>/fetch-ledger.json`) and checked on later runs; a
file whose checksum differs from the recorded one is refused. Base URLs can be pointed at a
mirror: `--dino-url` / `$DEPTHG_DINO_URL`, `--stego-url` / `$DEPTHG_STEGO_URL`; the hub honours
`$HF_ENDPOINT`, `$HF_HOME` and `$HF_HUB_OFFLINE`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .config import Profile, load_profile
from .errors import DepthGError, run_cli
from .io import load_json, save_json, sha256_file

DINO_URL = "https://dl.fbaipublicfiles.com/dino/"
STEGO_URL = "https://marhamilresearch4.blob.core.windows.net/stego-public/"
ENV_DINO, ENV_STEGO = "DEPTHG_DINO_URL", "DEPTHG_STEGO_URL"
KINDS = ("backbone", "depth", "dataset", "checkpoint")
LEDGER = "fetch-ledger.json"
CHUNK = 1 << 20
MB, GB = 1e6, 1e9

# timm name → (path under the DINO release, estimated size in bytes)
DINO_FILES = {
    "vit_small_patch8_224.dino": ("dino_deitsmall8_300ep_pretrain/"
                                  "dino_deitsmall8_300ep_pretrain.pth", 87 * MB),
    "vit_base_patch8_224.dino": ("dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth", 344 * MB),
}
# timm name → (hub repo, estimated size); the weights file is model.safetensors
HUB_BACKBONES = {
    "vit_small_patch14_dinov2.lvd142m": ("timm/vit_small_patch14_dinov2.lvd142m", 88 * MB),
    "vit_base_patch14_dinov2.lvd142m": ("timm/vit_base_patch14_dinov2.lvd142m", 347 * MB),
}
DEPTH_SIZES = {"Intel/zoedepth-nyu": 1.4 * GB,
               "depth-anything/Depth-Anything-V2-Small-hf": 0.1 * GB}
# profile dataset → (STEGO archive stem, estimated archive size, estimated extracted size)
DATASETS = {"cocostuff27": ("cocostuff", 20 * GB, 21 * GB),
            "cityscapes": ("cityscapes", 11.5 * GB, 12 * GB),
            "potsdam": ("potsdam", 1.5 * GB, 1.6 * GB)}
EXTRA_ARCHIVES = {"potsdamraw": (3 * GB, 3.2 * GB)}  # STEGO's raw Potsdam; no reader uses it
# profile → released checkpoint file. STEGO's are public; DepthG's are on a shared drive.
STEGO_CHECKPOINTS = {"stego-cocostuff27-vitb8": "cocostuff27_vit_base_5.ckpt",
                     "stego-cityscapes-vitb8": "cityscapes_vit_base_1.ckpt",
                     "stego-potsdam-vits8": "potsdam_test.ckpt"}
DEPTHG_CHECKPOINTS = {"cocostuff27-vits8": "cocostuff_vits.ckpt",
                      "cocostuff27-vitb8": "cocostuff_vitb.ckpt",
                      "cityscapes-vitb8": "cityscapes_vitb.ckpt",
                      "potsdam-vits8": "potsdam_vits.ckpt"}
CHECKPOINT_SIZES = {"vit_small": 95 * MB, "vit_base": 350 * MB}
DEPTHG_DRIVE = ("the Google Drive folder linked from the DepthG repository's README "
                "(github.com/leonsick/depthg, 'pretrained models')")


@dataclass(frozen=True)
class Item:
    """One thing a profile needs: where it comes from, where it goes, how big it is."""

    key: str  # what it is called in the plan
    kind: str  # backbone | depth | dataset | checkpoint
    dest: Path  # the file or folder the stages read
    url: str = ""  # HTTP source
    hub_repo: str = ""  # Hugging Face repo id (hub cache)
    archive: Path | None = None  # download location of a zip to extract into dest
    size: float = 0  # bytes to download (estimate unless `size_known`)
    extracted: float = 0  # bytes after extraction
    size_known: bool = False
    sha256: str = ""  # expected digest when known in advance
    manual: str = ""  # not downloadable: how to get it
    dataset: str = ""  # reader to check after extraction
    note: str = ""


def base_urls(dino: str | None = None, stego: str | None = None) -> tuple[str, str]:
    dino = dino or os.environ.get(ENV_DINO) or DINO_URL
    stego = stego or os.environ.get(ENV_STEGO) or STEGO_URL
    return dino.rstrip("/") + "/", stego.rstrip("/") + "/"


def data_root(profile: Profile) -> Path:
    return profile.paths.data_root


def released_checkpoint_path(profile: Profile | str) -> Path | None:
    """Where a profile's released checkpoint lives (`<data_root>/models/released/<file>`), or
    None when none was released for it."""
    profile = load_profile(profile)
    name = STEGO_CHECKPOINTS.get(profile.name) or DEPTHG_CHECKPOINTS.get(profile.name)
    return data_root(profile) / "models" / "released" / name if name else None


# ------------------------------------------------------------------------------ the plan

def plan(profile: Profile | str, root: str | os.PathLike | None = None,
         only: tuple[str, ...] | None = None, dino_url: str | None = None,
         stego_url: str | None = None) -> list[Item]:
    """The items a profile needs (optionally only some kinds), with `root` replacing its
    data_root."""
    profile = load_profile(profile)
    if root is not None:
        profile = profile.replace(data_root=str(Path(root).expanduser().resolve()))
    dino, stego = base_urls(dino_url, stego_url)
    items: list[Item] = []
    kinds = only or KINDS
    if "backbone" in kinds:
        items += _backbone_items(profile, dino)
    if "depth" in kinds:
        items += _depth_items(profile)
    if "dataset" in kinds:
        items += _dataset_items(profile, stego)
    if "checkpoint" in kinds:
        items += _checkpoint_items(profile, stego)
    return items


def _backbone_items(profile: Profile, dino: str) -> list[Item]:
    from .models import EMBEDDED, backbone_weights_dir, canonical_backbone_name

    name = canonical_backbone_name(profile.backbone)
    if name in EMBEDDED:
        return []
    folder = backbone_weights_dir()
    if name in DINO_FILES:
        rel, size = DINO_FILES[name]
        chosen = profile.backbone_weights
        dest = Path(chosen) if chosen else folder / f"{name}.pth"
        original = folder / Path(rel).name
        if not profile.backbone_weights and not dest.exists() and original.exists():
            dest = original  # placed by hand under its release name, which load_backbone reads
        note = ""
        shadow = folder / f"{name}.safetensors"
        if not profile.backbone_weights and shadow.exists() and "small" in name:
            note = (f"{shadow} exists and is read before {dest.name}; timm's ViT-S/8 file is "
                    "not the 300-epoch checkpoint the released code used — move it away")
        return [Item(Path(rel).name, "backbone", dest, url=dino + rel, size=size, note=note)]
    repo, size = HUB_BACKBONES[name]
    dest = (Path(profile.backbone_weights) if profile.backbone_weights
            else folder / f"{name}.safetensors")
    return [Item(repo, "backbone", dest, hub_repo=repo, size=size)]


def _depth_items(profile: Profile) -> list[Item]:
    from .depth import DEFAULT_MODELS

    if profile.depth_backend not in ("zoedepth", "depth_anything"):
        return []
    model = profile.depth_model or DEFAULT_MODELS[profile.depth_backend]
    folder = Path(os.path.expanduser(model))
    if folder.is_dir() or folder.is_absolute() or model.startswith("."):
        return [Item(model, "depth", folder, manual=f"depth_model is the folder {folder}; put "
                     "the transformers model (config.json, weights) there")]
    return [Item(model, "depth", Path(), hub_repo=model, size=DEPTH_SIZES.get(model, 0.5 * GB))]


def archive_item(stem: str, dest: Path, root: Path, stego: str, size: float, extracted: float,
                 dataset: str = "") -> Item:
    return Item(f"{stem}.zip", "dataset", dest, url=f"{stego}pytorch_data/{stem}.zip",
                archive=root / "downloads" / f"{stem}.zip", size=size, extracted=extracted,
                dataset=dataset)


def _dataset_items(profile: Profile, stego: str) -> list[Item]:
    if profile.dataset not in DATASETS:
        return []  # SynthScenes is generated (chapter 00); `directory` is the user's own
    stem, size, extracted = DATASETS[profile.dataset]
    return [archive_item(stem, profile.paths.dataset_dir, data_root(profile), stego, size,
                         extracted, dataset=profile.dataset)]


def _checkpoint_items(profile: Profile, stego: str) -> list[Item]:
    dest = released_checkpoint_path(profile)
    if dest is None:
        return []
    size = CHECKPOINT_SIZES["vit_base" if "vitb" in profile.name else "vit_small"]
    if profile.name in STEGO_CHECKPOINTS:
        return [Item(dest.name, "checkpoint", dest, url=f"{stego}saved_models/{dest.name}",
                     size=size)]
    return [Item(dest.name, "checkpoint", dest, size=size,
                 manual=f"download {dest.name} from {DEPTHG_DRIVE} and put it at {dest}")]


def extra_items(names: list[str], root: Path, stego: str) -> list[Item]:
    """Catalog entries asked for by name (`--item potsdamraw`)."""
    out = []
    for name in names:
        stem = name.removesuffix(".zip")
        if stem in EXTRA_ARCHIVES:
            size, extracted = EXTRA_ARCHIVES[stem]
        elif stem in {s for s, _, _ in DATASETS.values()}:
            size, extracted = next((a, b) for s, a, b in DATASETS.values() if s == stem)
        else:
            known = sorted(EXTRA_ARCHIVES) + sorted(s for s, _, _ in DATASETS.values())
            raise DepthGError(f"unknown item {name!r}; items: {', '.join(known)}")
        out.append(archive_item(stem, root / stem, root, stego, size, extracted))
    return out


# ------------------------------------------------------------------------------ the ledger

class Ledger:
    """sha256 and size of everything fetched, keyed by source (`<data_root>/fetch-ledger.json`)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict = {}
        if path.exists():
            data = load_json(path)
            self.entries = data.get("files", {}) if isinstance(data, dict) else {}

    def get(self, source: str) -> dict:
        return self.entries.get(source, {})

    def record(self, source: str, **values) -> None:
        values["recorded"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.entries[source] = {**self.entries.get(source, {}), **values}
        save_json(self.path, {"format": 1, "files": self.entries})


# ------------------------------------------------------------------------------ HTTP

def _offline_error(url: str, dest: Path, err: object) -> DepthGError:
    host = urllib.parse.urlsplit(url).netloc
    return DepthGError(
        f"cannot reach {host} to download {url} ({err}); this machine looks offline. Run "
        f"`python -m depthg_lib.fetch` on a machine with a network and copy {dest} here, or "
        f"point {ENV_DINO} / {ENV_STEGO} at a reachable mirror")


def remote_size(url: str, timeout: float = 5.0) -> int | None:
    """Content-Length from a HEAD request; None when the server cannot be asked."""
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def download(url: str, dest: Path, ledger: Ledger, expected_sha256: str = "",
             progress: bool = True, timeout: float = 30.0) -> str:
    """Download `url` to `dest` through `dest.part`, resuming a previous partial download.

    The digest is checked against `expected_sha256` or the ledger's record of this source
    (a mismatch deletes the partial file and is refused), then recorded; only then is the
    file renamed into place. Returns the sha256.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "depthg-course-fetch", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing after `have`: the part may be complete
            total = remote_size(url)
            if total is not None and total == have:
                return _finish(url, part, dest, ledger, expected_sha256, total)
            part.unlink()
            return download(url, dest, ledger, expected_sha256, progress, timeout)
        raise DepthGError(f"downloading {url} failed: HTTP {err.code} {err.reason}; check the "
                          f"address (base URLs: --dino-url/--stego-url, ${ENV_DINO}/"
                          f"${ENV_STEGO})") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _offline_error(url, dest, getattr(err, "reason", err)) from None
    with resp:
        if have and resp.status == 206:
            start = _range_start(resp.headers.get("Content-Range", ""))
            if start != have:
                raise DepthGError(f"the server resumed {url} at byte {start}, not {have}; "
                                  f"delete {part} and run again")
            mode = "ab"
        else:
            have, mode = 0, "wb"  # the server sent the whole file (or nothing was there)
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=dest.name, disable=not progress, leave=False)
        try:
            with open(part, mode) as fh:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException, socket.timeout) as err:
            got = part.stat().st_size if part.exists() else 0
            raise DepthGError(
                f"download of {url} was interrupted at {got} of {total or '?'} bytes "
                f"({type(err).__name__}); run the same command again to resume from {part}"
            ) from None
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got != total:
        raise DepthGError(f"download of {url} was interrupted at {got} of {total} bytes; run "
                          f"the same command again to resume from {part}")
    return _finish(url, part, dest, ledger, expected_sha256, got)


def _range_start(content_range: str) -> int | None:
    try:  # "bytes 100-199/200"
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _finish(url, part: Path, dest: Path, ledger: Ledger, expected: str, size: int) -> str:
    digest = sha256_file(part)
    expected = expected or ledger.get(url).get("sha256", "")
    if expected and digest != expected:
        part.unlink()
        raise DepthGError(
            f"checksum mismatch for {url}: sha256 {digest}, expected {expected} (recorded in "
            f"{ledger.path}); the download was corrupted or the file changed on the server. "
            "The partial file was deleted: run the same command again; if it fails again, "
            "the source changed — remove its entry from the ledger to accept the new file")
    ledger.record(url, sha256=digest, size=size, path=str(dest))
    os.replace(part, dest)
    return digest


def verify_file(url: str, dest: Path, ledger: Ledger, deep: bool) -> str:
    """Check a present file against the ledger: its size always, its sha256 when `deep`."""
    entry = ledger.get(url)
    if not entry:
        return "present (not in the ledger)"
    size = dest.stat().st_size
    if entry.get("size") is not None and size != entry["size"]:
        raise DepthGError(f"{dest} has {size} bytes but {entry['size']} were downloaded "
                          f"({ledger.path}); delete it and run the same command again")
    if deep and sha256_file(dest) != entry.get("sha256"):
        raise DepthGError(f"{dest} does not have the sha256 recorded in {ledger.path} when it "
                          "was downloaded; delete it and run the same command again")
    return "present, sha256 verified" if deep else "present"


# ------------------------------------------------------------------------------ archives

def extract_zip(archive: Path, dest: Path) -> Path:
    """Extract `archive` into `dest` atomically: into a temporary folder beside it, then one
    rename. A single top-level folder in the archive (STEGO's `cityscapes/`…) becomes `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".extract-{dest.name}-*"):  # an interrupted earlier run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{dest.name}-", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                root = tmp.resolve()
                members = zf.infolist()
                for info in tqdm(members, desc=f"extract {archive.name}", unit="file",
                                 leave=False, disable=len(members) < 1000):
                    target = (tmp / info.filename).resolve()
                    if not target.is_relative_to(root):
                        raise DepthGError(f"archive {archive} holds {info.filename!r}, a path "
                                          "outside the folder it extracts to; refusing it")
                    zf.extract(info, tmp)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise DepthGError(f"cannot extract {archive} ({type(err).__name__}: {err}); delete "
                              "it and run the same command again to download it anew") from None
        entries = [p for p in tmp.iterdir() if p.name != "__MACOSX"]
        src = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if dest.exists():
            if any(dest.iterdir()):
                raise DepthGError(f"{dest} already holds files; move it away to extract "
                                  f"{archive} there")
            dest.rmdir()
        os.replace(src, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ------------------------------------------------------------------------------ the hub

def hub_snapshot(repo: str, allow: list[str] | None = None, download: bool = True) -> Path | None:
    """The local snapshot folder of a hub repo: from the cache, else downloaded (unless
    offline or `download` is False, then None)."""
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True, allow_patterns=allow))
    except Exception:  # not cached (the hub raises several types for that)
        pass
    if not download:
        return None
    if constants.HF_HUB_OFFLINE:
        raise DepthGError(f"{repo} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                          "and HF_HUB_OFFLINE is set; unset it on a machine with a network, or "
                          "copy the cache folder models--" + repo.replace("/", "--") + " there")
    try:
        return Path(snapshot_download(repo, allow_patterns=allow))
    except Exception as err:
        raise DepthGError(
            f"cannot download {repo} from the Hugging Face hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}); on a machine with a network run the same "
            f"command, then copy {constants.HF_HUB_CACHE}/models--{repo.replace('/', '--')} "
            "to the same place here") from None


def _hub_weights(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))


def fetch_hub(item: Item, ledger: Ledger, dry_run: bool) -> str:
    allow = (["*.json", "model.safetensors"] if item.kind == "backbone"
             else ["*.json", "*.safetensors", "*.txt"])
    snap = hub_snapshot(item.hub_repo, allow, download=not dry_run)
    if snap is None:
        return "missing"
    weights = _hub_weights(snap)
    if not weights and item.kind == "depth" and not dry_run:  # a repo without safetensors
        snap = hub_snapshot(item.hub_repo, ["*.json", "*.bin", "*.txt"])
        weights = _hub_weights(snap)
    if not weights:
        return "missing" if dry_run else _no_weights(item, snap)
    source = f"hf://{item.hub_repo}@{snap.name}"
    if not ledger.get(source):
        ledger.record(source, revision=snap.name, path=str(snap),
                      files={p.name: p.resolve().name for p in weights})
    if item.kind == "backbone":
        return _link_backbone(item, weights[0], dry_run)
    return f"in the hub cache: {snap}"


def _no_weights(item: Item, snap: Path) -> str:
    raise DepthGError(f"{item.hub_repo} in the hub cache ({snap}) holds no weight file "
                      "(.safetensors or .bin); delete that folder and run again")


def _link_backbone(item: Item, weights: Path, dry_run: bool) -> str:
    dest = item.dest
    if dest.exists():
        return f"present ({dest})"
    if dry_run:
        return f"in the hub cache; would link {dest}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        dest.symlink_to(weights.resolve())
    except OSError:
        shutil.copyfile(weights, dest)
    return f"linked {dest} → hub cache"


# ------------------------------------------------------------------------------ fetching

def status(item: Item) -> str:
    """present / partial / missing / manual, without touching the network."""
    if item.hub_repo:
        if item.kind == "backbone" and item.dest.exists():
            return "present"
        snap = hub_snapshot(item.hub_repo, download=False)
        if snap is None:
            return "missing"
        return "present" if item.kind != "backbone" else "in the hub cache, not linked"
    if item.dest.exists() and (item.dest.is_file() or any(item.dest.iterdir())):
        return "present"
    if item.manual:
        return "manual"
    target = item.archive or item.dest
    if target.exists():
        return "downloaded, not extracted"
    part = target.with_name(target.name + ".part")
    if part.exists():
        return f"partial ({_fmt(part.stat().st_size)} so far)"
    return "missing"


def fetch_item(item: Item, ledger: Ledger, progress: bool = True, keep_archive: bool = False,
               check: bool = True, verify: bool = False) -> str:
    """Make one item present; returns what was done."""
    if item.hub_repo:
        return fetch_hub(item, ledger, dry_run=False)
    now = status(item)
    if now == "present":
        if item.url and item.archive is None:
            return verify_file(item.url, item.dest, ledger, deep=verify)
        return "present"
    if item.manual:
        return "NOT FETCHED: " + item.manual
    if item.archive is None:
        download(item.url, item.dest, ledger, item.sha256, progress)
        return f"downloaded to {item.dest}"
    if not item.archive.exists():
        download(item.url, item.archive, ledger, item.sha256, progress)
    elif ledger.get(item.url):
        verify_file(item.url, item.archive, ledger, deep=verify)
    extract_zip(item.archive, item.dest)
    ledger.record(item.url, extracted_to=str(item.dest))
    if not keep_archive:
        item.archive.unlink()
    done = f"extracted to {item.dest}"
    if check and item.dataset:
        from .data.readers import get_reader

        report = get_reader(item.dataset, item.dest).check()
        print(report)
        if not report.usable:
            raise DepthGError(f"{item.dest} was extracted from {item.key} but the data check "
                              "above finds it unusable; delete the folder and run again, or "
                              "fix what the check lists")
        done += ", data check: usable"
    return done


def _fmt(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.5 * GB else f"{n / MB:.0f} MB" if n >= MB else f"{n:.0f} B"


def describe_plan(items: list[Item], root: Path, probe: bool = True) -> str:
    """The dry-run table: each item, its state, its size and where it goes; then the disk."""
    lines = [f"{'kind':<11}{'item':<44}{'state':<28}{'size':<22}destination"]
    need = 0.0
    for item in items:
        state = status(item)
        size, label = item.size, "estimated"
        if probe and item.url and state not in ("present", "manual"):
            measured = remote_size(item.url)
            if measured is not None:
                size, label = measured, "from the server"
        shown = f"{_fmt(size)} ({label})" if size else "?"
        dest = item.dest if not item.hub_repo or item.kind == "backbone" else "hub cache"
        lines.append(f"{item.kind:<11}{item.key:<44}{state:<28}{shown:<22}{dest}")
        if item.note:
            lines.append(f"{'':<11}note: {item.note}")
        if item.manual and state == "manual":
            lines.append(f"{'':<11}by hand: {item.manual}")
        if state not in ("present", "manual"):
            need += size + (item.extracted if item.archive is not None else 0)
    free = shutil.disk_usage(_existing_parent(root)).free
    lines.append("")
    lines.append(f"would fetch: {sum(status(i) not in ('present', 'manual') for i in items)} "
                 f"item(s); disk needed about {_fmt(need)} (archives are deleted after "
                 f"extraction unless --keep-archives); free at {root}: {_fmt(free)}")
    if need > free:
        lines.append("NOT ENOUGH DISK: choose another --root (or data_root in a copy of the "
                     "profile)")
    return "\n".join(lines)


def _existing_parent(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return path


def fetch(profile: Profile | str, root: str | os.PathLike | None = None,
          only: tuple[str, ...] | None = None, items: list[str] | None = None,
          dry_run: bool = False, progress: bool = True, keep_archives: bool = False,
          check: bool = True, verify: bool = False, dino_url: str | None = None,
          stego_url: str | None = None) -> list[tuple[Item, str]]:
    """Fetch what `profile` needs (see the module docstring); returns (item, outcome) pairs.
    A dry run prints the plan and changes nothing."""
    profile = load_profile(profile)
    if root is not None:
        profile = profile.replace(data_root=str(Path(root).expanduser().resolve()))
    todo = plan(profile, only=only, dino_url=dino_url, stego_url=stego_url)
    droot = data_root(profile)
    if items:
        todo += extra_items(items, droot, base_urls(dino_url, stego_url)[1])
    if dry_run:
        print(f"profile {profile.name}: data_root {droot}")
        print(describe_plan(todo, droot))
        return [(item, "dry run") for item in todo]
    if not todo:
        print(f"profile {profile.name} needs nothing from the network")
        return []
    ledger = Ledger(droot / LEDGER)
    done = []
    for item in todo:
        outcome = fetch_item(item, ledger, progress=progress, keep_archive=keep_archives,
                             check=check, verify=verify)
        print(f"{item.kind:<11}{item.key:<44}{outcome}")
        done.append((item, outcome))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.fetch",
        description="Download what a paper profile needs (backbone, depth model, dataset, "
                    "released checkpoint) to where it reads it; docs/reproduction.md §1, §6.")
    parser.add_argument("--profile", required=True, help="profile name or YAML file")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be fetched and the disk it needs; change nothing")
    parser.add_argument("--root", default=None,
                        help="data folder instead of the profile's data_root (the stages "
                        "read it only if the profile's data_root says so too)")
    parser.add_argument("--only", action="append", choices=KINDS,
                        help="fetch only this kind (repeatable)")
    parser.add_argument("--item", action="append", default=[],
                        help="also fetch a catalog archive by name (potsdamraw)")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep the downloaded zips after extraction")
    parser.add_argument("--verify", action="store_true",
                        help="re-hash present files against the ledger's sha256")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the data check after extracting a dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--dino-url", default=None, help=f"base URL of the DINO release "
                        f"(default ${ENV_DINO} or {DINO_URL})")
    parser.add_argument("--stego-url", default=None, help=f"base URL of STEGO's storage "
                        f"(default ${ENV_STEGO} or {STEGO_URL})")
    parser.add_argument("--released-path", action="store_true",
                        help="print the path of the profile's released checkpoint if present")
    args = parser.parse_args(argv)
    if args.released_path:
        path = released_checkpoint_path(args.profile)
        if path is not None and path.is_file():
            print(path)
        return 0
    results = fetch(args.profile, root=args.root, only=tuple(args.only) if args.only else None,
                    items=args.item, dry_run=args.dry_run, progress=not args.quiet,
                    keep_archives=args.keep_archives, check=not args.no_check,
                    verify=args.verify, dino_url=args.dino_url, stego_url=args.stego_url)
    manual = [item for item, outcome in results if outcome.startswith("NOT FETCHED")]
    if manual and not args.dry_run:
        print(f"{len(manual)} item(s) must be placed by hand (see above); the rest is in place")
    return 0


if __name__ == "__main__":
    run_cli(main)
