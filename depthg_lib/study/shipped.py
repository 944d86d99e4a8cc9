"""The study's trained heads as shipped with the repository (`tools/study_ship.py`), so that
`--report-seed S` scores them without training: `weights/study/<head id>.safetensors`, the id a
digest of all the head depends on (`Study.head_identity`), the same on a fresh clone."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from ..checkpoint import TrainedModel
from ..embedded import WEIGHTS_DIR
from ..errors import DepthGError
from ..io import load_json
from ..models import DepthGModel

SHIPPED_DIR = WEIGHTS_DIR / "study"
MANIFEST = "manifest.json"
PARTS = ("head", "cluster_probe", "linear_probe")


def load_shipped(head_id: str, folder: Path = SHIPPED_DIR) -> TrainedModel | None:
    """The shipped head of this id, or None."""
    path = folder / f"{head_id}.safetensors"
    if not path.exists():
        return None
    info = load_json(folder / MANIFEST).get("heads", {}).get(head_id)
    if info is None:
        raise DepthGError(f"{path} has no entry in {folder / MANIFEST}; ship the study's heads "
                          "again: python tools/study_ship.py --profile study --out DIR")
    model = DepthGModel(info["backbone_dim"], info["code_dim"], info["n_classes"],
                        info["extra_clusters"], info["dropout"], info["nonlinear"]).eval()
    # the file's keys are "<part>.<name>", as the model's own
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return TrainedModel(*(getattr(model, part) for part in PARTS), info["backbone"],
                        {"profile": {}, "path": str(path), "shipped": True})
