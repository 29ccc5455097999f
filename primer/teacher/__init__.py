"""Talking to an OpenAI-compatible teacher: the client, its request keys, and the ledger of paid answers."""

from primer.settings.synth import TeacherConfig
from primer.teacher.client import (BUDGET_EXHAUSTED, KEY_HEADER, Teacher, TeacherAnswer, TeacherError,
                                   TeacherRequest, TeacherUsage, request_key)
from primer.teacher.ledger import Ledger

__all__ = ["Teacher", "TeacherConfig", "TeacherRequest", "TeacherAnswer", "TeacherUsage", "TeacherError",
           "Ledger", "request_key", "KEY_HEADER", "BUDGET_EXHAUSTED"]
