"""401/403/404-model fail at once with one line, and no layer retries them (client or Prefect task)."""

import pytest

from primer.errors import StoreError
from primer.teacher import Teacher, TeacherError
from tasks.synth.prefect_tasks import is_transient
from tests.support.openai_server import Reply


@pytest.mark.parametrize("status,needle", [(401, "PRIMER_TEST_OPENAI_KEY"), (403, "PRIMER_TEST_OPENAI_KEY"),
                                           (404, "teacher.model")])
def test_refusals_fail_fast_and_are_not_retried(openai_server, teacher_config, status, needle):
    body = b'{"error": {"message": "The model does not exist", "code": "model_not_found"}}'
    openai_server.responder = lambda req: Reply(status=status, raw=body, kind="refused")
    teacher = Teacher(teacher_config)
    reqs = [teacher.request([{"role": "user", "content": f"q {i}"}]) for i in range(20)]
    with pytest.raises(TeacherError) as e:
        teacher.run_sync(reqs)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and "sk-" not in msg
    assert openai_server.stats.total <= teacher_config.concurrency      # no retries: only the first wave
    assert not is_transient(e.value)                                     # so the Prefect task does not retry


def test_only_network_errors_are_transient():
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(StoreError("bad")) and not is_transient(ValueError("x"))
