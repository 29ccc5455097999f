import pytest
import torch

from model import generate

from .helpers import EOS, doc, make_model

PROMPTS = [doc(5, 1).tolist(), doc(2, 2).tolist(), doc(11, 3).tolist()]  # ragged: exercises left padding


@pytest.fixture(scope="module")
def model():
    return make_model(seed=7)


def test_kv_cache_equals_no_cache_and_solo_rows(model):
    cached = generate(model, PROMPTS, 24, eos_token_id=None)
    plain = generate(model, PROMPTS, 24, eos_token_id=None, use_cache=False)
    solo = [generate(model, [p], 24, eos_token_id=None)[0] for p in PROMPTS]
    for c, p, s in zip(cached, plain, solo):
        assert len(c.tokens) == 24 and c.finish_reason == "length"
        assert c.tokens == p.tokens == s.tokens
    assert len({tuple(c.tokens) for c in cached}) == 3  # rows differ: the comparison is not vacuous
    assert max(len(set(c.tokens)) for c in cached) > 3


def test_greedy_matches_argmax_of_full_forward(model):
    [g] = generate(model, [PROMPTS[0]], 6, eos_token_id=None)
    seq = list(PROMPTS[0])
    with torch.no_grad():
        for _ in range(6):
            seq.append(int(model(torch.tensor([seq]))[0][0, -1].argmax()))
    assert g.tokens == seq[len(PROMPTS[0]):]


@pytest.mark.parametrize("use_cache", [True, False])
def test_stops_are_per_row(model, use_cache):
    ref = generate(model, PROMPTS, 20, eos_token_id=None)
    r0, r1 = ref[0].tokens, ref[1].tokens
    tok_stop = r0[6:8]  # row 0 must stop right after producing these two tokens
    first = next(i for i in range(len(r0) - 1) if r0[i:i + 2] == tok_stop)
    # String stop for row 1 via a decode callback: "tokens joined by spaces".
    decode = lambda ids: " ".join(map(str, ids))  # noqa: E731
    str_stop = f"{r1[3]} {r1[4]}"
    out = generate(model, PROMPTS, 20, eos_token_id=None, stop=[tok_stop, str_stop], decode=decode,
                   use_cache=use_cache)
    assert out[0].finish_reason == "stop" and out[0].stop == tok_stop
    assert out[0].tokens == r0[:first + 2]
    assert out[1].finish_reason == "stop" and out[1].stop == str_stop
    assert str_stop in decode(out[1].tokens) and str_stop not in decode(out[1].tokens[:-1])
    assert out[1].tokens == r1[:len(out[1].tokens)]
    # Row 2 is unaffected by the others stopping (unless it happens to hit a stop itself).
    if out[2].finish_reason == "length":
        assert out[2].tokens == ref[2].tokens


def test_eos_stops_and_is_not_returned(model):
    ref = generate(model, PROMPTS, 12, eos_token_id=None)
    t = ref[2].tokens
    out = generate(model, PROMPTS, 12, eos_token_id=t[4])  # pretend the 5th token of row 2 is EOS
    first = t.index(t[4])
    assert out[2].finish_reason == "eos" and out[2].tokens == t[:first]


def test_sampling(model):
    greedy = generate(model, PROMPTS, 10, eos_token_id=None)
    # top_p -> 0 keeps only the most likely token: sampling becomes greedy.
    nucleus = generate(model, PROMPTS, 10, eos_token_id=None, temperature=1.0, top_p=1e-6,
                       generator=torch.Generator().manual_seed(0))
    assert [g.tokens for g in nucleus] == [g.tokens for g in greedy]
    s1 = generate(model, PROMPTS, 10, eos_token_id=None, temperature=1.5, generator=torch.Generator().manual_seed(1))
    s2 = generate(model, PROMPTS, 10, eos_token_id=None, temperature=1.5, generator=torch.Generator().manual_seed(1))
    s3 = generate(model, PROMPTS, 10, eos_token_id=None, temperature=1.5, generator=torch.Generator().manual_seed(2))
    assert [g.tokens for g in s1] == [g.tokens for g in s2]
    assert [g.tokens for g in s1] != [g.tokens for g in s3]
    assert [g.tokens for g in s1] != [g.tokens for g in greedy]


def test_argument_errors(model):
    with pytest.raises(ValueError, match="decode"):
        generate(model, PROMPTS, 4, stop=["x"])
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, PROMPTS, 200)
    with pytest.raises(ValueError, match="non-empty"):
        generate(model, [[]], 4)
    assert EOS == model.cfg.eos_token_id
