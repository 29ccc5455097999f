"""The artifact store: one root URI (local folder or any fsspec URL), content-addressed stage outputs.

Layout under the root:

    <stage>/<key>/...            one stage output; key = hash of (stage version, config, inputs' hashes)
    <stage>/<key>/manifest.json  written LAST: an output without it is incomplete and never read
    runs/<run_id>/manifest.json  lineage of one pipeline run

Why content-addressed: a re-run with the same inputs finds the finished output and reuses it, and a changed
knob gets a new key, so it never overwrites an older result.

Why files are committed one by one through a local temporary file: a crash mid-write must never leave a
truncated file under its final name. Locally a commit is `os.replace` (atomic); on S3 a single PUT or a
completed multipart upload is atomic too. Readers go through the manifest's file list, never a listing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from primer import secrets
from primer.config import StoreConfig
from primer.errors import StoreError

MANIFEST = "manifest.json"
_TMP_PREFIX = ".tmp-"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(*parts: Any, length: int = 20) -> str:
    """A short stable key from anything JSON-serialisable (config sections, input hashes, versions)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _storage_options(cfg: StoreConfig) -> dict[str, Any]:
    opts: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
    client_kwargs: dict[str, Any] = {}
    endpoint = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    if cfg.region:
        client_kwargs["region_name"] = cfg.region
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    if cfg.credentials_block:
        try:
            from prefect.blocks.system import Secret

            creds = Secret.load(cfg.credentials_block).get()
        except Exception as e:  # never echo the value, only the block's name
            raise StoreError(f"store.credentials_block: cannot load Prefect Secret block "
                             f"{cfg.credentials_block!r} ({type(e).__name__}). Create it with "
                             f"`Secret(value={{'key': ..., 'secret': ...}}).save({cfg.credentials_block!r})`.") from None
        if isinstance(creds, str):
            creds = json.loads(creds)
        opts["key"], opts["secret"] = creds.get("key"), creds.get("secret")
        secrets.register(opts["key"])
        secrets.register(opts["secret"])
    return opts


def filesystem_for(uri: str, cfg: StoreConfig | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path) for any URI, with the store's S3 endpoint/credentials applied to s3:// URIs."""
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    if protocol in ("s3", "s3a"):
        fs = fsspec.filesystem("s3", **_storage_options(cfg or StoreConfig()))
        return fs, uri.split("://", 1)[1]
    if protocol == "file":
        path = uri.split("://", 1)[1] if uri.startswith("file://") else uri
        return LocalFileSystem(), str(Path(path).expanduser().resolve())
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


@dataclass
class FileRecord:
    name: str
    bytes: int
    sha256: str


