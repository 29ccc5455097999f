"""The synthesize flow on a real (temporary) Prefect server: output URI, skip contract, artifacts."""

import pytest

from primer.config import load_config
from primer.store import MANIFEST, open_store
from tests.synth.test_stage import overrides


@pytest.mark.slow
def test_flow_returns_uri_and_publishes_usage(prefect_harness, scripted_server, tmp_path, monkeypatch):
    from flows.synthesize import synthesize
    from tests.conftest import flow_artifacts

    ov = overrides(scripted_server, tmp_path / "store", **{"synth.textbooks": 4, "synth.exercises": 2})
    state = synthesize(profile="tiny", overrides=ov, return_state=True)
    uri = state.result()
    assert uri.startswith(str(tmp_path / "store")) and "/synthesize/" in uri
    assert (tmp_path / "store" / uri.split(str(tmp_path / "store") + "/", 1)[1] / MANIFEST).exists()
    assert synthesize(profile="tiny", overrides=ov) == uri          # reused
    arts = flow_artifacts(state.state_details.flow_run_id, ["synthesize-teacher-usage", "synthesize-samples"])
    assert {"synthesize-teacher-usage", "synthesize-samples"} <= set(arts)

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    skipped = synthesize(profile="tiny", overrides={**ov, "teacher.base_url": "", "teacher.api_key_env": "NOPE_KEY"})
    output = open_store(load_config("tiny", ov).store).read_output(skipped, "synthesize")
    assert output.skipped and output.reason.startswith("no teacher configured")  # a small manifest, not a string
