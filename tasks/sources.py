"""Read document sources: folders of source files, Parquet and JSONL datasets, on any store URI.

`resolve_source` lists a source's files and fingerprints their contents (so outputs derived from it are
content-addressed); `read_documents` streams its documents in a deterministic order. Bad documents become
counted drops with a reason (invalid_utf8, empty, not_text, malformed_json); a bad *file* (corrupt Parquet,
missing text column, unreachable URI) is an `InputError` naming the file and the fix.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import sysconfig
from dataclasses import asdict, dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from primer import secrets
from primer.config import SourceSpec, StoreConfig
from primer.documents import LONE_SURROGATE, Document, Drop, DropCounter
from primer.errors import InputError, StoreError, TransientError, is_transient
from primer.store import MANIFEST, Output, filesystem_for, open_store

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


class SourceUnreachable(InputError, TransientError):
    """A source could not be reached for a reason that may pass (network): the one input error retried."""


def _stage_output(uri: str, store_cfg: StoreConfig | None) -> Output | None:
    """The stage output at `uri` (a URI, or a store ref such as `curate/<key>`), or None for raw data."""
    if not ("://" in uri or uri.startswith(("/", "~", "."))):
        if store_cfg is None:
            return None
        uri = open_store(store_cfg).resolve(uri)
    fs, path = filesystem_for(uri, store_cfg)
    if not fs.isfile(path.rstrip("/") + "/" + MANIFEST):
        return None
    # A stage output is <root>/<stage>/<key>: read it through a store rooted two levels up, with this
    # store's endpoint and credentials, so there is one manifest reader wherever the output lives.
    root = uri.rstrip("/").rsplit("/", 2)[0]
    return open_store(dataclasses.replace(store_cfg or StoreConfig(), root=root)).read_output(uri)


def _dataset_files(out: Output, spec: SourceSpec, where: str, setting: str) -> tuple[str, list[str], dict]:
    """(dataset name, listed file URIs, dataset entry) of the manifest's dataset the spec asks for."""
    if out.skipped:
        raise InputError(f"{where}: that {out.stage} output was skipped ({out.reason}); it has no documents. "
                         f"Remove it from {setting} or re-run {out.stage}.")
    datasets = out.manifest.get("datasets") or {}
    if not datasets:
        raise InputError(f"{where}: the {out.stage} output lists no datasets in its manifest; re-run "
                         f"`primer {out.stage}` with this version")
    # Documents are the datasets with a text column; side tables (e.g. synthesize's dropped) have none.
    documents = sorted(n for n, d in datasets.items() if d.get("text_column")) or sorted(datasets)
    name = spec.dataset or (documents[0] if len(documents) == 1 else "")
    if not name:
        raise InputError(f"{where}: the {out.stage} output has several datasets ({', '.join(documents)}); "
                         f"choose one with {setting}[].dataset")
    if name not in datasets:
        raise InputError(f"{where}: the {out.stage} output has no dataset {name!r} (it has "
                         f"{', '.join(sorted(datasets))}); fix {setting}[].dataset")
    entry = datasets[name]
    names = entry.get("files") or ([entry["file"]] if entry.get("file") else [])
    uris = [out.file_uri(n) for n in names]  # a name the manifest's file list lacks is an error here
    return name, uris, entry


