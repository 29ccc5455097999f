"""`primer serve` answers the openai client; the OpenAI backend against it equals the Primer backend."""

from __future__ import annotations

import threading

import openai
import pytest

from primer.export import release_backend
from primer.scoring import evaluate
from primer.scoring.backends import OpenAIBackend
from primer.serve import ModelServer
from tests.support.openai_server import rate_limited, server_error

PROMPTS = ["def fib(n):\n", "import os\n\nclass Walker:\n    def", '"""\nWrite a function.\n"""\n']


@pytest.fixture(scope="module")
def served(scoring_store):
    _, _, release = scoring_store
    server = ModelServer.from_release(release["uri"], model_name="tiny-test", port=0, device="cpu", max_batch=8,
                                      batch_wait_ms=20).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local(scoring_store):
    return release_backend(scoring_store[2]["uri"], backend="primer", device="cpu")


def test_openai_client_completions_chat_models_and_usage(served, local):
    client = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["tiny-test"]
    r = client.completions.create(model="tiny-test", prompt=PROMPTS, max_tokens=20, temperature=0, stop=["\ndef "])
    want = local.complete(PROMPTS, max_new_tokens=20, stop=["\ndef "], temperature=0.0)
    assert [c.text for c in sorted(r.choices, key=lambda c: c.index)] == [w[0].text for w in want]
    assert [c.finish_reason for c in r.choices] == [w[0].finish_reason for w in want]
    assert r.usage.prompt_tokens == sum(len(local.encode(p)) for p in PROMPTS)
    assert r.usage.completion_tokens == sum(w[0].completion_tokens for w in want) > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    s = client.completions.create(model="tiny-test", prompt="def f():", max_tokens=8, temperature=1.0, n=3, seed=1)
    assert sorted(c.index for c in s.choices) == [0, 1, 2] and 3 <= s.usage.completion_tokens <= 24
    chat = client.chat.completions.create(model="tiny-test", max_tokens=12, temperature=0,
                                          messages=[{"role": "user", "content": "Write a function."}])
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == local.generate(["Write a function.\n"], max_new_tokens=12, stop=[],
                                                             temperature=0.0, top_p=1.0, n=1)[0][0]
    assert chat.usage.completion_tokens > 0

    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4o", prompt="x", max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.completions.create(model="tiny-test", prompt="x", max_tokens=4, stream=True)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="tiny-test", prompt="x", max_tokens=100000)


def test_openai_backend_against_serve_equals_primer_backend(served, local, sandbox):
    remote = OpenAIBackend(served.url, "tiny-test", concurrency=4)
    kw = dict(max_new_tokens=24, temperature=0.0, top_p=1.0, n=1)
    stops = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"]  # 5 stops: 4 sent, all applied
    assert remote.generate(PROMPTS, stop=stops, **kw) == local.generate(PROMPTS, stop=stops, **kw)
    a = evaluate(remote, "humaneval", "test", "humaneval", limit=3, max_new_tokens=24, sandbox=sandbox)
    b = evaluate(local, "humaneval", "test", "humaneval", limit=3, max_new_tokens=24, sandbox=sandbox)
    assert [s.completion for s in a.samples] == [s.completion for s in b.samples]
    assert a.summary["pass@1"] == b.summary["pass@1"]
    assert remote.stats["completion_tokens"] > 0


def test_concurrent_requests_are_batched_and_equal_solo(served, local):
    client = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0)
    prompts = [f"def f{i}(x):\n    return" for i in range(6)]
    results: dict[int, str] = {}
    barrier = threading.Barrier(len(prompts))

    def ask(i):
        barrier.wait()
        r = client.completions.create(model="tiny-test", prompt=prompts[i], max_tokens=10, temperature=0)
        results[i] = r.choices[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    before = dict(served.batcher.stats)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    solo = [local.generate([p], max_new_tokens=10, stop=[], temperature=0.0, top_p=1.0, n=1)[0][0] for p in prompts]
    assert [results[i] for i in range(len(prompts))] == solo
    assert served.batcher.stats["batches"] - before["batches"] < len(prompts)  # some requests shared a batch


def test_api_key_is_required_when_configured(scoring_store):
    server = ModelServer.from_release(scoring_store[2]["uri"], model_name="m", port=0, device="cpu",
                                      api_key="sk-serve-test").start()
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
        ok = openai.OpenAI(base_url=server.url, api_key="sk-serve-test", max_retries=0)
        assert ok.completions.create(model="m", prompt="x", max_tokens=2, temperature=0).usage.prompt_tokens >= 1
    finally:
        server.stop()


def test_openai_backend_retries_429_and_5xx(openai_server):
    openai_server.queue(rate_limited(0.01))
    openai_server.queue(server_error(503))
    openai_server.responder = lambda req: "    return 1\n#tail"
    backend = OpenAIBackend(openai_server.url, "loopback-model", backoff_base_s=0.01, backoff_max_s=0.05,
                            max_retries=3)
    out = backend.generate(["def f():\n"], max_new_tokens=8, stop=["\n#"], temperature=0.0, top_p=1.0, n=2)
    assert out == [["    return 1", "    return 1"]]
    assert backend.stats["retries"] == 2 and backend.stats["requests"] == 3
    openai_server.queue(server_error(500))
    with pytest.raises(openai.InternalServerError):
        OpenAIBackend(openai_server.url, "loopback-model", max_retries=0).generate(
            ["x"], max_new_tokens=4, stop=[], temperature=0.0, top_p=1.0, n=1)
