"""The request plan, computed without sending anything (`primer synthesize --plan`).

Requests per kind come from the token targets (`synth.textbook_tokens / tokens_per_textbook`, ...) or the
plain counts; they are capped by the distinct prompts the topics can make (an exact-repeat prompt is never
planned). Expected tokens: prompt characters / 4 of the planned prompts + the expected answer length;
cost at the configured prices (halved by `teacher.batch_discount` in batch mode); budget against the
ledger's spend so far.
"""

from __future__ import annotations

import math
from typing import Any

from primer.config import PrimerConfig
from tasks.synth import prompts as P
from tasks.synth.seeds import seeded_count


def _wanted(target_tokens: int, per_request: int, count: int) -> int:
    return math.ceil(target_tokens / per_request) if target_tokens > 0 else count


def build_plan(cfg: PrimerConfig, topics: list[P.Topic], pools: dict[str, list[str]],
               ledger_tokens: int = 0, ledger_cost: float | None = 0.0,
               seed: dict[str, Any] | None = None) -> dict[str, Any]:
    """`seed`: the resolved synth.seed_source (tasks/synth/seeds.py), whose document count caps the seeded
    textbook requests (one distinct extract each)."""
    s, t = cfg.synth, cfg.teacher
    fanout = s.fanout()
    leaves = len(topics) * math.prod(fanout) if fanout else len(topics)
    expansion = sum(len(topics) * math.prod(fanout[:i]) for i in range(len(fanout)))
    audiences, styles = max(1, len(s.audiences)), max(1, len(s.styles))
    tb_distinct = leaves * audiences * styles
    ex_topics = len(pools["topics"]) + (leaves if s.exercise_topics_from_tree else 0)
    ex_distinct = math.lcm(ex_topics, len(pools["verbs"]) * len(pools["nouns"]))   # as exercise_plan pairs them
    tb_sample = P.textbook_plan(topics, s.audiences, s.styles, min(32, max(1, len(topics))), s.seed)
    ex_sample = P.exercise_plan(pools, 32, s.seed)
    tb_prompt = sum(len(m["content"]) for i in tb_sample for m in P.textbook_messages(i)) // max(1, len(tb_sample)) // 4
    ex_prompt = sum(len(m["content"]) for i in ex_sample for m in P.exercise_messages(i)) // max(1, len(ex_sample)) // 4
    tb_wanted = _wanted(s.textbook_tokens, s.tokens_per_textbook, s.textbooks)
    seeded = seeded_count(tb_wanted, s.seed_fraction, seed.get("documents")) if seed else 0
    # a seeded prompt: the template around an extract of at most seed_extract_chars
    example = {"seed": {"text": ""}, "audience": s.audiences[0] if s.audiences else "", "style": ""}
    seeded_prompt = (sum(len(m["content"]) for m in P.textbook_messages(example)) + s.seed_extract_chars) // 4
    price = t.price()
    scale = t.batch_discount if t.mode == "batch" else 1.0
    kinds = {}
    seed_distinct = (seed.get("documents") or seeded) if seed else 0   # one distinct extract per document
    for kind, wanted, distinct, prompt_tok, answer_tok, fixed, extra in (
            ("topics", expansion, expansion, 80, 12 * (max(fanout) if fanout else 0), 0, 0),
            ("textbooks", tb_wanted, tb_distinct, tb_prompt, s.tokens_per_textbook, seeded, seed_distinct),
            ("exercises", _wanted(s.exercise_tokens, s.tokens_per_exercise, s.exercises), ex_distinct, ex_prompt,
             s.tokens_per_exercise, 0, 0)):
        # `fixed` seeded requests (each a distinct extract), the rest from the distinct plain prompts
        n = fixed + min(wanted - fixed, distinct)
        distinct += extra
        p_tok, c_tok = (n - fixed) * prompt_tok + fixed * seeded_prompt, n * answer_tok
        cost = None if price is None else scale * (p_tok * price[0] + c_tok * price[1]) / 1e6
        kinds[kind] = {"requests": n, "wanted": wanted, "distinct_prompts": distinct, "short_by": wanted - n,
                       **({"seeded": fixed} if kind == "textbooks" else {}),
                       "prompt_tokens": p_tok, "completion_tokens": c_tok,
                       "usd": None if cost is None else round(cost, 2)}
    total_tokens = sum(k["prompt_tokens"] + k["completion_tokens"] for k in kinds.values())
    costs = [k["usd"] for k in kinds.values()]
    total_usd = None if None in costs else round(sum(costs), 2)
    cap_t, cap_c = t.max_tokens_total, t.max_cost_usd
    return {
        "model": t.model, "mode": t.mode, "price_per_1M": price, "price_scale": scale,
        "topics": {"seeds": len(topics), "fanout": fanout, "leaves_planned": leaves,
                   "audiences": audiences, "styles": styles},
        "kinds": kinds, "tokens": total_tokens, "usd": total_usd,
        "seeding": None if not seed else {"seed_source": seed["seed_source"], "uri": seed["uri"],
                                          "documents": seed.get("documents"), "fraction": s.seed_fraction,
                                          "requests": seeded, "extract_chars": s.seed_extract_chars},
        "budget": {"tokens": cap_t or None, "usd": cap_c or None, "ledger_tokens": ledger_tokens,
                   "ledger_usd": ledger_cost,
                   "fits": (not cap_t or ledger_tokens + total_tokens <= cap_t)
                   and (not cap_c or total_usd is None or (ledger_cost or 0) + total_usd <= cap_c)},
    }