def resolve_source(spec: SourceSpec, store_cfg: StoreConfig | None = None, index: int = 0,
                   setting: str = "pack.sources") -> ResolvedSource:
    """List the files of a source and fingerprint them. Raises InputError for an unreachable/empty source.

    Another stage's output (a folder with manifest.json, or its store ref) is read from its manifest: the
    files of `spec.dataset` exactly as listed, fingerprinted by the sha256s recorded there. Anything else
    (a folder, a file, a glob; local, s3://, hf://datasets/...) is listed from the filesystem.
    `setting` names the configuration list the spec came from, for the error messages.
    """
    where = f"{setting}[{index}] ({spec.uri})"
    uri = ALIASES[spec.uri]() if spec.uri in ALIASES else spec.uri
    out = None
    try:
        out = _stage_output(uri, store_cfg)
        if out is not None:
            return _resolve_stage_output(out, spec, where, setting, index, store_cfg)
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
            raise InputError(f"{where}: not found. Give an existing folder, file, glob or stage output; "
                             "for S3 set store.endpoint_url and credentials in the environment.")
    except (InputError, StoreError) as e:
        if spec.dataset and out is None and not isinstance(e, StoreError):
            raise InputError(f"{e} ({setting}[{index}].dataset is set, but that is not a stage output)") from None
        raise
    except Exception as e:  # network errors, permissions, bad URL schemes
        kind = SourceUnreachable if is_transient(e) else InputError  # only a network hiccup is retried
        raise kind(f"{where}: cannot read ({type(e).__name__}: {secrets.redact(str(e))[:200]})") from None
    if spec.dataset:
        raise InputError(f"{where}: {setting}[{index}].dataset is {spec.dataset!r}, but this is not a stage "
                         "output (no manifest.json); remove `dataset` or point the uri at the stage output")
    for excluded in ALIAS_EXCLUDES.get(spec.uri, ()):
        files = [f for f in files if excluded not in f[len(base):]]
    if not files:
        raise InputError(f"{where}: no files match (glob {spec.glob!r}); check the URI and "
                         f"{setting}[{index}].glob")
    fmt = _detect_format(files, spec.format)
    src = ResolvedSource(spec=spec, name=spec.display_name(), format=fmt, base=base, files=files,
                         protocol="file" if fs.protocol in ("file", ("file", "local")) else _protocol(uri))
    if fmt == "parquet":
        for f in files:
            _check_parquet(fs, f, spec.text_column, index, setting, spec.prompt_column)
    src.fingerprint = _fingerprint(fs, src)
    return src


def _resolve_stage_output(out: Output, spec: SourceSpec, where: str, setting: str, index: int,
                          store_cfg: StoreConfig | None) -> ResolvedSource:
    name, uris, entry = _dataset_files(out, spec, where, setting)
    if not uris:
        raise InputError(f"{where}: dataset {name!r} of that {out.stage} output lists no files")
    fmt = entry.get("format") or _detect_format(uris, "auto")
    # The dataset says where its text is; an explicit text_column in the spec (not the default) wins.
    column = spec.text_column if spec.text_column != "text" else entry.get("text_column") or "text"
    prompt = spec.prompt_column or entry.get("prompt_column", "")
    spec = dataclasses.replace(spec, dataset=name, text_column=column, format=fmt, prompt_column=prompt)
    fs, base = filesystem_for(out.uri, store_cfg)
    files = [filesystem_for(u, store_cfg)[1] for u in uris]
    src = ResolvedSource(spec=spec, name=spec.display_name(), format=fmt, base=base.rstrip("/"), files=files,
                         protocol="file" if fs.protocol in ("file", ("file", "local")) else _protocol(out.uri))
    if fmt == "parquet":
        for f in files:
            _check_parquet(fs, f, column, index, setting, spec.prompt_column)
    # The manifest already holds each file's sha256: the fingerprint is location-free and costs no read.
    sha = {f["name"]: f["sha256"] for f in out.manifest.get("files", [])}
    h = hashlib.sha256(f"{fmt}|{column}|{spec.keep_if}|{name}{_prompt_tag(spec)}".encode())
    for u in uris:
        rel = u[len(out.uri.rstrip("/")) + 1:]
        h.update(rel.encode() + b"\0" + sha[rel].encode())
    src.fingerprint = h.hexdigest()
    return src


def _check_parquet(fs, path: str, column: str, index: int, setting: str = "pack.sources", prompt: str = "") -> None:
    """Read only the footer: a corrupt file or a missing column fails now, before any heavy work."""
    try:
        with fs.open(path, "rb") as f:
            names = pq.ParquetFile(f).schema_arrow.names
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({str(e)[:160]}). Re-export it or remove it "
                         f"from {setting}[{index}].") from None
    if column not in names:
        raise InputError(f"{path}: no column {column!r} (columns: {', '.join(names)}). Set "
                         f"{setting}[{index}].text_column to the column holding the text.")
    if prompt and prompt not in names:
        raise InputError(f"{path}: no column {prompt!r} (columns: {', '.join(names)}). Fix or clear "
                         f"{setting}[{index}].prompt_column.")


