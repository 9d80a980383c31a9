"""Model files: what exists, where it lives, and a sha256-checked download.

The models folder is the config value ``models_dir`` (``$KIRIDASHI_MODELS_DIR`` overrides it).
Nothing here is needed for the default path beyond what pip installs: the LBP anime-face cascade
improves detection when present; SAM / isnetis / YOLO are optional backends.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFile:
    name: str
    filename: str
    url: str
    sha256: str | None  # None: no published digest; the download's digest is printed instead
    licence: str
    used_by: str


REGISTRY: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            "lbpcascade_animeface",
            "lbpcascade_animeface.xml",
            "https://raw.githubusercontent.com/nagadomi/lbpcascade_animeface/master/"
            "lbpcascade_animeface.xml",
            "9376d30ac38db6bda2a68b88b3b76bbd7e6aa33af47f7f5c76bc88ca75f1ce30",
            "MIT",
            "detect.detectors.lbp_cascade",
        ),
        ModelFile(
            "sam_vit_b",
            "sam_vit_b_01ec64.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            "Apache-2.0",
            "segment=sam_vit_b",
        ),
        ModelFile(
            "sam_vit_l",
            "sam_vit_l_0b3195.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            "Apache-2.0",
            "segment=sam_vit_l",
        ),
        ModelFile(
            "sam_vit_h",
            "sam_vit_h_4b8939.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            "Apache-2.0",
            "segment=sam_vit_h",
        ),
        ModelFile(
            "isnetis",
            "isnetis.onnx",
            "https://huggingface.co/skytnt/anime-seg/resolve/main/isnetis.onnx",
            None,
            "Apache-2.0",
            "segment=isnetis",
        ),
    )
}


class ModelError(RuntimeError):
    """A model file is missing or failed its check; the message says what to do."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, models_dir: Path, timeout: float = 60.0) -> Path:
    """Download a registered model into ``models_dir`` (temp file, sha256 check, rename).

    An existing file with the right digest is kept. Raises ModelError with the reason.
    """
    if name not in REGISTRY:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    model = REGISTRY[name]
    models_dir = Path(models_dir)
    target = models_dir / model.filename
    if target.exists() and (model.sha256 is None or sha256_of(target) == model.sha256):
        log.info("%s already present: %s", name, target)
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".part", dir=models_dir)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(model.url, timeout=timeout) as r:
            while block := r.read(1 << 20):
                out.write(block)
                digest.update(block)
        got = digest.hexdigest()
        if model.sha256 is not None and got != model.sha256:
            raise ModelError(f"{name}: sha256 mismatch (got {got}, expected {model.sha256})")
        if model.sha256 is None:
            log.warning("%s has no published sha256; downloaded file's sha256: %s", name, got)
        os.replace(tmp, target)
    except ModelError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(f"cannot download {name} from {model.url}: {exc}") from None
    return target


def require(path: Path, config_key: str, name: str | None = None) -> Path:
    """``path`` if it exists, else a ModelError that names the config key and the fix."""
    if Path(path).is_file():
        return Path(path)
    fix = f"run `kiridashi models fetch {name}`" if name else "put the file there"
    raise ModelError(f"model file not found: {path} (config key {config_key}); {fix}")


def main(args: argparse.Namespace) -> int:
    from kiridashi.config import load_params, resolve_models_dir

    try:
        configured = load_params().get("models_dir")
    except OSError:
        configured = None
    models_dir = resolve_models_dir(configured)
    if args.models_command == "path":
        print(models_dir)
        return 0
    if args.models_command == "list":
        for m in REGISTRY.values():
            present = (models_dir / m.filename).is_file()
            print(
                f"{m.name:22s} {'present' if present else 'missing':8s} {m.filename}  ({m.used_by})"
            )
        return 0
    status = 0
    for name in args.names:
        try:
            print(f"{name}: {fetch(name, models_dir)}")
        except ModelError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
    return status
