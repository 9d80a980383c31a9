"""Model files: what exists, where it lives, and a sha256-checked download.

The models folder is the config value ``models_dir`` (``$KIRIDASHI_MODELS_DIR`` overrides it).
Nothing here is needed for the default path beyond what pip installs: the LBP anime-face cascade
(MIT, see NOTICE) ships inside the package in :data:`BUNDLED_DIR`; a copy in the models folder
takes precedence, so ``kiridashi models fetch lbpcascade_animeface`` still gets a newer one. The
models folder is for optional extras: SAM / isnetis / YOLO weights.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "detectors" / "data"  # model files in the package


def find_model_file(model_file: str | Path, models_dir: str | Path | None) -> Path | None:
    """Where ``model_file`` is: an absolute (or ``~``) path as given; else
    ``models_dir/model_file`` when that file exists; else the bundled copy of that bare file name
    in :data:`BUNDLED_DIR`; None when there is none."""
    path = Path(model_file).expanduser()
    looked = path if path.is_absolute() else Path(models_dir or "models") / path
    if looked.is_file():
        return looked
    if not path.is_absolute() and len(path.parts) == 1 and (BUNDLED_DIR / path).is_file():
        return BUNDLED_DIR / path
    return None


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


class ModelFileMissing(ModelError, FileNotFoundError):
    """A configured model file does not exist (also a FileNotFoundError)."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _download(url: str, out, timeout: float, label: str) -> str:
    """Stream ``url`` into the open binary file ``out``; returns the sha256 of what was written.

    Progress goes to stderr when it is a terminal (SAM checkpoints are 0.4-2.6 GB).
    """
    digest = hashlib.sha256()
    show = sys.stderr.isatty()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done, shown = 0, -1
        while block := response.read(1 << 20):
            out.write(block)
            digest.update(block)
            done += len(block)
            if show and total and (percent := 100 * done // total) != shown:
                shown = percent
                print(
                    f"\r{label}: {percent:3d}% of {total / 2**20:.0f} MiB", end="", file=sys.stderr
                )
        if show and total:
            print(file=sys.stderr)
        if total and done != total:
            raise ModelError(f"{label}: download truncated ({done} of {total} bytes)")
    return digest.hexdigest()


def fetch(name: str, models_dir: Path, timeout: float = 60.0) -> Path:
    """Download a registered model into ``models_dir`` (temp file, sha256 check, atomic rename).

    An existing file with the right digest is kept. Raises ModelError with a one-line reason
    (unknown name, unreachable URL, HTTP error, digest mismatch, unwritable folder); no partial
    file is left behind.
    """
    if name not in REGISTRY:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    model = REGISTRY[name]
    models_dir = Path(models_dir)
    target = models_dir / model.filename
    if target.exists() and (model.sha256 is None or sha256_of(target) == model.sha256):
        log.info("%s already present: %s", name, target)
        return target
    tmp: str | None = None
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".part", dir=models_dir)
        with os.fdopen(fd, "wb") as out:
            got = _download(model.url, out, timeout, name)
        if model.sha256 is not None and got != model.sha256:
            raise ModelError(f"{name}: sha256 mismatch (got {got}, expected {model.sha256})")
        if model.sha256 is None:
            log.warning("%s has no published sha256; downloaded file's sha256: %s", name, got)
        os.replace(tmp, target)
        tmp = None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = exc.reason if type(exc) is urllib.error.URLError else exc  # no "<urlopen error"
        raise ModelError(f"cannot download {name} from {model.url}: {reason}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return target


def resolve_model_path(value: str | os.PathLike, models_dir: Path) -> Path:
    """A config model value as a path: absolute (or ``~``) as given, else inside ``models_dir``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(models_dir) / path


def fetch_name_for(filename: str) -> str | None:
    """The registry name whose file is ``filename`` (for "run kiridashi models fetch NAME")."""
    return next((m.name for m in REGISTRY.values() if m.filename == Path(filename).name), None)


_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: Path, edge: int = 1 << 20) -> str:
    """A cheap, stable identity of a (large) model file: size + sha256 of its first/last MiB.

    Content-derived (a copy on another machine has the same fingerprint); computed once per
    process per (path, size, mtime), so a replaced file is noticed.
    """
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256(str(stat.st_size).encode())
        with open(path, "rb") as fh:
            h.update(fh.read(edge))
            if stat.st_size > edge:
                fh.seek(max(edge, stat.st_size - edge))
                h.update(fh.read(edge))
        _FINGERPRINTS[key] = h.hexdigest()[:24]
    return _FINGERPRINTS[key]


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
            if (models_dir / m.filename).is_file():
                status = "present"
            else:
                status = "bundled" if (BUNDLED_DIR / m.filename).is_file() else "missing"
            print(f"{m.name:22s} {status:8s} {m.filename}  ({m.used_by})")
        return 0
    status = 0
    for name in args.names:
        try:
            print(f"{name}: {fetch(name, models_dir)}")
        except ModelError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
    return status
