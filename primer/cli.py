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
    from primer.config import describe_fields, load_config

    if args.fields:
        for name, default, help_text in describe_fields():
            print(f"{name:32} {default:>16}  {help_text}")
        return 0
    cfg = load_config(args.profile, _overrides(args))
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0


def _run_flow(flow_fn: Callable[..., Any], args: argparse.Namespace) -> int:
    from primer.config import load_config

    overrides = _overrides(args)
    load_config(args.profile, overrides)  # fail fast, before Prefect starts, on a bad value
    result = flow_fn(profile=args.profile, overrides=overrides)
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


# Stages run as Prefect flows: (command, module, flow function, help).
FLOW_COMMANDS = (
    ("run", "flows.pipeline", "pipeline", "the whole pipeline: curate, synthesize, pack, train, select, export, evaluate"),
    ("curate", "flows.curate", "curate", "filter, deduplicate, score and decontaminate code into curated documents"),
    ("synthesize", "flows.synthesize", "synthesize",
     "generate textbooks and verified exercises with an OpenAI-compatible teacher (prints `skipped: why` without one)"),
    ("pack", "flows.pack", "pack", "tokenize documents and pack EOS-delimited rows into Parquet shards"),
    ("train", "flows.train", "train", "DeepSpeed ZeRO pretraining (and finetuning) with checkpoints on the store"),
    ("ablation", "flows.ablation", "ablation",
     "phi-1 Fig. 2.1 at small scale: unfiltered vs curated vs curated+synthetic at equal token budgets"),
)


def _flow_command(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return _run_flow(getattr(importlib.import_module(module), function), args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="primer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the resolved configuration, or every field with --fields")
    _common(p)
    p.add_argument("--fields", action="store_true", help="list every config field with its default and help")
    p.set_defaults(func=cmd_config)

    for name, module, function, help_text in FLOW_COMMANDS:
        p = sub.add_parser(name, help=help_text)
        _common(p)
        if name == "pack":
            p.add_argument("--source", action="append", metavar="URI[@WEIGHT]",
                           help="a document source (folder, Parquet/JSONL file or folder, any store URI); "
                                "repeatable; replaces pack.sources")
        p.set_defaults(func=_flow_command(module, function))

    p = sub.add_parser("lineage", help="print a pipeline run's lineage and check every link resolves")
    _common(p)
    p.add_argument("run_id", help="run id printed by `primer run` (a folder under <store>/runs/)")
    p.add_argument("--json", action="store_true", help="print the raw run manifest")
    p.set_defaults(func=cmd_lineage)

    from primer.scoring.cli import add_commands

    add_commands(sub)  # select, export, evaluate, serve
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
