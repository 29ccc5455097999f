"""Read document sources: folders of source files, Parquet and JSONL datasets, on any store URI.

`resolve_source` lists a source's files and fingerprints their contents (so outputs derived from it are
content-addressed); `read_documents` streams its documents in a deterministic order. Bad documents become
counted drops with a reason (invalid_utf8, empty, not_text, malformed_json); a bad *file* (corrupt Parquet,
missing text column, unreachable URI) is an `InputError` naming the file and the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sysconfig
from dataclasses import asdict, dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from primer.config import SourceSpec, StoreConfig
from primer.documents import Document, Drop, DropCounter
from primer.errors import InputError
from primer.store import filesystem_for

PARQUET_EXT = (".parquet", ".pq")
JSONL_EXT = (".jsonl", ".jsonl.gz", ".ndjson")  # not .json: stage outputs hold manifest.json, stats.json
# Aliases for real code that exists on every machine.
ALIASES = {
    "python:stdlib": lambda: sysconfig.get_paths()["stdlib"],
    "python:site-packages": lambda: sysconfig.get_paths()["purelib"],
}
ALIAS_EXCLUDES = {"python:stdlib": ("site-packages/", "dist-packages/")}


@dataclass
class ResolvedSource:
    """A source with its concrete file list and a fingerprint of their contents."""

    spec: SourceSpec
    name: str
    format: str                      # dir | parquet | jsonl
    base: str                        # path the document ids are relative to
    files: list[str] = field(default_factory=list)
    fingerprint: str = ""
    protocol: str = "file"

    def as_record(self) -> dict:
        return {"name": self.name, "uri": self.spec.uri, "format": self.format, "files": len(self.files),
                "weight": self.spec.weight, "fingerprint": self.fingerprint}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spec"] = asdict(self.spec)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ResolvedSource":
        return cls(**{**d, "spec": SourceSpec(**d["spec"])})


def _detect_format(files: list[str], requested: str) -> str:
    if requested != "auto":
        return requested
    if files and all(f.endswith(PARQUET_EXT) for f in files):
        return "parquet"
    if files and all(f.endswith(JSONL_EXT) for f in files):
        return "jsonl"
    return "dir"


def resolve_source(spec: SourceSpec, store_cfg: StoreConfig | None = None, index: int = 0) -> ResolvedSource:
    """List the files of a source and fingerprint them. Raises InputError for an unreachable/empty source."""
    where = f"pack.sources[{index}] ({spec.uri})"
    uri = ALIASES[spec.uri]() if spec.uri in ALIASES else spec.uri
    try:
        fs, path = filesystem_for(uri, store_cfg)
        if fs.isdir(path):
            base = path.rstrip("/")
            if spec.format in ("parquet", "jsonl") or spec.format == "auto" and _has_datasets(fs, base):
                pattern_exts = PARQUET_EXT if spec.format != "jsonl" else JSONL_EXT
                files = sorted(f for f in fs.find(base) if f.endswith(PARQUET_EXT + JSONL_EXT)
                               and (spec.format == "auto" or f.endswith(pattern_exts)))
            else:
                files = sorted(fs.glob(f"{base}/{spec.glob}"))
                files = [f for f in files if fs.isfile(f)]
        elif fs.isfile(path):
            base, files = path.rsplit("/", 1)[0], [path]
        elif any(c in path for c in "*?["):
            files = sorted(fs.glob(path))
            base = path.split("*", 1)[0].rsplit("/", 1)[0]
        else:
            raise InputError(f"{where}: not found. Give an existing folder, file or glob; "
                             "for S3 set store.endpoint_url and credentials in the environment.")
    except InputError:
        raise
    except Exception as e:  # network errors, permissions, bad URL schemes
        raise InputError(f"{where}: cannot read ({type(e).__name__}: {str(e)[:200]})") from None
    for excluded in ALIAS_EXCLUDES.get(spec.uri, ()):
        files = [f for f in files if excluded not in f[len(base):]]
    if not files:
        raise InputError(f"{where}: no files match (glob {spec.glob!r}); check the URI and pack.sources[{index}].glob")
    fmt = _detect_format(files, spec.format)
    src = ResolvedSource(spec=spec, name=spec.display_name(), format=fmt, base=base, files=files,
                         protocol="file" if fs.protocol in ("file", ("file", "local")) else _protocol(uri))
    if fmt == "parquet":
        for f in files:
            _check_parquet(fs, f, spec.text_column, index)
    src.fingerprint = _fingerprint(fs, src)
    return src


def _check_parquet(fs, path: str, column: str, index: int) -> None:
    """Read only the footer: a corrupt file or a missing column fails now, before any heavy work."""
    try:
        with fs.open(path, "rb") as f:
            names = pq.ParquetFile(f).schema_arrow.names
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({str(e)[:160]}). Re-export it or remove it "
                         f"from pack.sources[{index}].") from None
    if column not in names:
        raise InputError(f"{path}: no column {column!r} (columns: {', '.join(names)}). Set "
                         f"pack.sources[{index}].text_column to the column holding the text.")


def _protocol(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def _has_datasets(fs, base: str) -> bool:
    return any(f.endswith(PARQUET_EXT + JSONL_EXT) for f in fs.find(base, maxdepth=2))


def _fingerprint(fs, src: ResolvedSource) -> str:
    """Hash of (relative name, content) for local files; of (name, ETag/size) for remote objects."""
    h = hashlib.sha256(f"{src.format}|{src.spec.text_column}|{src.spec.keep_if}".encode())
    local = src.protocol == "file"
    for f in src.files:
        h.update(f[len(src.base):].encode() + b"\0")
        if local:
            with open(f, "rb") as fh:
                h.update(hashlib.blake2b(fh.read(), digest_size=16).digest())
        else:
            info = fs.info(f)
            h.update(str(info.get("ETag") or info.get("etag") or "").encode())
            h.update(str(info.get("size")).encode())
    return h.hexdigest()


def _fs(src: ResolvedSource, store_cfg: StoreConfig | None):
    if src.protocol == "file":
        return filesystem_for(src.base, store_cfg)[0]
    return filesystem_for(f"{src.protocol}://{src.base}", store_cfg)[0]


def read_documents(src: ResolvedSource, drops: DropCounter, store_cfg: StoreConfig | None = None) -> Iterator[Document]:
    """Stream every document of a source, in file order then row order; bad documents go to `drops`."""
    fs = _fs(src, store_cfg)
    reader = {"dir": _read_source_file, "parquet": _read_parquet, "jsonl": _read_jsonl}[src.format]
    for path in src.files:
        rel = path[len(src.base):].lstrip("/") or path.rsplit("/", 1)[-1]
        yield from reader(fs, path, rel, src, drops)


def _keep(doc_id: str, text: object, src: ResolvedSource, drops: DropCounter, detail: str) -> Document | None:
    if not isinstance(text, str):
        drops.add(Drop(doc_id, src.name, "not_text", f"{detail}: {type(text).__name__} value"))
        return None
    if not text.strip():
        drops.add(Drop(doc_id, src.name, "empty", detail))
        return None
    return Document(id=doc_id, text=text, source=src.name)


def _read_source_file(fs, path: str, rel: str, src: ResolvedSource, drops: DropCounter) -> Iterator[Document]:
    with fs.open(path, "rb") as f:
        raw = f.read()
    if b"\0" in raw[:8192]:
        drops.add(Drop(rel, src.name, "binary", f"{path}: NUL bytes"))
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        drops.add(Drop(rel, src.name, "invalid_utf8", f"{path}: byte {e.start}"))
        return
    doc = _keep(rel, text, src, drops, path)
    if doc:
        yield doc


def _read_jsonl(fs, path: str, rel: str, src: ResolvedSource, drops: DropCounter) -> Iterator[Document]:
    col = src.spec.text_column
    with fs.open(path, "rb") as f:
        stream = gzip.open(f) if path.endswith(".gz") else f
        for lineno, line in enumerate(stream, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                drops.add(Drop(f"{rel}:{lineno}", src.name, "invalid_utf8", where))
                continue
            except json.JSONDecodeError as e:
                drops.add(Drop(f"{rel}:{lineno}", src.name, "malformed_json", f"{where}: {e.msg}"))
                continue
            if not isinstance(record, dict) or col not in record:
                drops.add(Drop(f"{rel}:{lineno}", src.name, "missing_text", f"{where}: no key {col!r}"))
                continue
            if src.spec.keep_if and not record.get(src.spec.keep_if):
                drops.add(Drop(f"{rel}:{lineno}", src.name, f"not_{src.spec.keep_if}", where))
                continue
            doc_id = str(record.get("id", f"{rel}:{lineno}"))
            doc = _keep(doc_id, record[col], src, drops, where)
            if doc:
                yield doc


def _read_parquet(fs, path: str, rel: str, src: ResolvedSource, drops: DropCounter) -> Iterator[Document]:
    col = src.spec.text_column
    handle = fs.open(path, "rb")
    try:
        pf = pq.ParquetFile(handle)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        handle.close()
        raise InputError(f"{path}: not a readable Parquet file ({str(e)[:160]}). Re-export or remove it "
                         f"from source {src.name!r}.") from None
    with handle:
        yield from _parquet_rows(pf, path, rel, src, drops)


def _parquet_rows(pf: pq.ParquetFile, path: str, rel: str, src: ResolvedSource,
                  drops: DropCounter) -> Iterator[Document]:
    col = src.spec.text_column
    names = pf.schema_arrow.names
    if col not in names:
        raise InputError(f"{path}: no column {col!r} (columns: {', '.join(names)}). Set the source's "
                         f"text_column, e.g. --set 'pack.sources=[{{uri: ..., text_column: {names[0]}}}]'.")
    keep_if = src.spec.keep_if
    if keep_if and keep_if not in names:
        raise InputError(f"{path}: no column {keep_if!r} for keep_if (columns: {', '.join(names)})")
    columns = [col] + (["id"] if "id" in names and col != "id" else []) + ([keep_if] if keep_if else [])
    row = 0
    try:
        for batch in pf.iter_batches(columns=columns, batch_size=4096):
            texts = batch.column(col).to_pylist()
            ids = batch.column("id").to_pylist() if "id" in columns else [None] * len(texts)
            flags = batch.column(keep_if).to_pylist() if keep_if else [True] * len(texts)
            for text, doc_id, flag in zip(texts, ids, flags):
                doc_id = str(doc_id) if doc_id is not None else f"{rel}#{row}"
                row += 1
                if not flag:
                    drops.add(Drop(doc_id, src.name, f"not_{keep_if}", f"{path} row {row - 1}"))
                    continue
                doc = _keep(doc_id, text, src, drops, f"{path} row {row - 1}")
                if doc:
                    yield doc
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: corrupt Parquet data after row {row} ({str(e)[:160]})") from None
