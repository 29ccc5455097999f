"""Honest teacher accounting: spent, reserved and remaining tokens and dollars, summed over every phase.

Spent counts what was paid: this run's new answers per phase (summed, never "the last phase's value") and
the whole ledger (every run sharing it), which is what the budget caps are checked against.
"""

from __future__ import annotations

from typing import Any

from primer.settings.synth import TeacherConfig


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def accounting(cfg: TeacherConfig, phases: dict[str, Any], ledger_tokens: int, ledger_cost: float | None,
               reserved_tokens: int = 0, reserved_cost: float = 0.0, spent_at_stop: int = 0) -> dict[str, Any]:
    """`phases` maps phase name -> TeacherUsage (or its asdict). `reserved_*`: at the latest budget stop, the
    worst case of the requests then in flight; they were answered before the run ended, so they are inside
    `ledger` now and `remaining` does not subtract them again. Each phase's own stop is in `by_phase`."""
    by_phase: dict[str, dict[str, Any]] = {}
    run_tokens, run_cost = 0, 0.0
    for name, u in phases.items():
        u = u if isinstance(u, dict) else vars(u)
        tokens = int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0))
        cost = u.get("cost_usd")
        by_phase[name] = {"requests": u.get("requests", 0), "cached": u.get("cached", 0),
                          "sent": u.get("sent", 0), "tokens": tokens, "usd": _money(cost),
                          # each phase's own budget stop: several phases can stop in one run, and the
                          # run-level `reserved` below is only the latest of them
                          "stopped": u.get("stopped"), "reserved_tokens": int(u.get("reserved_tokens") or 0),
                          "spent_at_stop": int(u.get("spent_at_stop") or 0)}
        run_tokens += tokens
        run_cost = None if (run_cost is None or cost is None) else run_cost + cost
    cap_t, cap_c = cfg.max_tokens_total, cfg.max_cost_usd
    return {
        "spent": {"tokens": run_tokens, "usd": _money(run_cost)},          # this run, all phases
        "ledger": {"tokens": ledger_tokens, "usd": _money(ledger_cost)},   # every run: what budgets count
        "reserved": {"tokens": reserved_tokens, "usd": _money(reserved_cost), "spent_at_stop": spent_at_stop,
                     "note": ("worst case of the requests in flight when the budget stopped admission; they "
                              "were answered since, and what they cost is in spent and ledger")
                     if reserved_tokens else "nothing in flight at the end of the run"},
        "budget": {"tokens": cap_t or None, "usd": cap_c or None},
        "remaining": {"tokens": (cap_t - ledger_tokens) if cap_t else None,
                      "usd": _money(cap_c - (ledger_cost or 0.0)) if cap_c else None},
        "by_phase": by_phase,
    }


def rows(acc: dict[str, Any]) -> list[dict[str, Any]]:
    """Dashboard rows: one per phase, then this run, the ledger, reserved, budget and remaining."""
    out = [{"what": f"phase {name}", "tokens": p["tokens"], "usd": p["usd"], "requests": p["requests"],
            "cached": p["cached"], "sent": p["sent"]} for name, p in acc["by_phase"].items()]
    for what in ("spent", "ledger", "reserved", "budget", "remaining"):
        out.append({"what": {"spent": "spent (this run)", "ledger": "spent (whole ledger)"}.get(what, what),
                    "tokens": acc[what]["tokens"], "usd": acc[what]["usd"], "requests": "", "cached": "",
                    "sent": ""})
    return out