@dataclass
class Output:
    """A finished stage output, read through its manifest: the one way a stage reads another's output.

    `uri` is where it lives in *this* store (never the `uri` recorded inside the manifest, which names the
    store it was written to: a copied store still reads). Files are listed by the manifest only, so a
    crashed writer's leftovers and unrelated files beside it are never seen.
    """

    uri: str
    manifest: dict[str, Any]

    @property
    def stage(self) -> str:
        return self.manifest.get("stage", "")

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", self.stage)

    @property
    def content_hash(self) -> str:
        return self.manifest.get("content_hash", "")

    @property
    def skipped(self) -> bool:
        """True for the small manifest a stage writes when it had nothing to do (e.g. no teacher)."""
        return bool(self.manifest.get("skipped"))

    @property
    def reason(self) -> str:
        return self.manifest.get("reason", "")

    def file_names(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Names of the listed files that start with `prefix` and end with `suffix`, sorted."""
        return sorted(f["name"] for f in self.manifest.get("files", [])
                      if f["name"].startswith(prefix) and f["name"].endswith(suffix))

    def has_file(self, name: str) -> bool:
        return any(f["name"] == name for f in self.manifest.get("files", []))

    def file_uri(self, name: str) -> str:
        """URI of one listed file; a name the manifest does not list is an error naming both."""
        if not self.has_file(name):
            raise StoreError(f"{self.uri}: the {self.kind or 'stage'} output lists no file {name!r} "
                             f"(it has {', '.join(self.file_names()[:5]) or 'none'})")
        return f"{self.uri.rstrip('/')}/{name}"

    def file_uris(self, prefix: str = "", suffix: str = "") -> list[str]:
        return [f"{self.uri.rstrip('/')}/{n}" for n in self.file_names(prefix, suffix)]


class ArtifactStore:
    """A root URI plus the filesystem that serves it."""

    def __init__(self, cfg: StoreConfig):
        self.cfg = cfg
        self.fs, self._root = filesystem_for(cfg.root, cfg)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.protocol = "file" if self.is_local else cfg.root.split("://", 1)[0]
        if self.is_local:
            Path(self._root).mkdir(parents=True, exist_ok=True)
        else:
            try:
                self.fs.ls(self._root.split("/", 1)[0])
            except FileNotFoundError:
                raise StoreError(f"store.root {cfg.root!r}: bucket does not exist; create it first") from None
            except Exception as e:
                raise StoreError(f"store.root {cfg.root!r}: cannot reach the store "
                                 f"({type(e).__name__}: {secrets.redact(str(e))[:300]}). Check store.endpoint_url "
                                 "and credentials in the environment.") from None

    # ---- paths -------------------------------------------------------------------------------------
    @property
    def root(self) -> str:
        return self._root if self.is_local else f"{self.protocol}://{self._root}"

    def path(self, *parts: str) -> str:
        """Filesystem path (no protocol) under the root."""
        return "/".join([self._root.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def uri(self, *parts: str) -> str:
        """Full URI under the root, as recorded in manifests."""
        path = self.path(*parts)
        return path if self.is_local else f"{self.protocol}://{path}"

    def to_path(self, uri: str) -> str:
        return uri.split("://", 1)[1] if "://" in uri else uri

    def ref(self, uri: str) -> str:
        """The store-relative form of a URI under the root (`pack/<key>`), for manifests and lineage: it
        stays valid when the whole store is copied elsewhere. A URI outside the store is returned as is."""
        if self.is_local and (uri.startswith("file://") or "://" not in uri):
            path = str(Path(uri.removeprefix("file://")).expanduser().resolve())
        elif not self.is_local and uri.startswith(f"{self.protocol}://"):
            path = self.to_path(uri).rstrip("/")
        else:
            return uri
        root = self._root.rstrip("/")
        if path == root:
            return ""
        return path[len(root) + 1:] if path.startswith(root + "/") else uri

    def resolve(self, ref_or_uri: str) -> str:
        """A store-relative reference (`pack/<key>`, as manifests record them) or a URI -> a URI here.
        A relative name that is not in the store is taken as a local path, as the user wrote it."""
        if "://" in ref_or_uri or ref_or_uri.startswith(("/", "~", ".")) or not ref_or_uri:
            return ref_or_uri
        inside = self.uri(ref_or_uri)
        return inside if self.fs.exists(self.to_path(inside)) else ref_or_uri

    def read_output(self, uri: str, stage: str | None = None) -> Output:
        """Read a finished stage output by URI (or store-relative ref). Fails with one line naming the URI
        and what to re-run when it is incomplete or, with `stage`, when it is another stage's output."""
        uri = self.resolve(uri).rstrip("/")
        manifest_uri = f"{uri}/{MANIFEST}"
        if not self.exists(manifest_uri):
            what = f"the {stage} output" if stage else "this output"
            raise StoreError(f"{uri}: incomplete output (no {MANIFEST}): {what} is missing or unfinished; re-run "
                             f"{'`primer ' + stage + '`' if stage else 'the stage that writes it'}")
        manifest = self.read_json(manifest_uri)
        if stage and manifest.get("stage") != stage:
            raise StoreError(f"{uri}: expected a {stage} output, found a {manifest.get('stage')!r} output")
        # `uri` names where the output lives in THIS store: the recorded one is where it was written, and a
        # store copied elsewhere (another folder, S3) must hand its own location downstream.
        return Output(uri=uri, manifest={**manifest, "uri": uri})

    # ---- small objects ------------------------------------------------------------------------------
    def exists(self, uri: str) -> bool:
        return self.fs.exists(self.to_path(uri))

    def read_bytes(self, uri: str) -> bytes:
        try:
            return self.fs.cat_file(self.to_path(uri))
        except FileNotFoundError:
            raise StoreError(f"{uri}: not found in the store") from None

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri))

    @staticmethod
    def _replace_local(dest: str, write: Any) -> None:
        """Write through a temporary sibling, then rename: readers never see a half-written file."""
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{target.name}"
        write(tmp)
        os.replace(tmp, target)

    def put_file(self, local: str | Path, uri: str) -> None:
        """Atomically place a local file at `uri`."""
        dest = self.to_path(uri)
        if self.is_local:
            self._replace_local(dest, lambda tmp: shutil.copyfile(local, tmp))
        else:
            self.fs.put_file(str(local), dest)

    def write_bytes(self, uri: str, data: bytes) -> None:
        dest = self.to_path(uri)
        if self.is_local:
            self._replace_local(dest, lambda tmp: tmp.write_bytes(data))
        else:
            self.fs.pipe_file(dest, data)

    def write_json(self, uri: str, obj: Any) -> None:
        self.write_bytes(uri, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def download(self, uri: str, local: str | Path) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(self.to_path(uri), str(local))
        return local

    # ---- stage outputs ------------------------------------------------------------------------------
    def output(self, stage: str, key: str) -> "StageOutput":
        return StageOutput(self, stage, key)


class StageOutput:
    """One content-addressed output directory: files committed one by one, the manifest last."""

    def __init__(self, store: ArtifactStore, stage: str, key: str):
        self.store, self.stage, self.key = store, stage, key
        self.uri = store.uri(stage, key)
        self.files: list[FileRecord] = []
        self._staging_dir: Path | None = None

    @property
    def _staging(self) -> Path:
        if self._staging_dir is None:
            self._staging_dir = Path(tempfile.mkdtemp(prefix=f"primer-{self.stage}-"))
        return self._staging_dir

    def __repr__(self) -> str:
        return f"StageOutput({self.uri})"

    def file_uri(self, name: str) -> str:
        return f"{self.uri}/{name}"

    @property
    def manifest_uri(self) -> str:
        return self.file_uri(MANIFEST)

    def is_complete(self) -> bool:
        return self.store.exists(self.manifest_uri)

    def read_manifest(self) -> dict[str, Any]:
        """This output's manifest, through the store's one reader (its `uri` is where it lives here)."""
        return self.store.read_output(self.uri).manifest

    def clean_partial(self) -> int:
        """Remove leftovers of a crashed writer (temporary files, files of an unfinished attempt)."""
        if self.is_complete():
            return 0
        path = self.store.path(self.stage, self.key)
        if not self.store.fs.exists(path):
            return 0
        leftovers = self.store.fs.ls(path, detail=False)
        for item in leftovers:
            self.store.fs.rm(item, recursive=True)
        return len(leftovers)

    @contextmanager
    def open_local(self, name: str) -> Iterator[Path]:
        """Yield a local path to write `name` to; on success it is committed atomically to the store."""
        local = self._staging / name
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield local
            self.commit_file(local, name)
        finally:
            local.unlink(missing_ok=True)

    def commit_file(self, local: Path, name: str) -> FileRecord:
        record = FileRecord(name=name, bytes=local.stat().st_size, sha256=sha256_file(local))
        self.store.put_file(local, self.file_uri(name))
        self.files.append(record)
        return record

    def write_json(self, name: str, obj: Any) -> FileRecord:
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        with self.open_local(name) as local:
            local.write_bytes(data)
        return self.files[-1]

    def missing_files(self) -> list[str]:
        """Names of the files this writer committed that are not in the store (any more) at their size."""
        fs = self.store.fs
        root = fs._strip_protocol(self.store.path(self.stage, self.key)).rstrip("/")
        fs.invalidate_cache(root)  # s3fs caches listings; this check must see the store as it is now
        try:
            found = fs.find(root, detail=True)
        except FileNotFoundError:
            found = {}
        sizes = {fs._strip_protocol(path)[len(root) + 1:]: info.get("size") for path, info in found.items()}
        return [r.name for r in self.files if sizes.get(r.name) != r.bytes]

    def commit(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write manifest.json last. Adds the file list and a content hash over all files.

        First checks that every file it lists is still there: a second writer of the same output (the
        same stage run twice at once on the same inputs) starts by removing what it takes for a crashed
        attempt's leftovers, and a manifest over missing files would look complete but be broken.
        """
        missing = self.missing_files()
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise StoreError(
                f"{self.uri}: {len(missing)} file(s) written by this run vanished before its manifest ({shown}): "
                "another run of the same stage on the same inputs is writing this output, or they were deleted. "
                "Nothing was marked complete; re-run when the other run is done (it will reuse its output).")
        files = sorted(self.files, key=lambda r: r.name)
        full = {
            "stage": self.stage,
            "key": self.key,
            "uri": self.uri,
            "ref": self.store.ref(self.uri),
            "created_unix": round(time.time(), 3),
            **manifest,
            "files": [vars(r) for r in files],
            "content_hash": content_key([(r.name, r.sha256) for r in files], length=64),
        }
        self.store.write_json(self.manifest_uri, full)
        if self._staging_dir is not None:
            shutil.rmtree(self._staging_dir, ignore_errors=True)
        return full


    def commit_skipped(self, reason: str, **extra: Any) -> dict[str, Any]:
        """Close this output as skipped: a small manifest with the reason, read back as `Output.skipped`.
        Downstream stages read it like any other output instead of parsing a returned string."""
        return self.commit({"kind": self.stage, "skipped": True, "reason": reason, **extra})


def open_store(cfg: StoreConfig) -> ArtifactStore:
    return ArtifactStore(cfg)