def render(plan: dict[str, Any]) -> str:
    tp, b = plan["topics"], plan["budget"]
    lines = [f"# Synthesize plan ({plan['model']}, {plan['mode']} mode)", "",
             f"Topics: {tp['seeds']:,} seeds, fanout {tp['fanout'] or 'none'} -> {tp['leaves_planned']:,} leaf topics "
             f"(at most; deduplicated when expanded) x {tp['audiences']} audiences x {tp['styles']} styles", "",
             "| kind | requests | wanted | distinct prompts | prompt tokens | completion tokens | USD |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, k in plan["kinds"].items():
        usd = "unknown price" if k["usd"] is None else f"{k['usd']:,.2f}"
        lines.append(f"| {kind} | {k['requests']:,} | {k['wanted']:,} | {k['distinct_prompts']:,} | "
                     f"{k['prompt_tokens']:,} | {k['completion_tokens']:,} | {usd} |")
    total = "unknown price" if plan["usd"] is None else f"${plan['usd']:,.2f}"
    lines += ["", f"Total: {plan['tokens']:,} tokens, {total}.",
              f"Budget: tokens {b['tokens'] or 'no cap'}, USD {b['usd'] or 'no cap'}; ledger so far "
              f"{b['ledger_tokens']:,} tokens; {'fits' if b['fits'] else 'DOES NOT FIT: the run will stop at the cap'}."]
    sd = plan.get("seeding")
    if sd:
        docs = "unknown" if sd["documents"] is None else f"{sd['documents']:,}"
        lines.append(f"Seeded: {sd['requests']:,} of the {plan['kinds']['textbooks']['requests']:,} textbook requests "
                     f"(synth.seed_fraction {sd['fraction']:g}) quote a code extract (<= {sd['extract_chars']:,} chars) "
                     f"of the curate output {sd['uri']} ({docs} documents).")
    for kind, k in plan["kinds"].items():
        if k["short_by"] > 0:
            lines.append(f"Note: {kind}: {k['short_by']:,} fewer requests than the target (only "
                         f"{k['distinct_prompts']:,} distinct prompts; repeats are never sent): add topics, "
                         "topic_fanout levels, audiences or styles.")
    return "\n".join(lines) + "\n"