def _protocol(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def _has_datasets(fs, base: str) -> bool:
    return any(f.endswith(PARQUET_EXT + JSONL_EXT) for f in fs.find(base, maxdepth=2))


def _prompt_tag(spec: SourceSpec) -> str:
    """A prompt column changes what pack writes (a prompt mask); no column leaves older fingerprints as they were."""
    return f"|prompt={spec.prompt_column}" if spec.prompt_column else ""


def _fingerprint(fs, src: ResolvedSource) -> str:
    """Hash of (relative name, content) for local files; of (name, ETag/size) for remote objects."""
    h = hashlib.sha256(f"{src.format}|{src.spec.text_column}|{src.spec.keep_if}{_prompt_tag(src.spec)}".encode())
    local = src.protocol == "file"
    for f in src.files:
        h.update(f[len(src.base):].encode() + b"\0")
        if local:
            with open(f, "rb") as fh:
                h.update(hashlib.blake2b(fh.read(), digest_size=16).digest())
        else:
            info = fs.info(f)
            # S3: ETag; Hugging Face: the LFS sha256 (Parquet files) or the git blob id
            tag = info.get("ETag") or info.get("etag") or (info.get("lfs") or {}).get("sha256") or info.get("blob_id")
            h.update(str(tag or "").encode())
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


def _with_prompt(doc: Document, prompt: object) -> None:
    """Record a document's prompt (a prefix of its text, e.g. an exercise's signature + docstring)."""
    if isinstance(prompt, str) and prompt:
        doc.meta["prompt"] = prompt


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


# A JSON "\\ud800"-style escape: json.loads turns an unpaired one into a lone surrogate (LONE_SURROGATE).
# Only lines that have such an escape are checked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def unpaired_surrogate(fields: dict[str, object]) -> str | None:
    """What is wrong with the first string field holding a lone surrogate, or None."""
    for name, value in fields.items():
        m = LONE_SURROGATE.search(value) if isinstance(value, str) else None
        if m:
            return f"{name!r} has an unpaired surrogate \\u{ord(m.group()):04x} at character {m.start()}"
    return None


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
            prompt = record.get(src.spec.prompt_column) if src.spec.prompt_column else None
            bad = _SURROGATE_ESCAPE.search(line) and unpaired_surrogate(
                {col: record[col], src.spec.prompt_column or "prompt": prompt})
            if bad:
                drops.add(Drop(doc_id, src.name, "invalid_unicode", f"{where}: {bad}"))
                continue
            doc = _keep(doc_id, record[col], src, drops, where)
            if doc:
                _with_prompt(doc, prompt)
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
    prompt_col = src.spec.prompt_column
    if prompt_col and prompt_col not in names:
        raise InputError(f"{path}: no column {prompt_col!r} for prompt_column (columns: {', '.join(names)})")
    columns = [col] + (["id"] if "id" in names and col != "id" else []) + ([keep_if] if keep_if else [])
    columns += [prompt_col] if prompt_col and prompt_col not in columns else []
    row = 0
    try:
        for batch in pf.iter_batches(columns=columns, batch_size=4096):
            texts = batch.column(col).to_pylist()
            ids = batch.column("id").to_pylist() if "id" in columns else [None] * len(texts)
            flags = batch.column(keep_if).to_pylist() if keep_if else [True] * len(texts)
            prompts = batch.column(prompt_col).to_pylist() if prompt_col else [None] * len(texts)
            for text, doc_id, flag, prompt in zip(texts, ids, flags, prompts):
                doc_id = str(doc_id) if doc_id is not None else f"{rel}#{row}"
                row += 1
                if not flag:
                    drops.add(Drop(doc_id, src.name, f"not_{keep_if}", f"{path} row {row - 1}"))
                    continue
                doc = _keep(doc_id, text, src, drops, f"{path} row {row - 1}")
                if doc:
                    _with_prompt(doc, prompt)
                    yield doc
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as e:
        # A valid footer over damaged pages: pyarrow fails while decoding (bad page header, bad
        # compression, or string bytes that are not UTF-8 once decoded).
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        raise InputError(f"{path}: corrupt Parquet data after row {row} ({reason}). Re-export the file or "
                         f"remove it from source {src.name!r}.") from None
