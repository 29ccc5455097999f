"""The deployments' pull step (primer.deploy_steps.checkout): a clone of a configured repo/ref, a checkout named
by the environment, or the worker's own directory; anything else fails with one line naming the settings."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from primer.deploy_steps import CheckoutError, resolve_code_dir
from tests.conftest import REPO


def _repo(tmp_path):
    src = tmp_path / "src"
    (src / "flows").mkdir(parents=True)
    (src / "flows" / "pipeline.py").write_text("# a Primer checkout\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(src)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (src / "flows" / "later.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "two"], check=True)
    return src, sha


def test_the_yaml_pulls_through_the_step():
    pull = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())["pull"]
    assert list(pull[0]) == ["primer.deploy_steps.checkout"]
    assert pull[1]["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ code.directory }}"


def test_checkout_dir_from_the_environment_or_the_working_directory(tmp_path):
    assert resolve_code_dir({"PRIMER_CODE_DIR": str(REPO)}) == REPO
    assert resolve_code_dir({"PRIMER_REPO": str(REPO)}) == REPO
    assert resolve_code_dir({}, cwd=str(REPO)) == REPO
    with pytest.raises(CheckoutError, match="PRIMER_CODE_DIR=.*no flows/pipeline.py"):
        resolve_code_dir({"PRIMER_CODE_DIR": str(tmp_path)})
    with pytest.raises(CheckoutError, match="set PRIMER_CODE_DIR .* or PRIMER_CODE_REPO"):
        resolve_code_dir({}, cwd=str(tmp_path))


def test_clone_of_a_repo_at_a_commit_and_at_a_branch(tmp_path):
    src, first = _repo(tmp_path)
    cache = tmp_path / "cache"
    at_sha = resolve_code_dir({"PRIMER_CODE_REPO": str(src), "PRIMER_CODE_REF": first,
                               "PRIMER_CODE_CACHE": str(cache)})
    assert (at_sha / "flows" / "pipeline.py").is_file() and not (at_sha / "flows" / "later.py").exists()
    at_branch = resolve_code_dir({"PRIMER_CODE_REPO": str(src), "PRIMER_CODE_REF": "main",
                                  "PRIMER_CODE_CACHE": str(cache)})
    assert at_branch != at_sha and (at_branch / "flows" / "later.py").is_file()
    # a second run of the same ref reuses the clone
    assert resolve_code_dir({"PRIMER_CODE_REPO": str(src), "PRIMER_CODE_REF": "main",
                             "PRIMER_CODE_CACHE": str(cache)}) == at_branch
    assert {at_sha.parent, at_branch.parent} == {cache}
