"""Topic trees, generation plans (topic x audience x style, exercise topic x function name) and prompts.

Plans are deterministic functions of the config and the topic files, so a re-run builds the very same
requests (same ledger keys) and pays for nothing twice.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from primer.errors import InputError

DATA_DIR = Path(__file__).resolve().parents[2] / "primer" / "data"
TEXTBOOK_TOPICS = DATA_DIR / "topics.yaml"
EXERCISE_TOPICS = DATA_DIR / "topics_exercises.yaml"

SYSTEM_TEXTBOOK = ("You are an expert Python educator. You write clear, correct textbook sections that teach "
                   "reasoning and basic algorithmic skills through small runnable examples.")
SYSTEM_EXERCISE = ("You are an expert Python educator who writes precise programming exercises with correct "
                   "reference solutions and thorough tests.")


@dataclass(frozen=True)
class Topic:
    chapter: str
    name: str
    parent: str = ""        # seed topic a subtopic was expanded from

    @property
    def label(self) -> str:
        return f"{self.chapter} / {self.parent + ' / ' if self.parent else ''}{self.name}"


def read_text(uri: str, store_cfg: Any = None) -> tuple[str, str]:
    """(text, sha256) of a local path or any store URI."""
    from primer.store import filesystem_for

    try:
        fs, path = filesystem_for(uri, store_cfg)
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise InputError(f"{uri}: topic file not found; fix synth.topics_file / synth.exercise_topics_file") \
            from None
    return data.decode("utf-8"), hashlib.sha256(data).hexdigest()


def load_topic_tree(uri: str = "", store_cfg: Any = None) -> tuple[list[Topic], str]:
    text, sha = read_text(uri or str(TEXTBOOK_TOPICS), store_cfg)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"{uri or TEXTBOOK_TOPICS}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"{uri or TEXTBOOK_TOPICS}: expected a mapping of chapter -> list of topics")
    topics = []
    for chapter, items in data.items():
        if not isinstance(items, list):
            raise InputError(f"{uri or TEXTBOOK_TOPICS}: chapter {chapter!r} must hold a list of topics")
        topics += [Topic(str(chapter), str(t).strip()) for t in items if str(t).strip()]
    return topics, sha


def load_exercise_topics(uri: str = "", store_cfg: Any = None) -> tuple[dict[str, list[str]], str]:
    text, sha = read_text(uri or str(EXERCISE_TOPICS), store_cfg)
    data = yaml.safe_load(text) or {}
    for key in ("topics", "verbs", "nouns"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise InputError(f"{uri or EXERCISE_TOPICS}: needs a non-empty list under {key!r}")
    return {k: [str(x).strip() for x in data[k]] for k in ("topics", "verbs", "nouns")}, sha


# ---- plans -------------------------------------------------------------------------------------------

def textbook_plan(topics: list[Topic], audiences: list[str], styles: list[str], n: int,
                  seed: int) -> list[dict[str, Any]]:
    """Up to n items of (topic, audience, style): a seeded order of the distinct combinations (never more:
    an identical prompt is never sent twice). Consecutive items cover different topics first."""
    if n <= 0 or not topics:
        return []
    rng = random.Random(seed)
    audiences, styles = audiences or ["a student"], styles or ["clear"]
    combos = list(itertools.product(range(len(topics)), audiences, styles))
    rng.shuffle(combos)
    # round-robin over topics so that small n covers as many topics as possible
    by_topic: dict[int, list] = {}
    for c in combos:
        by_topic.setdefault(c[0], []).append(c)
    order = [t for t in range(len(topics))]
    rng.shuffle(order)
    interleaved = []
    for i in range(max(len(v) for v in by_topic.values())):
        interleaved += [by_topic[t][i] for t in order if i < len(by_topic[t])]
    plan = []
    for j in range(min(n, len(interleaved))):   # never an exact-repeat prompt: at most every combination once
        ti, aud, sty = interleaved[j]
        plan.append({"topic": topics[ti], "audience": aud, "style": sty, "sample_index": 0})
    return plan


def exercise_plan(pools: dict[str, list[str]], n: int, seed: int) -> list[dict[str, Any]]:
    """n items of (topic, function_name, sample_index); names are distinct while the pool lasts."""
    if n <= 0:
        return []
    rng = random.Random(seed + 1)
    topics = list(pools["topics"])
    rng.shuffle(topics)
    names = [f"{v}_{w}" for v in pools["verbs"] for w in pools["nouns"]]
    rng.shuffle(names)
    plan = []
    distinct = math.lcm(len(topics), len(names))   # (topic, name) pairs repeat after this many: never resent
    for j in range(min(n, distinct)):
        plan.append({"topic": topics[j % len(topics)], "function_name": names[j % len(names)], "sample_index": 0})
    return plan


# ---- prompts -------------------------------------------------------------------------------------------

def subtopic_messages(topic: Topic, k: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_TEXTBOOK},
            {"role": "user", "content": (
                f'List {k} distinct, specific subtopics of "{topic.name}" (chapter: {topic.chapter}) for a '
                f"Python programming textbook. One subtopic per line, no numbering, no other text.")}]


def normalize_topic(name: str) -> list[str]:
    """Lower-case words of a topic name: two names with the same words are the same topic."""
    return re.findall(r"[a-z0-9]+", name.lower())


def parse_subtopics(text: str | None, k: int) -> list[str]:
    out: list[str] = []
    for line in (text or "").splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip().strip('"').rstrip(".").strip()
        if 3 <= len(line) <= 120 and line.lower() not in {x.lower() for x in out} and not line.endswith(":"):
            out.append(line)
    return out[:k]


TEXTBOOK_REQUIREMENTS = (
    "Requirements:\n"
    "- Start with a markdown heading.\n"
    "- Interleave clear explanations with short, self-contained, runnable Python examples in "
    "```python fenced blocks; each block must run on its own using only the standard library "
    "(or numpy/pandas when the topic is about them). Show expected output in comments.\n"
    "- Teach the reasoning behind the code, not only the syntax.\n"
    "- 300 to 900 words. No preamble and no closing remarks to the reader.")


def textbook_messages(item: dict[str, Any]) -> list[dict[str, str]]:
    if item.get("seed"):
        return seeded_textbook_messages(item)
    t: Topic = item["topic"]
    about = f'"{t.name}"' + (f' (an aspect of "{t.parent}")' if t.parent else "")
    return [{"role": "system", "content": SYSTEM_TEXTBOOK},
            {"role": "user", "content": (
                f"Write one section of a Python programming textbook about {about}, in the chapter "
                f'"{t.chapter}", for {item["audience"]}. Style: {item["style"]}.\n' + TEXTBOOK_REQUIREMENTS)}]


def seeded_textbook_messages(item: dict[str, Any]) -> list[dict[str, str]]:
    """A textbook section teaching what a real code extract (of the curated set) uses (tasks/synth/seeds.py)."""
    code = item["seed"]["text"]
    fence = "````" if "```" in code else "```"
    return [{"role": "system", "content": SYSTEM_TEXTBOOK},
            {"role": "user", "content": (
                f"Here is an extract of real Python code:\n\n{fence}python\n{code}\n{fence}\n\n"
                "Write one section of a Python programming textbook that teaches the concepts and techniques "
                f"this code extract uses, for {item['audience']}. Style: {item['style']}. Do not explain the "
                "extract line by line and do not refer to it: write your own examples.\n" + TEXTBOOK_REQUIREMENTS)}]


def exercise_messages(item: dict[str, Any]) -> list[dict[str, str]]:
    name = item["function_name"]
    return [{"role": "system", "content": SYSTEM_EXERCISE},
            {"role": "user", "content": (
                f"Write one Python exercise on the topic: {item['topic']}. The function must be named `{name}`; "
                "choose a task that makes this name fitting.\n"
                "Reply with exactly three ```python fenced blocks, in this order, and nothing else:\n"
                "1. The exercise: any imports, then the function signature with type hints and a docstring "
                "that states the task precisely (arguments, return value, edge cases) with one or two "
                "examples. Nothing after the docstring.\n"
                "2. The solution: the complete function with the same signature (standard library only).\n"
                f"3. Tests: at least four plain `assert` statements calling `{name}`, covering edge cases.")}]


def variant_messages(row: dict[str, Any], new_name: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_EXERCISE},
            {"role": "user", "content": (
                "Rewrite this Python exercise without changing its behaviour: rename the function to "
                f"`{new_name}`, give the parameters and local variables different meaningful names, and reword "
                "the docstring (same meaning, same examples' values). Reply with exactly three ```python "
                "fenced blocks: the exercise (signature + docstring only), the solution, and the tests "
                "updated to the new names. Nothing else.\n\n"
                f"```python\n{row['prompt']}\n```\n\n```python\n{row['text']}\n```\n\n"
                f"```python\n{row['tests']}\n```")}]


def variant_name(name: str, index: int, pools: dict[str, list[str]], seed: int) -> str:
    rng = random.Random(f"{seed}:{name}:{index}")
    verb, noun = rng.choice(pools["verbs"]), rng.choice(pools["nouns"])
    candidate = f"{verb}_{noun}"
    return candidate if candidate != name else f"{candidate}_{index + 1}"
