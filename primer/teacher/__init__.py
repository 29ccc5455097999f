"""Talking to an OpenAI-compatible teacher: the client, its request keys, and the ledger of paid answers."""

from primer.settings.synth import TeacherConfig
from primer.teacher.client import (BUDGET_EXHAUSTED, KEY_HEADER, Teacher, TeacherAnswer, TeacherError,
                                   TeacherProgress, TeacherRequest, TeacherUsage, request_key)
from primer.teacher.ledger import Ledger


def open_teacher(cfg: TeacherConfig, ledger: Ledger | None = None) -> Teacher:
    """The teacher for `cfg.mode`: online (one HTTP request per answer) or batch (the Batch API, about half
    price: primer/teacher/batch.py). Both answer through the same ledger."""
    if cfg.mode == "batch":
        from primer.teacher.batch import BatchTeacher

        return BatchTeacher(cfg, ledger)
    return Teacher(cfg, ledger)


__all__ = ["open_teacher", "Teacher", "TeacherConfig", "TeacherRequest", "TeacherAnswer", "TeacherUsage", "TeacherError",
           "TeacherProgress",
           "Ledger", "request_key", "KEY_HEADER", "BUDGET_EXHAUSTED"]
