"""`primer` command line: each stage's flow, with `--profile` and `--set section.field=value` overrides.

Every option of every stage is a config field, documented once (`primer config --fields` lists them);
the CLI adds only shortcuts for the most common ones. Errors in input or configuration print one line
naming the field or file and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from primer.errors import PrimerError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="tiny", help="named profile: tiny (CPU, minutes), small (1 GPU), phi1 (8 GPUs)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set pack.seq_len=512 (repeatable)")
    p.add_argument("--store", help="artifact store root (shortcut for --set store.root=URI), e.g. s3://bucket/primer")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from primer.config import parse_set_args

    overrides = parse_set_args(args.sets)
    if getattr(args, "store", None):
        overrides["store.root"] = args.store
    sources = getattr(args, "source", None)
    if sources:
        specs = []
        for item in sources:
            uri, _, weight = item.rpartition("@") if "@" in item else (item, "", "")
            specs.append({"uri": uri, **({"weight": weight} if weight else {})})
        overrides["pack.sources"] = specs
    return overrides


def cmd_config(args: argparse.Namespace) -> int:
    from primer.config import describe_fields, env_overrides, load_config

    if args.fields:
        for name, default, help_text in describe_fields():
            print(f"{name:32} {default:>16}  {help_text}")
        return 0
    cfg = load_config(args.profile, _overrides(args))
    for dotted, value in env_overrides().items():  # the environment layer, so nobody wonders where a value came from
        print(f"# from the environment: {dotted} = {value!r}", file=sys.stderr)
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0


def _run_flow(flow_fn: Callable[..., Any], args: argparse.Namespace, **inputs: Any) -> int:
    from primer.config import load_config

    overrides = _overrides(args)
    load_config(args.profile, overrides)  # fail fast, before Prefect starts, on a bad value
    result = flow_fn(profile=args.profile, overrides=overrides, **inputs)
    print(result)
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from primer.config import load_config
    from primer.store import open_store
    from primer.lineage import load_lineage, render_lineage, verify_lineage

    store = open_store(load_config(args.profile, _overrides(args)).store)
    doc = load_lineage(store, args.run_id)
    print(json.dumps(doc, indent=2) if args.json else render_lineage(doc))
    problems = verify_lineage(store, doc)
    for p in problems:
        print(f"BROKEN LINK: {p}", file=sys.stderr)
    return 1 if problems else 0


# ---------------------------------------------------------------------------------- the command table
# This table is the only place outside flows/ that imports flows (the layer test checks it): each entry
# imports its flow when the command runs, so `primer config` never pays for Prefect.


def _curate(args):
    from flows.curate import curate
    return _run_flow(curate, args)


def _synthesize(args):
    from flows.synthesize import synthesize
    return _run_flow(synthesize, args, **({"plan": True} if getattr(args, "plan", False) else {}))


def _pack(args):
    from flows.pack import pack
    return _run_flow(pack, args)


def _train(args):
    from flows.train import train
    return _run_flow(train, args)


def _select(args):
    from flows.select import select
    return _run_flow(select, args, run=args.run or "")


def _export(args):
    from flows.export import export
    return _run_flow(export, args, selection=args.selection or "")


def _evaluate(args):
    from flows.evaluate import evaluate
    return _run_flow(evaluate, args, release=args.release or "")


def _pipeline(args):
    from flows.pipeline import pipeline
    return _run_flow(pipeline, args)


def _ablation(args):
    from flows.ablation import ablation
    return _run_flow(ablation, args)


def _input(flag: str, help_text: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: p.add_argument(flag, help=help_text)


def _source_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", action="append", metavar="URI[@WEIGHT]",
                   help="a document source (folder, Parquet/JSONL file or folder, any store URI); "
                        "repeatable; replaces pack.sources")


def _plan_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", action="store_true",
                   help="print (and publish) the request count, expected tokens and cost; send nothing")


# (command, runner, help, extra options)
FLOW_COMMANDS: tuple[tuple[str, Callable[[argparse.Namespace], int], str,
                           Callable[[argparse.ArgumentParser], None] | None], ...] = (
    ("run", _pipeline, "the whole pipeline: curate, synthesize, pack, train, select, export, evaluate", None),
    ("curate", _curate, "filter, deduplicate, score and decontaminate code into curated documents", None),
    ("synthesize", _synthesize, "generate textbooks and verified exercises with an OpenAI-compatible teacher "
                                "(a skipped output with its reason without one)", _plan_option),
    ("pack", _pack, "tokenize documents and pack EOS-delimited rows into Parquet shards", _source_option),
    ("train", _train, "DeepSpeed ZeRO pretraining (and finetuning) with checkpoints on the store", None),
    ("select", _select, "score every checkpoint of a run (val loss, MBPP-validation pass@1), choose one",
     _input("--run", "training run URI (train/<key>); default: train this configuration")),
    ("export", _export, "write the chosen checkpoint as a Hugging Face release (release/<key>/)",
     _input("--selection", "selection URI (select/<key>); default: run `select` "
                           "(or --set export.checkpoint=<step URI>)")),
    ("evaluate", _evaluate, "HumanEval / MBPP pass@k of a release, a checkpoint or an endpoint",
     _input("--release", "release directory or URI, or a checkpoint URI; default: export this configuration "
                         "(or the endpoint with --set evaluate.backend=openai)")),
    ("ablation", _ablation,
     "phi-1 Fig. 2.1 at small scale: unfiltered vs curated vs curated+synthetic at equal token budgets", None),
)


def cmd_serve(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="primer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the resolved configuration, or every field with --fields")
    _common(p)
    p.add_argument("--fields", action="store_true", help="list every config field with its default and help")
    p.set_defaults(func=cmd_config)

    for name, runner, help_text, options in FLOW_COMMANDS:
        p = sub.add_parser(name, help=help_text)
        _common(p)
        if options:
            options(p)
        p.set_defaults(func=runner)

    p = sub.add_parser("lineage", help="print a pipeline run's lineage and check every link resolves")
    _common(p)
    p.add_argument("run_id", help="run id printed by `primer run` (a folder under <store>/runs/)")
    p.add_argument("--json", action="store_true", help="print the raw run manifest")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions) "
                                     "over a release")
    _common(p)
    p.add_argument("--release", help="release directory or release/<key> URI")
    p.add_argument("--port", type=int, help="TCP port (shortcut for --set serve.port=N)")
    p.add_argument("--host", help="bind address (shortcut for --set serve.host=ADDR)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PrimerError as e:
        print(f"primer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"primer {args.command}: interrupted; finished outputs are kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
