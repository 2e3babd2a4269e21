"""How well each rung ranks curves against their final values, and the advice `hpod simulate`
gives from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hpod.cli import main
from hpod.schedule.rank_agreement import WEAK_AGREEMENT, rank_agreement, weak_first_rung_advice
from hpod.schedule.simulate import Curve
from hpod.simulation import simulate_study
from hpod.spec import parse_study


def crossing(n: int, steps: int = 27, cross_after: int = 2) -> list[Curve]:
    """Curve i is i-th best up to step `cross_after` and (n - 1 - i)-th best from then on."""
    return [Curve(tuple(float(i if t <= cross_after else n - i) for t in range(1, steps + 1)))
            for i in range(n)]


def test_curves_that_keep_their_order_agree_at_every_level() -> None:
    curves = [Curve(tuple(i + 10.0 / t for t in range(1, 28))) for i in range(8)]
    rows = rank_agreement(curves, (1, 3, 9))
    assert [(r.level, r.curves) for r in rows] == [(1, 8), (3, 8), (9, 8)]
    assert all(math.isclose(r.spearman, 1.0) for r in rows)
    assert weak_first_rung_advice(rows, "asha") is None


def test_curves_that_reverse_their_order_disagree_until_they_have_crossed() -> None:
    rows = rank_agreement(crossing(10), (1, 3, 9))
    assert [round(r.spearman, 6) for r in rows] == [-1.0, 1.0, 1.0]
    advice = weak_first_rung_advice(rows, "asha")
    assert advice is not None
    assert "resource 1" in advice and "-1.00" in advice and "10 curves" in advice
    assert "`min_resource = 3`" in advice and "async-hyperband" in advice
    # async-hyperband hedges already: only a later first rung is suggested.
    hedged = weak_first_rung_advice(rows, "async-hyperband")
    assert hedged is not None and "min_resource = 3" in hedged and "kind =" not in hedged


def test_with_no_later_level_that_agrees_the_advice_is_to_stop_judging_early() -> None:
    rows = rank_agreement(crossing(10, cross_after=20), (1, 3, 9))
    assert all(r.spearman < WEAK_AGREEMENT for r in rows)
    advice = weak_first_rung_advice(rows, "sh")
    assert advice is not None and "min_resource" not in advice and '"fifo"' in advice
    # Only the last level agrees: starting there would leave a single rung, so it is not offered.
    rows = rank_agreement(crossing(10, cross_after=5), (1, 3, 9))
    assert [round(r.spearman, 6) for r in rows] == [-1.0, -1.0, 1.0]
    advice = weak_first_rung_advice(rows, "sh")
    assert advice is not None and "min_resource" not in advice


def test_the_value_judged_is_the_report_the_scheduler_judges_at_that_level() -> None:
    # Reports at resource 0.5, 1.5, 4, 10, 30: level 1 judges the report at 1.5, level 3 the
    # one at 4, level 9 the one at 10.
    steps = (0.5, 1.5, 4.0, 10.0, 30.0)
    curves = [Curve((0.0, float(i), float(-i), float(i), float(i)), steps=steps) for i in range(6)]
    rows = rank_agreement(curves, (1, 3, 9))
    assert [round(r.spearman, 6) for r in rows] == [1.0, -1.0, 1.0]
    # Float levels (a data fraction) work the same way.
    fractions = [Curve((float(i), float(-i), float(i)), steps=(0.1, 0.3, 1.0)) for i in range(6)]
    assert [round(r.spearman, 6) for r in rank_agreement(fractions, (0.1, 0.3))] == [1.0, -1.0]


def test_a_level_every_report_jumps_past_is_never_judged() -> None:
    # Reports every 5 steps: the report at 5 is past levels 1 and 3, and the scheduler judges
    # it at 3 only (hpod.schedule.rungs.Ladder.crossing); level 9 judges the report at 10.
    steps = tuple(float(s) for s in range(5, 31, 5))
    curves = [Curve(tuple(float(i) for _ in steps), steps=steps) for i in range(6)]
    rows = rank_agreement(curves, (1, 3, 9))
    assert [r.curves for r in rows] == [0, 6, 6]
    assert math.isnan(rows[0].spearman) and math.isclose(rows[1].spearman, 1.0)
    assert weak_first_rung_advice(rows, "asha") is None  # nothing known: no advice


def test_a_curve_that_diverges_counts_as_the_worst_not_as_missing() -> None:
    # The best four at rung 1 end as NaN or inf: the rung ranked them wrongly, and it shows.
    good_then_diverged = [Curve((float(i),) * 26 + (bad,))
                          for i, bad in enumerate((math.nan, math.inf, math.nan, math.inf))]
    steady = [Curve((float(i),) * 27) for i in range(4, 10)]
    rows = rank_agreement(good_then_diverged + steady, (1,))
    assert rows[0].curves == 10 and rows[0].spearman < 0
    # Maximised: the worst is -inf, so a diverged curve again ranks last.
    flipped = [Curve(tuple(-v for v in c.values)) for c in good_then_diverged + steady]
    assert math.isclose(rank_agreement(flipped, (1,), maximize=True)[0].spearman,
                        rows[0].spearman)


def test_short_curves_tied_values_and_too_few_curves_say_nothing() -> None:
    short = [Curve(tuple(float(i) for _ in range(3))) for i in range(10)]  # end at step 3
    rows = rank_agreement(short, (1, 3))
    assert rows[0].curves == 10 and math.isclose(rows[0].spearman, 1.0)
    assert rows[1].curves == 0 and math.isnan(rows[1].spearman)  # ends at the level
    tied = [Curve((1.0,) * 5) for _ in range(10)]
    assert math.isnan(rank_agreement(tied, (1,))[0].spearman)
    few = rank_agreement(crossing(4), (1,))
    assert few[0].curves == 4 and math.isnan(few[0].spearman)
    assert weak_first_rung_advice(few, "asha") is None
    assert weak_first_rung_advice([], "asha") is None


def study_table(kind: str) -> dict:
    return {
        "name": "agree", "command": ["python", "-c", "pass"],
        "objective": {"metric": "loss", "direction": "minimize"},
        "budget": {"trials": 40}, "parallel": 4, "seed": 3,
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                  "act": {"type": "categorical", "choices": ["relu", "tanh"]}},
        "scheduler": {"kind": kind, "max_resource": 27},
    }


def test_a_simulation_measures_the_rungs_on_the_curves_it_trained(tmp_path: Path) -> None:
    spec = parse_study(study_table("asha"), path=tmp_path / "agree.toml")
    sim = simulate_study(spec)
    assert [r.level for r in sim.rank_agreement] == [1, 3, 9]
    # Every trial started got its own synthetic curve, and all of them are 27 long.
    assert all(r.curves == len(sim.result.trials) == 40 for r in sim.rank_agreement)
    # The synthetic curves cross (docs/schedulers.md): rung 1 ranks worse than rung 9.
    first, last = sim.rank_agreement[0].spearman, sim.rank_agreement[-1].spearman
    assert -1.0 <= first < last <= 1.0
    fifo = parse_study(study_table("fifo"), path=tmp_path / "fifo.toml")
    assert simulate_study(fifo).rank_agreement == ()


def test_the_command_prints_the_table_and_the_advice_and_its_json_carries_them(
        tmp_path: Path, capsys) -> None:
    digits = Path(__file__).resolve().parents[1] / "fixtures" / "studies" / "good" / "digits.toml"
    assert main(["simulate", str(digits)]) == 0
    text = capsys.readouterr().out
    assert "how well each rung ranks trials" in text
    assert "resource     1     3     9    27" in text
    assert main(["simulate", str(digits), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [row["level"] for row in doc["rank_agreement"]] == [1, 3, 9, 27]
    assert all(row["curves"] == doc["trials"] for row in doc["rank_agreement"])
    first = doc["rank_agreement"][0]["spearman"]
    assert first < WEAK_AGREEMENT and doc["advice"] is not None
    # The note is the advice, wrapped without breaking a `code span` across lines.
    start = text.index("note: ")
    note = text[start:text.index("\nbest ", start)]
    assert " ".join(note.split()) == f"note: {doc['advice']}"
    assert '`kind = "async-hyperband"`' in note and "`min_resource = 3`" in note
    fifo = tmp_path / "fifo.json"
    fifo.write_text(json.dumps(study_table("fifo")))
    assert main(["simulate", str(fifo), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rank_agreement"] == [] and doc["advice"] is None
