import pytest

from primer.config import ConfigError, available_profiles, describe_fields, load_config, parse_set_args


def test_profiles_exist_and_load():
    assert {"tiny", "small", "phi1"} <= set(available_profiles())
    tiny, phi1 = load_config("tiny"), load_config("phi1")
    assert tiny.pack.seq_len == 256 and phi1.pack.seq_len == 2048
    assert phi1.tokenizer.vocab_size == 51200


def test_cli_style_overrides_are_typed():
    cfg = load_config("tiny", parse_set_args(["pack.seq_len=512", "pack.val_fraction=0.1",
                                              "store.root=s3://bucket/prefix",
                                              "pack.sources=[{uri: /data, weight: 2}]"]))
    assert cfg.pack.seq_len == 512 and isinstance(cfg.pack.seq_len, int)
    assert cfg.pack.val_fraction == 0.1
    assert cfg.store.root == "s3://bucket/prefix"
    assert cfg.pack.sources[0].uri == "/data" and cfg.pack.sources[0].weight == 2.0


def test_flow_parameter_overrides_accept_strings():
    # Prefect UI forms often send strings: they are coerced to the field's type.
    cfg = load_config("tiny", {"pack.seq_len": "128", "pack.sources": "/some/folder"})
    assert cfg.pack.seq_len == 128
    assert cfg.pack.sources[0].uri == "/some/folder"


@pytest.mark.parametrize("overrides, field", [
    ({"pack.seq_len": 0}, "pack.seq_len"),
    ({"pack.seq_len": 1.5}, "pack.seq_len"),
    ({"pack.seq_len": "many"}, "pack.seq_len"),
    ({"pack.val_fraction": 0.9}, "pack.val_fraction"),
    ({"pack.sources": [{"uri": "x", "weight": -1}]}, "pack.sources[0].weight"),
    ({"pack.sources": [{"uri": "x", "format": "csv"}]}, "pack.sources[0].format"),
    ({"pack.seqlen": 4}, "pack.seqlen"),
    ({"nosuch.section": 1}, "nosuch"),
    ({"tokenizer.vocab_size": 10}, "tokenizer.vocab_size"),
])
def test_bad_values_fail_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", overrides)
    assert str(err.value).startswith(field)


def test_unknown_key_suggests_the_close_match():
    with pytest.raises(ConfigError, match="did you mean 'seq_len'"):
        load_config("tiny", {"pack.seqlen": 4})


def test_unknown_profile_lists_available():
    with pytest.raises(ConfigError, match="tiny"):
        load_config("nosuch")


def test_set_arg_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set_args(["pack.seq_len"])


def test_every_field_is_documented():
    rows = describe_fields()
    assert len(rows) > 10
    assert all(help_text for _, _, help_text in rows), [n for n, _, h in rows if not h]


# ---- the environment layer (between profile and overrides) ------------------------------------------


def test_environment_sets_fields_between_profile_and_overrides():
    env = {"PRIMER_STORE_ROOT": "s3://team/primer", "PRIMER__TRAIN__PRETRAIN__MAX_STEPS": "200",
           "PRIMER__PACK__SEQ_LEN": "512", "UNRELATED": "x"}
    cfg = load_config("tiny", {"pack.seq_len": 128}, environ=env)
    assert cfg.store.root == "s3://team/primer"
    assert cfg.train.pretrain.max_steps == 200  # parsed as YAML: an int
    assert cfg.pack.seq_len == 128  # an explicit override wins over the environment
    assert load_config("phi1", environ=env).train.pretrain.max_steps == 200  # and the environment over the profile


def test_a_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match=r"pack\.seq_ln: no such setting.*PRIMER__PACK__SEQ_LN"):
        load_config("tiny", environ={"PRIMER__PACK__SEQ_LN": "5"})
    with pytest.raises(ConfigError, match=r"pack\.seq_len: must be >= 8.*PRIMER__PACK__SEQ_LEN"):
        load_config("tiny", environ={"PRIMER__PACK__SEQ_LEN": "3"})


def test_primer_config_shows_where_a_value_came_from(monkeypatch, capsys, tmp_path):
    from primer.cli import main

    monkeypatch.setenv("PRIMER_STORE_ROOT", str(tmp_path / "team-store"))
    assert main(["config"]) == 0
    captured = capsys.readouterr()
    assert f'"root": "{tmp_path / "team-store"}"' in captured.out
    assert "from the environment: store.root" in captured.err
