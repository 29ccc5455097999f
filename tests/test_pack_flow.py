"""The pack flow under a real Prefect server: artifacts, reuse, CLI errors, and no secret anywhere."""

import json
import logging

import pytest

from primer.cli import main as cli_main
from tests.conftest import flow_artifacts


KEYS = ["pack-sources", "pack-summary", "pack-progress"]


def _overrides(corpus_dir, root, **extra):
    return {"store.root": root, "pack.sources": [{"uri": str(corpus_dir / "json"), "name": "json"},
                                                 {"uri": str(corpus_dir / "email"), "name": "email", "weight": 2}],
            "pack.seq_len": 64, "tokenizer.vocab_size": 512, **extra}


def test_pack_flow_publishes_artifacts_and_reuses(prefect_harness, tmp_path, corpus_dir):
    from flows.pack import pack

    state = pack(profile="tiny", overrides=_overrides(corpus_dir, str(tmp_path / "store")), return_state=True)
    uri = state.result()
    manifest = json.loads((tmp_path / "store" / "pack" / uri.rsplit("/", 1)[-1] / "manifest.json").read_text())
    assert manifest["splits"]["train"]["rows"] > 0

    kinds = flow_artifacts(state.state_details.flow_run_id, KEYS)
    assert set(kinds) == set(KEYS)
    table = kinds["pack-sources"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["source"] for r in rows} == {"json", "email"}
    assert uri in kinds["pack-summary"].data
    assert float(kinds["pack-progress"].data) == 100.0

    again = pack(profile="tiny", overrides=_overrides(corpus_dir, str(tmp_path / "store")), return_state=True)
    assert again.result() == uri
    summary = flow_artifacts(again.state_details.flow_run_id, ["pack-summary"])["pack-summary"]
    assert "(reused)" in summary.data, "the second run should report that it reused the shards"


def test_cli_bad_input_prints_one_clear_line(prefect_harness, tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not parquet")
    code = cli_main(["pack", "--store", str(tmp_path / "s"), "--source", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("primer pack: error: ") and "bad.parquet: not a readable Parquet file" in err[-1]


def test_cli_bad_config_fails_before_running(tmp_path, capsys):
    code = cli_main(["pack", "--store", str(tmp_path), "--set", "pack.seq_len=-3"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "primer pack: error: pack.seq_len: must be >= 8, got -3"
    assert not (tmp_path / "pack").exists()


def test_secrets_never_reach_logs_artifacts_or_manifests(prefect_harness, s3_env, corpus_dir, caplog):
    import s3fs

    from flows.pack import pack

    secret = "primer-test-secret-value-XYZ"
    caplog.set_level(logging.DEBUG)
    overrides = _overrides(corpus_dir, f"s3://{s3_env['bucket']}/primer", **{"store.endpoint_url": s3_env["endpoint"]})
    state = pack(profile="tiny", overrides=overrides, return_state=True)
    uri = state.result()
    assert uri.startswith(f"s3://{s3_env['bucket']}/primer/pack/")

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_env["endpoint"]})
    for path in fs.find(s3_env["bucket"]):
        if path.endswith(".json"):
            assert secret not in fs.cat_file(path).decode(), path
    assert secret not in caplog.text
    artifacts = flow_artifacts(state.state_details.flow_run_id, KEYS)
    assert len(artifacts) == 3
    for artifact in artifacts.values():
        assert secret not in json.dumps(artifact.data)
