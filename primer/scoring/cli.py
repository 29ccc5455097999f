"""CLI commands of the scoring stages, for `primer/cli.py` to register:

    from primer.scoring.cli import add_commands
    add_commands(sub)          # in build_parser(), after the train command

adds `primer select`, `primer export`, `primer evaluate` and `primer serve`, each with --profile / --set /
--store (primer.cli._common) plus its own input option.
"""

from __future__ import annotations

import argparse


def _run(flow_fn, args: argparse.Namespace, **inputs) -> int:
    from primer.cli import _overrides
    from primer.config import load_config

    overrides = _overrides(args)
    load_config(args.profile, overrides)  # fail fast, before Prefect starts
    print(flow_fn(profile=args.profile, overrides=overrides, **inputs))
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from flows.select import select

    return _run(select, args, run=args.run or "")


def cmd_export(args: argparse.Namespace) -> int:
    from flows.export import export

    return _run(export, args, selection=args.selection or "")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flows.evaluate import evaluate

    return _run(evaluate, args, release=args.release or "")


def cmd_serve(args: argparse.Namespace) -> int:
    from primer.cli import _overrides
    from primer.config import load_config
    from primer.errors import InputError
    from primer.serve import serve_release

    overrides = _overrides(args)
    if args.port is not None:
        overrides["serve.port"] = args.port
    if args.host:
        overrides["serve.host"] = args.host
    cfg = load_config(args.profile, overrides)
    if not args.release:
        raise InputError("primer serve needs --release (a release directory or release/<key> URI; "
                         "`primer export` prints one)")
    serve_release(args.release, cfg.store, cfg.serve)
    return 0


def add_commands(sub) -> None:
    from primer.cli import _common

    p = sub.add_parser("select", help="score every checkpoint of a run (val loss, MBPP-validation pass@1), choose one")
    _common(p)
    p.add_argument("--run", help="training run URI (train/<key>); default: train this configuration")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("export", help="write the chosen checkpoint as a Hugging Face release (release/<key>/)")
    _common(p)
    p.add_argument("--selection", help="selection URI (select/<key>); default: run `select` "
                                       "(or --set export.checkpoint=<step URI>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="HumanEval / MBPP pass@k of a release, a checkpoint or an endpoint")
    _common(p)
    p.add_argument("--release", help="release directory or URI, or a checkpoint URI; default: export this "
                                     "configuration (or the endpoint with --set evaluate.backend=openai)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions) over a release")
    _common(p)
    p.add_argument("--release", help="release directory or release/<key> URI")
    p.add_argument("--port", type=int, help="TCP port (shortcut for --set serve.port=N)")
    p.add_argument("--host", help="bind address (shortcut for --set serve.host=ADDR)")
    p.set_defaults(func=cmd_serve)
