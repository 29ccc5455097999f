"""The quality filter selects: offline rubric labels split real code, and a classifier trained on them keeps
textbook-like files and drops boilerplate on a held-out set built from files it never saw."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

from primer.settings.curate import CurateConfig
from tasks.curate import quality
from tasks.curate.embed import HashedEmbedder
from tasks.curate.heuristic import HeuristicAnnotator
from primer.minhash import hash64
from tests.curate.conftest import STDLIB

SITE = Path(sysconfig.get_paths()["purelib"])

# Textbook-like: small, documented standard-library modules that teach one idea ...
GOOD_STDLIB = ("bisect.py", "heapq.py", "colorsys.py", "textwrap.py", "fnmatch.py", "graphlib.py", "sched.py",
               "shlex.py", "queue.py", "fractions.py", "statistics.py", "glob.py")
# ... and exercises as a course would write them.
GOOD_WRITTEN = {
    "binary_search.py": '''"""Binary search: find a value in a sorted list by halving the range."""


def binary_search(items, target):
    """Return the index of `target` in the sorted list `items`, or -1 if it is absent.

    >>> binary_search([1, 3, 5, 7, 9], 7)
    3
    >>> binary_search([1, 3, 5], 4)
    -1
    """
    low, high = 0, len(items) - 1
    while low <= high:
        middle = (low + high) // 2  # the middle of the remaining range
        if items[middle] == target:
            return middle
        if items[middle] < target:
            low = middle + 1         # the target can only be to the right
        else:
            high = middle - 1        # or to the left
    return -1


if __name__ == "__main__":
    print(binary_search([2, 4, 6, 8], 6))
''',
    "gcd.py": '''"""Euclid's algorithm for the greatest common divisor, and the least common multiple built on it."""


def gcd(first, second):
    """Greatest common divisor of two non-negative integers.

    >>> gcd(12, 18)
    6
    """
    while second:
        # gcd(a, b) == gcd(b, a mod b): the remainder gets smaller every step
        first, second = second, first % second
    return first


def lcm(first, second):
    """Least common multiple, from the identity a * b == gcd(a, b) * lcm(a, b).

    >>> lcm(4, 6)
    12
    """
    if first == 0 or second == 0:
        return 0
    return abs(first * second) // gcd(first, second)


if __name__ == "__main__":
    print(gcd(48, 36), lcm(48, 36))
''',
    "stack.py": '''"""A stack (last in, first out) and one classic use of it: checking balanced brackets."""


class Stack:
    """A list-backed stack.

    >>> s = Stack()
    >>> s.push(1)
    >>> s.pop()
    1
    """

    def __init__(self):
        self.items = []

    def push(self, item):
        """Put an item on top."""
        self.items.append(item)

    def pop(self):
        """Take the top item off; fails on an empty stack."""
        if not self.items:
            raise IndexError("pop from an empty stack")
        return self.items.pop()

    def is_empty(self):
        """True when there is nothing on the stack."""
        return len(self.items) == 0


def balanced(text):
    """True when every bracket in `text` is closed in the right order.

    >>> balanced("(a[b]{c})")
    True
    >>> balanced("(]")
    False
    """
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = Stack()
    for char in text:
        if char in "([{":
            stack.push(char)
        elif char in pairs:
            if stack.is_empty() or stack.pop() != pairs[char]:
                return False
    return stack.is_empty()


if __name__ == "__main__":
    print(balanced("{[()()]}"))
''',
    "word_count.py": '''"""Count words in a text: a first look at dictionaries and string methods."""


def count_words(text):
    """Return a dictionary mapping each lower-cased word to how often it occurs.

    >>> count_words("the cat and the hat")["the"]
    2
    """
    counts = {}
    for word in text.lower().split():
        word = word.strip(".,;:!?")   # punctuation is not part of the word
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts


def most_common(counts, number):
    """The `number` most frequent words, most frequent first.

    >>> most_common({"a": 3, "b": 1, "c": 2}, 2)
    ['a', 'c']
    """
    ranked = sorted(counts, key=lambda word: counts[word], reverse=True)
    return ranked[:number]


if __name__ == "__main__":
    sample = "It was the best of times, it was the worst of times."
    print(most_common(count_words(sample), 3))
''',
}


def _below_install(path: Path) -> str:
    for root in (SITE, STDLIB):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    raise AssertionError(f"{path} is neither in site-packages nor in the standard library")


def _files(paths, limit: int) -> list[str]:
    """Up to `limit` texts of `paths` in a seeded order of their names below the installation (never their
    absolute paths: the sample must not change with where the clone or its venv lives)."""
    texts = []
    for p in sorted(paths, key=lambda p: hash64(_below_install(p))):
        try:
            text = p.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if 200 <= len(text) <= 200_000:
            texts.append(text)
        if len(texts) == limit:
            break
    return texts


@pytest.fixture(scope="module")
def held_out():
    good = [(STDLIB / f).read_text() for f in GOOD_STDLIB] + list(GOOD_WRITTEN.values())
    # Boilerplate: test modules, package __init__ re-exports and generated/configuration files.
    bad = (_files((STDLIB / "test").glob("test_*.py"), 8)
           + _files([p for p in SITE.glob("*/*/__init__.py")], 8)
           + _files(SITE.glob("prefect/server/database/_migrations/versions/*/*.py"), 4))
    assert len(good) == 16 and len(bad) == 20
    return good, bad


@pytest.fixture(scope="module")
def training():
    """300 files of site-packages labelled by the offline rubric; the held-out kinds (standard library,
    package __init__ files, migrations) are never among them."""
    paths = [p for p in SITE.rglob("*.py") if "/_migrations/" not in str(p) and p.name != "__init__.py"]
    texts = _files(paths, 300)
    scores = np.array([HeuristicAnnotator().score(t).score for t in texts])
    return texts, scores


def test_heuristic_split_is_real(training):
    _, scores = training
    educational = float(np.mean(scores >= CurateConfig().label_threshold))
    assert 0.15 <= educational <= 0.6, educational   # not 88% "educational" any more


@pytest.mark.parametrize("head", ["forest", "linear"])
def test_classifier_keeps_textbooks_and_drops_boilerplate(training, held_out, head):
    cfg = CurateConfig(classifier=head, rf_trees=100)
    texts, scores = training
    embedder = HashedEmbedder(cfg.embed_features)
    model = quality.train(embedder.embed(texts), scores, cfg, embedder.spec())
    assert model.metrics["class_counts"]["educational"] >= 30 and model.metrics["class_counts"]["low"] >= 30
    good, bad = held_out
    kept_good = float(np.mean(model.predict(embedder.embed(good)) >= cfg.quality_min))
    kept_bad = float(np.mean(model.predict(embedder.embed(bad)) >= cfg.quality_min))
    print(f"{head}: kept {kept_good:.2f} of textbook-like, {kept_bad:.2f} of boilerplate; held-out "
          f"P {model.metrics['precision']:.2f} R {model.metrics['recall']:.2f} F1 {model.metrics['f1']:.2f}")
    assert kept_good >= kept_bad + 0.4, (head, kept_good, kept_bad)


def test_heuristic_alone_orders_the_held_out_set(held_out):
    good, bad = held_out
    ann = HeuristicAnnotator()
    threshold = CurateConfig().label_threshold
    good_share = np.mean([ann.score(t).score >= threshold for t in good])
    bad_share = np.mean([ann.score(t).score >= threshold for t in bad])
    print(f"heuristic: {good_share:.2f} of textbook-like, {bad_share:.2f} of boilerplate labelled educational")
    assert good_share >= 0.75 and bad_share <= 0.15, (good_share, bad_share)
