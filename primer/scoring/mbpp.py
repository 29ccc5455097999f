"""MBPP (Austin et al. 2021, "Program Synthesis with Large Language Models").

Never bundled: load it from a path or URL (``load_mbpp(path)``), else from the lookup of
primer.scoring.data_files (``$PRIMER_MBPP_PATH``, ../shared beside the checkout, a pinned sha256-checked cache).
Splits by task id (the paper's): 1-10 few-shot prompt, 11-510 test, 511-600 validation, 601-974 train.
Two prompt formats, each with a name that is recorded with every result:

- ``austin3shot``: the original 3-shot prompt with [BEGIN]/[DONE]; shots are tasks 2, 3, 4.
- ``docstring_first_test``: the task text and the first assert in a docstring (as in common code-model
  evals such as bigcode-evaluation-harness); no function signature is given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from primer.errors import InputError
from primer.sandbox import Program
from primer.scoring import data_files

ENV_VAR = data_files.MBPP_ENV
SPLITS: dict[str, range] = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}
AUSTIN_SHOT_IDS: tuple[int, ...] = (2, 3, 4)
PROMPT_FORMATS: tuple[str, ...] = ("austin3shot", "docstring_first_test")
STOP_SEQUENCES: dict[str, tuple[str, ...]] = {
    "austin3shot": ("[DONE]",),
    "docstring_first_test": ("\nclass", "\nassert", '\n"""', "\nprint", "\nif __name__", "\n```"),
}
_FIELDS = {"task_id": int, "text": str, "code": str, "test_list": list}


@dataclass(frozen=True)
class MBPPTask:
    task_id: int
    text: str
    code: str
    test_list: tuple[str, ...]
    test_setup_code: str = ""
    challenge_test_list: tuple[str, ...] = field(default_factory=tuple)


def _read_text(src: str) -> str:
    if "://" in src and not src.startswith("file://"):
        try:
            import fsspec

            with fsspec.open(src, "rt", encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError as e:
            raise InputError(f"MBPP data not found at {src}") from e
        except Exception as e:  # network, auth, unknown protocol
            raise InputError(f"could not read MBPP data from {src}: {e}") from e
    p = Path(src.removeprefix("file://"))
    if not p.is_file():
        raise InputError(f"MBPP data not found at {p} (download mbpp.jsonl from google-research/mbpp and "
                         f"pass its path or URL, or set {ENV_VAR})")
    return p.read_text(encoding="utf-8")


def load_mbpp(path: str | os.PathLike | None = None) -> dict[int, MBPPTask]:
    """Tasks by task id from an ``mbpp.jsonl`` path or URL (default: the lookup of primer.scoring.data_files)."""
    src = os.fspath(path) if path is not None else data_files.locate_mbpp()
    text = _read_text(src)
    tasks: dict[int, MBPPTask] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as e:
            raise InputError(f"{src}:{lineno}: malformed MBPP line (not JSON: {e})") from e
        if not isinstance(d, dict):
            raise InputError(f"{src}:{lineno}: malformed MBPP line (expected a JSON object)")
        for k, t in _FIELDS.items():
            if not isinstance(d.get(k), t) or isinstance(d.get(k), bool):
                raise InputError(f"{src}:{lineno}: malformed MBPP line (field {k!r} missing or not {t.__name__})")
        if not all(isinstance(x, str) for x in d["test_list"]):
            raise InputError(f"{src}:{lineno}: malformed MBPP line (test_list must hold strings)")
        tid = d["task_id"]
        if tid in tasks:
            raise InputError(f"{src}:{lineno}: duplicate MBPP task_id {tid}")
        tasks[tid] = MBPPTask(tid, d["text"], d["code"], tuple(d["test_list"]), d.get("test_setup_code") or "",
                              tuple(d.get("challenge_test_list") or ()))
    if not tasks:
        raise InputError(f"{src}: no MBPP tasks in file")
    return tasks


def split(tasks: dict[int, MBPPTask], name: str) -> list[MBPPTask]:
    """Tasks of one split ("prompt", "test", "validation", "train"), in task-id order."""
    if name not in SPLITS:
        raise ValueError(f"unknown MBPP split {name!r}; choose from {sorted(SPLITS)}")
    return [tasks[i] for i in SPLITS[name] if i in tasks]


def _nl(s: str) -> str:
    return s.replace("\r\n", "\n").replace("\r", "\n")


def _austin_block(t: MBPPTask, with_code: bool) -> str:
    tests = "\n".join(t.test_list)
    s = (f"You are an expert Python programmer, and here is your task: {t.text} "
         f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")
    if with_code:
        s += f"{_nl(t.code).strip()}\n[DONE]\n"
    return s


def build_prompt(task: MBPPTask, prompt_format: str, tasks: dict[int, MBPPTask] | None = None) -> str:
    """The model prompt for ``task``.  ``austin3shot`` needs ``tasks`` (for shots 2, 3, 4)."""
    if prompt_format == "austin3shot":
        if tasks is None or any(i not in tasks for i in AUSTIN_SHOT_IDS):
            raise InputError("the austin3shot prompt needs MBPP tasks 2, 3 and 4 (pass the loaded tasks)")
        shots = "\n".join(_austin_block(tasks[i], True) for i in AUSTIN_SHOT_IDS)
        return shots + "\n" + _austin_block(task, False)
    if prompt_format == "docstring_first_test":
        return f'"""\n{task.text}\n{task.test_list[0]}\n"""\n'
    raise ValueError(f"unknown MBPP prompt format {prompt_format!r}; choose from {PROMPT_FORMATS}")


def extract_code(completion: str, prompt_format: str) -> str:
    """The code part of a raw model completion (cut at the format's stop sequences)."""
    if prompt_format not in STOP_SEQUENCES:
        raise ValueError(f"unknown MBPP prompt format {prompt_format!r}; choose from {PROMPT_FORMATS}")
    cut = len(completion)
    for s in STOP_SEQUENCES[prompt_format]:
        i = completion.find(s)
        if i != -1:
            cut = min(cut, i)
    return completion[:cut]


def test_code(task: MBPPTask, *, challenge: bool = False) -> str:
    """test_setup_code, then the asserts (plus challenge_test_list when asked)."""
    asserts: Iterable[str] = task.test_list + (task.challenge_test_list if challenge else ())
    return _nl(task.test_setup_code) + "\n" + "\n".join(asserts) + "\n"


def build_program(task: MBPPTask, completion: str, *, challenge: bool = False) -> Program:
    """completion, then test_setup_code and the asserts (plus challenge_test_list when asked)."""
    return Program(code=completion + "\n", tests=test_code(task, challenge=challenge))
