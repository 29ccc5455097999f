"""The deployments' pull step: where a flow run finds Primer's code, on any worker.

deployments/prefect.yaml runs `primer.deploy_steps.checkout` before every flow run, then changes into the
directory it returns. The same file therefore works on a process worker, in the Docker images and in a
Kubernetes Job; what differs is only the worker's environment:

* `PRIMER_CODE_REPO` (+ `PRIMER_CODE_REF`: a branch, tag or commit; default the repository's default
  branch): clone that repository (Prefect's own `git_clone` step) into `PRIMER_CODE_CACHE` (default
  `~/.cache/primer/code`) and run there. For a pod that should run a given commit, not the image's.
* else `PRIMER_CODE_DIR`, or `PRIMER_REPO` (set by scripts/stack.sh for its worker): an existing checkout.
* else the worker's working directory when it holds Primer (the images' WORKDIR, /opt/primer).

Anything else fails the run at start with one line naming these settings. This module imports nothing of
Primer's, so a clone's own `primer` package is the one its flows import.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

MARKER = Path("flows") / "pipeline.py"  # a directory holding this file is a Primer checkout


class CheckoutError(RuntimeError):
    pass


def _is_checkout(path: Path) -> bool:
    return (path / MARKER).is_file()


def _clone(repo: str, ref: str, cache_dir: str = "") -> Path:
    from prefect.deployments.steps.pull import git_clone

    cache = Path(cache_dir or Path.home() / ".cache" / "primer" / "code").expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    # One clone per (repo, ref): concurrent runs of different refs never share a working tree.
    name = hashlib.sha256(f"{repo}\n{ref}".encode()).hexdigest()[:16]
    target = cache / name
    if not _is_checkout(target):
        is_sha = len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref.lower())
        here = os.getcwd()
        os.chdir(cache)
        try:
            git_clone(repository=repo, clone_directory_name=name,
                      **({"commit_sha": ref} if is_sha else {"branch": ref} if ref else {}))
        finally:
            os.chdir(here)
    if not _is_checkout(target):
        raise CheckoutError(f"PRIMER_CODE_REPO={repo} (ref {ref or 'default'}) has no {MARKER}: not a Primer "
                            "repository")
    return target


def resolve_code_dir(environ: dict[str, str] | None = None, cwd: str | None = None) -> Path:
    env = os.environ if environ is None else environ
    repo = env.get("PRIMER_CODE_REPO", "").strip()
    if repo:
        return _clone(repo, env.get("PRIMER_CODE_REF", "").strip(), env.get("PRIMER_CODE_CACHE", "").strip())
    for var in ("PRIMER_CODE_DIR", "PRIMER_REPO"):
        value = env.get(var, "").strip()
        if value:
            path = Path(value).expanduser().resolve()
            if not _is_checkout(path):
                raise CheckoutError(f"{var}={value}: no {MARKER} there; point it at a Primer checkout")
            return path
    here = Path(cwd or os.getcwd()).resolve()
    if _is_checkout(here):
        return here
    raise CheckoutError(f"no Primer code for this flow run: the worker's directory {here} has no {MARKER}; set "
                        "PRIMER_CODE_DIR (a checkout on the worker) or PRIMER_CODE_REPO (+ PRIMER_CODE_REF) in "
                        "the worker's environment")


def checkout() -> dict[str, str]:
    """Prefect pull step: returns {"directory": ...} for `set_working_directory`."""
    directory = resolve_code_dir()
    # The flow's imports (flows.*, tasks.*, primer.*) come from this directory first.
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    for name in [m for m in sys.modules if m == "primer" or m.startswith("primer.")]:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file and not Path(module_file).resolve().is_relative_to(directory):
            del sys.modules[name]  # loaded from elsewhere (this step's own package): reload from the checkout
    return {"directory": str(directory)}
