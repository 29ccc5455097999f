"""The request plan: counts from token targets, capped by distinct prompts, cost and budget; nothing sent."""

from primer.config import load_config
from tasks.synth import prompts as P
from tasks.synth.plan import build_plan, render


def test_phi1_scale_plan_from_token_targets():
    cfg = load_config("tiny", {"synth.textbook_tokens": 1_000_000_000, "synth.exercise_tokens": 180_000_000,
                               "synth.topic_fanout": [25, 20], "synth.exercise_topics_from_tree": True,
                               "teacher.model": "gpt-3.5-turbo", "teacher.mode": "batch",
                               "synth.audiences": [f"a{i}" for i in range(6)],
                               "synth.styles": [f"s{i}" for i in range(8)], "teacher.max_cost_usd": 100.0})
    topics, _ = P.load_topic_tree()
    pools, _ = P.load_exercise_topics()
    plan = build_plan(cfg, topics, pools)
    assert plan["topics"]["leaves_planned"] == len(topics) * 500 >= 20_000
    tb, ex = plan["kinds"]["textbooks"], plan["kinds"]["exercises"]
    assert tb["wanted"] == -(-1_000_000_000 // cfg.synth.tokens_per_textbook) == tb["requests"] <= tb["distinct_prompts"]
    assert ex["requests"] == 600_000 and plan["topics"]["fanout"] == [25, 20]
    assert plan["kinds"]["topics"]["requests"] == len(topics) * (1 + 25)
    assert plan["usd"] > 100 and not plan["budget"]["fits"]
    text = render(plan)
    assert "DOES NOT FIT" in text and "23,500 leaf topics" in text


def test_plan_caps_at_distinct_prompts():
    cfg = load_config("tiny", {"synth.textbooks": 10_000})
    topics, _ = P.load_topic_tree()
    pools, _ = P.load_exercise_topics()
    tb = build_plan(cfg, topics, pools)["kinds"]["textbooks"]
    assert tb["requests"] == tb["distinct_prompts"] == len(topics) * 9 and tb["short_by"] == 10_000 - tb["requests"]


def test_topic_tree_expands_by_level_and_deduplicates(scripted_server, tmp_path):
    from tasks.synth.stage import expand_topics
    from tests.synth.test_stage import overrides

    cfg = load_config("tiny", overrides(scripted_server, tmp_path / "store", **{"synth.topic_fanout": [3, 2]}))
    seeds = [P.Topic("c", "loops"), P.Topic("c", "lists"), P.Topic("c", "Loops")]  # a duplicate seed name
    out = expand_topics(cfg, seeds)
    names = [t.name for t in out["topics"]]
    assert len(names) == len(set(names)) == 2 * 3 * 2       # "Loops" repeats "loops": expanded once
    assert all(n.count(": aspect") == 2 for n in names)
    assert scripted_server.stats.successful == 2 + 2 * 3
