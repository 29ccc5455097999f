"""Errors that come at once and say what to fix: only transient network errors are retried, a corrupt
Parquet page names its file, an empty result fails with the drop counts, huge documents never reach the
tokenizer's training set."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from primer.config import PackConfig, SourceSpec, StoreConfig, TokenizerConfig
from primer.documents import DropCounter
from primer.errors import InputError, is_transient
from primer.store import open_store
from primer.tokenizer import load_tokenizer
from tasks.pack import pack_documents
from tasks.pack.run import EmptyPackResult
from tasks.pack.steps import get_tokenizer
from tasks.sources import SourceUnreachable, read_documents, resolve_source
from tasks.tokenizer import sample_texts


def test_transient_means_network():
    assert is_transient(ConnectionRefusedError(111, "refused")) and is_transient(TimeoutError())
    assert is_transient(SourceUnreachable("pack.sources[0] (s3://b/x): cannot read"))
    wrapped = RuntimeError("listing failed")
    wrapped.__cause__ = type("EndpointConnectionError", (Exception,), {})("could not connect")
    assert is_transient(wrapped)
    for exc in (InputError("x.parquet: corrupt"), FileNotFoundError("x"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
                ValueError("bad setting")):
        assert not is_transient(exc), exc


def _attempts_of(flow_state) -> list[int]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])))
    return [r.run_count for r in runs]


def test_input_errors_are_not_retried_network_errors_are(prefect_harness, tmp_path):
    from prefect import flow

    from primer.prefect_setup import stage_task
    from tasks.pack import prefect_tasks as T

    @flow
    def resolve_missing():
        return T.resolve_sources([SourceSpec(uri=str(tmp_path / "nowhere"))], StoreConfig(root=str(tmp_path / "s")))

    state = resolve_missing(return_state=True)
    assert state.is_failed()
    with pytest.raises(InputError, match="nowhere\\): not found"):
        state.result()
    assert _attempts_of(state) == [1]  # the real pack task: one attempt, no retry delays

    calls = []

    @stage_task(network=True, cache=False, retry_delay_seconds=0)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(104, "connection reset by peer")
        return "ok"

    @flow
    def network():
        return flaky()

    assert network() == "ok" and len(calls) == 3


def _corrupt_pages(path, how: str) -> None:
    """A Parquet file whose footer is intact but whose data pages are damaged."""
    texts = [f"def f{i}():\n    return {i}  # " + "abcdefgh" * 20 + "\n" for i in range(200)]
    pq.write_table(pa.table({"text": texts}), path, compression="none")
    data = bytearray(path.read_bytes())
    start = data.find(b"abcdefgh", len(data) // 3)
    span = range(start, start + 8) if how == "bytes" else range(start - 600, start + 400)
    for i in span:
        data[i] = 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["bytes", "page"])
def test_corrupt_parquet_pages_fail_in_one_line_naming_the_file(tmp_path, how):
    f = tmp_path / "damaged.parquet"
    _corrupt_pages(f, how)
    src = resolve_source(SourceSpec(uri=str(f)))  # the footer is fine
    with pytest.raises(InputError) as err:
        list(read_documents(src, DropCounter()))
    msg = str(err.value)
    assert "damaged.parquet: corrupt Parquet data" in msg and "\n" not in msg and "Re-export" in msg


def _binary_dir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    for i in range(3):
        (d / f"blob{i}.py").write_bytes(b"\x00\x01ELF" * 50)
    (d / "empty.py").write_text("\n")
    return d


def test_empty_result_fails_with_the_drop_counts(tmp_path, tiny_tokenizer):
    tok, ref = tiny_tokenizer
    d = _binary_dir(tmp_path)
    store_cfg = StoreConfig(root=str(tmp_path / "store"))
    src = resolve_source(SourceSpec(uri=str(d)))
    with pytest.raises(EmptyPackResult, match=r"no training row .*dropped: binary 3, empty 1"):
        pack_documents(open_store(store_cfg), PackConfig(sources=[src.spec]), tok, ref, [src])
    assert not list((tmp_path / "store").glob("pack/*/manifest.json"))  # nothing published
    # training a tokenizer on it fails the same way, before any training
    with pytest.raises(InputError, match=r"no document to train on \(dropped: binary 3, empty 1\)"):
        get_tokenizer(store_cfg, TokenizerConfig(vocab_size=300), PackConfig(sources=[src.spec]), [src])


def test_huge_documents_are_dropped_before_tokenizer_training(tmp_path):
    d = tmp_path / "code"
    d.mkdir()
    for i in range(20):
        (d / f"m{i}.py").write_text("".join(f"def f{i}_{j}(x):\n    return x + {j}\n" for j in range(30)))
    (d / "huge.py").write_text("x = 1\n" * 60_000)  # 360 kB: over the limit set below
    store_cfg = StoreConfig(root=str(tmp_path / "store"))
    src = resolve_source(SourceSpec(uri=str(d)))
    cfg = PackConfig(sources=[src.spec], seq_len=16, max_doc_bytes=100_000)
    ref = get_tokenizer(store_cfg, TokenizerConfig(vocab_size=300), cfg, [src])
    store = open_store(store_cfg)
    tok_manifest = store.read_output(ref.uri.rsplit("/", 1)[0], "tokenizer").manifest
    assert tok_manifest["train_documents"] == 20  # every file but the huge one
    tok, _ = load_tokenizer(store, ref.uri, ref.eos_token)
    m = pack_documents(store, cfg, tok, ref, [src])
    assert m["drops"] == {"too_large": 1}
    assert m["drop_examples"]["too_large"][0]["id"] == "huge.py"
    assert "pack.max_doc_bytes=100000" in m["drop_examples"]["too_large"][0]["detail"]


def test_tokenizer_sample_respects_train_max_bytes_even_for_one_document():
    drops = DropCounter()
    texts = ["a" * 5000, "b" * 400, "c" * 400]
    picked = sample_texts(texts, 1000, seed=0, drops=drops)
    assert sorted(picked) == ["b" * 400, "c" * 400]  # the 5 kB document is never the training set
    assert drops.as_dict() == {"too_large_for_tokenizer": 1}
    assert sample_texts(["z" * 5000], 1000, seed=0) == []
