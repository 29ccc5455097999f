"""Where benchmark data files come from: a configured path, the environment, a copy beside the checkout, or a
pinned, sha256-checked download into a cache. Never bundled (MBPP is CC BY 4.0 and not ours to ship).

MBPP lookup, in order (the product and the tests use the same one, `locate_mbpp`):

1. the configured location (`evaluate.mbpp_path` / `curate.mbpp_path`: a path or any fsspec URL), as given;
2. `$PRIMER_MBPP_PATH`;
3. `../shared/data/mbpp/mbpp.jsonl` beside the checkout (how CI lays out its workspace);
4. the cache, `$PRIMER_CACHE_DIR` (default `$XDG_CACHE_HOME/primer`, i.e. `~/.cache/primer`)
   `/mbpp/<sha256>/mbpp.jsonl`, filled on first use by downloading the pinned upstream file
   (google-research `mbpp/mbpp.jsonl` at commit 2251e8c6…) and refusing it unless its sha256 matches.

With none of these (offline, nothing configured) the lookup raises one `InputError` naming `PRIMER_MBPP_PATH`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from primer.errors import InputError

MBPP_ENV = "PRIMER_MBPP_PATH"
CACHE_ENV = "PRIMER_CACHE_DIR"
CHECKOUT = Path(__file__).resolve().parents[2]          # the repository root of this checkout


@dataclass(frozen=True)
class PinnedFile:
    """A file known by its content: fetched from `url`, accepted only when its sha256 is `sha256`."""

    name: str
    url: str
    sha256: str
    what: str = ""


MBPP_COMMIT = "2251e8c67a7fe7d6348714967ee101080b28e956"
MBPP_FILE = PinnedFile(
    name="mbpp.jsonl",
    url=f"https://raw.githubusercontent.com/google-research/google-research/{MBPP_COMMIT}/mbpp/mbpp.jsonl",
    sha256="0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a",
    what="MBPP")
MBPP_BESIDE_CHECKOUT = CHECKOUT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "primer"


def cached_path(pinned: PinnedFile, root: Path | None = None) -> Path:
    """Where the cache keeps `pinned` (by its hash, so a re-pinned file never reads a stale copy)."""
    return (root or cache_dir()) / pinned.name.split(".")[0] / pinned.sha256 / pinned.name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_pinned(pinned: PinnedFile, root: Path | None = None, *, url: str = "", timeout_s: float = 30.0) -> Path:
    """The cached copy of `pinned`, downloading it first when absent. A download whose sha256 differs is
    refused (and not kept); so is a cached copy that was changed after the fact."""
    dest = cached_path(pinned, root)
    if dest.is_file():
        if _sha256(dest) == pinned.sha256:
            return dest
        dest.unlink()  # corrupted or edited: fetch again
    src = url or pinned.url
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    try:
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(src, timeout=timeout_s) as resp, os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    h.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise InputError(f"could not download {pinned.what or pinned.name} from {src} "
                             f"({getattr(e, 'reason', e)})") from None
        if h.hexdigest() != pinned.sha256:
            raise InputError(f"refused {src}: sha256 {h.hexdigest()} is not the pinned {pinned.sha256} "
                             f"({pinned.what or pinned.name} changed upstream or the download was altered)")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def mbpp_missing_message(detail: str = "") -> str:
    return (f"MBPP not found: set {MBPP_ENV} to a copy of mbpp.jsonl (google-research mbpp/mbpp.jsonl at commit "
            f"{MBPP_COMMIT[:12]}, sha256 {MBPP_FILE.sha256[:12]}…), or place it at "
            f"../shared/data/mbpp/mbpp.jsonl beside the checkout, or allow the one-time download into "
            f"{cached_path(MBPP_FILE)}" + (f" [{detail}]" if detail else ""))


def find_mbpp_offline(configured: str = "") -> str:
    """Steps 1-4 without the network: the first location that exists, else ""."""
    if configured:
        return os.fspath(configured)
    if os.environ.get(MBPP_ENV):
        return os.environ[MBPP_ENV]
    if MBPP_BESIDE_CHECKOUT.is_file():
        return str(MBPP_BESIDE_CHECKOUT)
    cached = cached_path(MBPP_FILE)
    if cached.is_file() and _sha256(cached) == MBPP_FILE.sha256:
        return str(cached)
    return ""


def locate_mbpp(configured: str = "", *, download: bool = True) -> str:
    """The MBPP location to read (path or URL), by the lookup above; raises one clear `InputError` if none."""
    found = find_mbpp_offline(configured)
    if found:
        return found
    if not download:
        raise InputError(mbpp_missing_message("downloads disabled"))
    try:
        return str(fetch_pinned(MBPP_FILE, url=os.environ.get("PRIMER_MBPP_URL", "")))
    except InputError as e:
        raise InputError(mbpp_missing_message(str(e))) from None


def try_locate_mbpp(configured: str = "", *, download: bool = True) -> tuple[str, str]:
    """(location, "") or ("", why not): for stages that carry on without MBPP and say so."""
    try:
        return locate_mbpp(configured, download=download), ""
    except InputError as e:
        return "", str(e)
