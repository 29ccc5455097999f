"""A scripted teacher for the synthesize tests: varied, deterministic answers keyed on the prompt.

Textbooks: random-word prose around runnable code; some answers are deliberately bad (syntax error in a
code block, too short, an exact duplicate of another, a near-duplicate: one section under another
heading). Exercises: correct by default; names listed in `BAD_EXERCISES` (or chosen by hash) get a wrong,
hanging, crashing or malformed answer.
"""

from __future__ import annotations

import hashlib
import random
import re

from tests.support.openai_server import REFUSAL_TEXT, prompt_text

VOCAB = ("list loop index value function return variable string number python code example result "
         "element append range dictionary key count sorted order compare branch condition total average "
         "minimum maximum iterate slice tuple set unique recursion base case call stack memo table window "
         "pointer search binary left right middle step reason explain notice because therefore").split()


def _rng(text: str) -> random.Random:
    return random.Random(hashlib.sha256(text.encode()).hexdigest())


def textbook(prompt: str, kind: str = "good") -> str:
    rng = _rng(prompt)
    about = re.search(r'about "([^"]+)"', prompt)
    topic = about.group(1) if about else "concepts from a code extract"   # a seeded prompt names no topic
    para = lambda: " ".join(rng.choice(VOCAB) for _ in range(60)) + "."  # noqa: E731
    k = rng.randint(2, 9)
    code = f"def scale(values, k={k}):\n    return [v * k for v in values]\n\nprint(scale([1, 2, 3]))  # {[k, 2 * k, 3 * k]}\n"
    if kind == "syntax":
        code = "def broken(:\n    return 1\n"
    if kind == "short":
        return f"# {topic}\n\nToo short.\n\n```python\nprint(1)\n```\n"
    if kind == "near":   # the same section under this topic's heading: a near-duplicate of every other "near"
        return f"# {topic}\n" + textbook('about "near duplicate"').split("\n", 1)[1]
    return (f"# {topic.title()}\n\n{para()}\n\n```python\n{code}```\n\n{para()}\n\n"
            f"```python\nfor i in range({k}):\n    print(i * i)\n```\n\n{para()}\n")


def exercise(name: str, kind: str = "good") -> str:
    prompt = (f"def {name}(values: list[int]) -> int:\n"
              f'    """Return the sum of the even numbers in `values`.\n\n'
              f"    >>> {name}([1, 2, 3, 4])\n    6\n    \"\"\"\n")
    body = {"good": "    return sum(v for v in values if v % 2 == 0)\n",
            "wrong": "    return sum(values)\n",
            "hang": "    while True:\n        pass\n",
            "crash": "    raise RuntimeError('boom')\n"}[kind if kind != "malformed" else "good"]
    solution = prompt + body
    tests = (f"assert {name}([1, 2, 3, 4]) == 6\nassert {name}([]) == 0\nassert {name}([1, 3]) == 0\n"
             f"assert {name}([-2, 2]) == 0\n")
    if kind == "malformed":
        return f"Here you go:\n```python\n{prompt}```\n"
    return f"```python\n{prompt}```\n\n```python\n{solution}```\n\n```python\n{tests}```\n"


BAD_TEXTBOOKS: dict[str, str] = {}   # topic substring -> kind
BAD_EXERCISES: dict[str, str] = {}   # function name -> kind


def responder(req: dict) -> str:
    text = prompt_text(req)
    if "subtopics of" in text:
        topic = re.search(r'subtopics of "([^"]+)"', text).group(1)
        k = int(re.search(r"List (\d+)", text).group(1))
        return "\n".join(f"- {topic}: aspect {i + 1}" for i in range(k))
    if "Rewrite this Python exercise" in text:
        new = re.search(r"rename the function to `(\w+)`", text).group(1)
        return exercise(new)
    if "Python exercise" in text:
        name = re.search(r"must be named `(\w+)`", text).group(1)
        return exercise(name, BAD_EXERCISES.get(name, "good"))
    if "extract of real Python code" in text:   # seeded from the curated set (tasks/synth/seeds.py)
        return textbook(text)
    if "textbook about" in text:
        topic = re.search(r'about "([^"]+)"', text).group(1)
        for sub, kind in BAD_TEXTBOOKS.items():
            if sub in topic:
                if kind == "refusal":
                    return REFUSAL_TEXT
                if kind == "duplicate":
                    return textbook('about "duplicate"')
                return textbook(text, kind)
        return textbook(text)
    return "unexpected prompt"
