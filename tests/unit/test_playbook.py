"""The management formulas of ``shared/playbook.py``, every expected number worked by hand.

The calendar of most tests: Asia/Shanghai, Monday to Friday 09:00–18:00 (9 h = 32 400 s),
11 November 2026 a holiday. November 2026 starts on a Sunday; its weekdays are 2–6, 9–13,
16–20, 23–27 and 30: 21 days, 20 working days without the 11th, 648 000 working seconds.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from shared.playbook import (
    PeriodKind,
    PlanWeek,
    ScoreLine,
    ValueChange,
    WorkingCalendar,
    check_weights,
    classify_shape,
    conversion_rates,
    deviation,
    driver_gaps,
    leads_needed,
    pacing,
    period_end,
    period_start_problem,
    plan_weeks,
    reached_at_least,
    scorecard,
    split_quota,
    weights_from_results,
    whole_leads,
    working_seconds,
)

ZONE = ZoneInfo("Asia/Shanghai")
NOV = datetime(2026, 11, 1, tzinfo=ZONE)
DEC = datetime(2026, 12, 1, tzinfo=ZONE)
CALENDAR = WorkingCalendar(holidays=[date(2026, 11, 11)])
DAY = 32_400
D = Decimal


def _at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=ZONE)


def test_working_time_skips_weekends_holidays_and_hours_off() -> None:
    assert working_seconds(CALENDAR, ZONE, NOV, DEC) == 20 * DAY
    # Make-up working Saturday 14 November: one day more.
    makeup = WorkingCalendar(holidays=[date(2026, 11, 11)], extra_working_days=[date(2026, 11, 14)])
    assert working_seconds(makeup, ZONE, NOV, DEC) == 21 * DAY
    # Monday 16th from 13:30 to Tuesday 10:00: 4.5 h + 1 h.
    assert working_seconds(CALENDAR, ZONE, _at(16, 13, 30), _at(17, 10)) == 16_200 + 3_600
    # Wednesday 11th is off.
    assert working_seconds(CALENDAR, ZONE, _at(11), _at(12)) == 0


def test_period_starts_are_local_boundaries() -> None:
    assert period_start_problem(PeriodKind.month, date(2026, 11, 1)) is None
    assert "a month starts on the 1st" in (
        period_start_problem(PeriodKind.month, date(2026, 11, 5)) or ""
    )
    assert "2026-11-02" in (period_start_problem(PeriodKind.week, date(2026, 11, 4)) or "")
    assert period_start_problem(PeriodKind.quarter, date(2026, 11, 1)) is not None
    assert period_start_problem(PeriodKind.quarter, date(2026, 10, 1)) is None
    assert period_end(PeriodKind.quarter, date(2026, 10, 1)) == date(2027, 1, 1)
    assert period_end(PeriodKind.week, date(2026, 11, 2)) == date(2026, 11, 9)


def test_pacing_over_a_month_with_a_holiday_and_a_mid_period_change() -> None:
    """Revenue target 20 000 for November, raised to 30 000 from Monday 9th; 4 400 sold by
    Monday 16th 00:00.

    Working days before the change: 2–6 (5); after it, up to the 16th: 9, 10, 12, 13 (4, the
    11th a holiday). Elapsed share 9/20 = 0.45.
    expected = 20 000 × 5/20 + 30 000 × 4/20 = 5 000 + 6 000 = 11 000
    attainment = 4 400 / 30 000 = 0.146667; pace = 4 400 / 11 000 = 0.4; projection =
    4 400 / 0.45 = 9 777.78; behind.
    """
    changes = [ValueChange(NOV, D(20000)), ValueChange(_at(9), D(30000))]
    result = pacing("revenue", D(4400), changes, CALENDAR, ZONE, NOV, DEC, _at(16))
    assert result.value == 30000
    assert result.elapsed_share == D("0.45")
    assert result.expected == 11000
    assert round(result.attainment or 0, 6) == D("0.146667")
    assert result.pace == D("0.4")
    assert round(result.projection or 0, 2) == D("9777.78")
    assert result.status == "behind"


def test_pacing_mid_day_and_the_status_thresholds() -> None:
    """At Monday 16th 13:30: 9 days and 4.5 h worked, 307 800 s of 648 000: share 0.475.
    expected = 20 000 × 162 000/648 000 + 30 000 × 145 800/648 000 = 5 000 + 6 750 = 11 750.
    11 750 sold: pace 1, on track; 10 575 (0.9 × 11 750): at risk; 10 574: behind.
    """
    changes = [ValueChange(NOV, D(20000)), ValueChange(_at(9), D(30000))]
    as_of = _at(16, 13, 30)

    def status(actual: int) -> str:
        return pacing("revenue", D(actual), changes, CALENDAR, ZONE, NOV, DEC, as_of).status

    on = pacing("revenue", D(11750), changes, CALENDAR, ZONE, NOV, DEC, as_of)
    assert on.elapsed_share == D("0.475")
    assert on.expected == 11750
    assert (status(11750), status(10575), status(10574)) == ("on_track", "at_risk", "behind")


def test_pacing_before_the_period_and_of_a_ratio() -> None:
    changes = [ValueChange(NOV, D(100))]
    early = pacing("sales", D(0), changes, CALENDAR, ZONE, NOV, DEC, NOV - timedelta(days=3))
    assert (early.status, early.expected, early.projection) == ("not_started", D(0), None)
    # Sunday the 1st, nothing worked yet either.
    assert pacing("sales", D(0), changes, CALENDAR, ZONE, NOV, DEC, _at(2, 8)).status == (
        "not_started"
    )
    # A ratio's target holds at every moment: contact rate 0.5 against 0.6.
    ratio = pacing(
        "contact_rate", D("0.5"), [ValueChange(NOV, D("0.6"))], CALENDAR, ZONE, NOV, DEC, _at(16)
    )
    assert (ratio.expected, ratio.projection, ratio.status) == (D("0.6"), D("0.5"), "behind")
    assert round(ratio.pace or 0, 6) == D("0.833333")


def test_pacing_at_the_end_of_the_period() -> None:
    """After the period: share 1, expected = 20 000 × 5/20 + 30 000 × 15/20 = 27 500."""
    changes = [ValueChange(NOV, D(20000)), ValueChange(_at(9), D(30000))]
    done = pacing("revenue", D(30000), changes, CALENDAR, ZONE, NOV, DEC, DEC + timedelta(1))
    assert (done.elapsed_share, done.expected, done.attainment) == (D(1), D(27500), D(1))
    assert done.status == "on_track"


def test_quota_split_equal_by_last_period_and_given() -> None:
    """Team quota 50 000 with the playbook's 20 % uplift: 60 000 to share.

    equal: 20 000 each. By last period (a1 9 000, a2 24 000, a3 nothing: weighs as the
    weakest, 9 000): 60 000 × 9/42 = 12 857.142857 → 12 857.14 twice, 60 000 × 24/42 =
    34 285.714286 → 34 285.71; one cent left, to the largest remainder (a2): 34 285.72.
    given 0.5/0.3/0.2: 30 000, 18 000, 12 000.
    """
    cents = D("0.01")
    agents = ("a1", "a2", "a3")
    equal = split_quota(D(50000), dict.fromkeys(agents, D(1)), D("1.2"), cents)
    assert equal == {"a1": D("20000.00"), "a2": D("20000.00"), "a3": D("20000.00")}
    weights = weights_from_results({"a1": D(9000), "a2": D(24000), "a3": None})
    assert weights == {"a1": 9000, "a2": 24000, "a3": 9000}
    by_results = split_quota(D(50000), weights, D("1.2"), cents)
    assert by_results == {"a1": D("12857.14"), "a2": D("34285.72"), "a3": D("12857.14")}
    given = split_quota(D(50000), {"a1": D("0.5"), "a2": D("0.3"), "a3": D("0.2")}, D("1.2"), cents)
    assert given == {"a1": D("30000.00"), "a2": D("18000.00"), "a3": D("12000.00")}


def test_quota_split_in_whole_sales() -> None:
    """10 sales × 1.2 = 12 over 7 agents: 1 each and 5 left, to the first 5 by name."""
    shares = split_quota(D(10), {f"a{i}": D(1) for i in range(7)}, D("1.2"), D(1))
    assert shares == {"a0": 2, "a1": 2, "a2": 2, "a3": 2, "a4": 2, "a5": 1, "a6": 1}
    assert weights_from_results({"a": None, "b": D(0)}) == {"a": 1, "b": 1}
    for bad in ({"a": D(-1), "b": D(2)}, {"a": D(0)}):
        with pytest.raises(ValueError):
            split_quota(D(10), bad, D("1.2"), D(1))
    with pytest.raises(ValueError, match="uplift"):
        split_quota(D(10), {"a": D(1)}, D(0), D(1))


def test_scorecard_weights_and_cap() -> None:
    """Revenue weighs 0.7, sales 0.3, attainment capped at 1.2.

    a1: revenue 9 000 / 10 000 = 0.9, sales 3 / 3 = 1 → 0.63 + 0.3 = 0.93.
    a2: revenue 24 000 / 20 000 = 1.2, sales 12 / 10 = 1.2 → 0.84 + 0.36 = 1.2; with a cap
    of 1: 1.0.
    """
    weights = {"revenue": D("0.7"), "sales": D("0.3")}
    check_weights(weights)
    a1, _ = scorecard(
        [
            ScoreLine("revenue", D("0.7"), D(9000), D(10000)),
            ScoreLine("sales", D("0.3"), D(3), D(3)),
        ],
        D("1.2"),
    )
    a2_lines = [
        ScoreLine("revenue", D("0.7"), D(24000), D(20000)),
        ScoreLine("sales", D("0.3"), D(12), D(10)),
    ]
    a2, scored = scorecard(a2_lines, D("1.2"))
    assert (a1, a2) == (D("0.93"), D("1.2"))
    assert [line.attainment for line in scored] == [D("1.2"), D("1.2")]
    assert scorecard(a2_lines, D(1))[0] == 1
    missing, _ = scorecard([ScoreLine("sales", D(1), D(3), None)], D("1.2"))
    assert missing is None
    with pytest.raises(ValueError, match="sum to 1"):
        check_weights({"revenue": D("0.6"), "sales": D("0.3")})
    with pytest.raises(ValueError, match="negative"):
        check_weights({"revenue": D("1.5"), "sales": D("-0.5")})


# One agent's leads by the highest stage each reached in the period: 2 won, 2 at ready,
# 4 at acknowledged, 2 at contacted, 10 at potential (one of them later lost).
HIGHEST = (
    ["won"] * 2 + ["ready"] * 2 + ["acknowledged"] * 4 + ["contacted"] * 2 + ["potential"] * 10
)
RATES = {
    "potential": D("0.5"),
    "contacted": D("0.8"),
    "acknowledged": D("0.5"),
    "intent": D(1),
    "ready": D("0.5"),
}


def test_funnel_conversion_counts_leads_that_reached_at_least_each_stage() -> None:
    """At least E: 20, D: 10, C: 8, B: 4 (the two at A passed B), A: 4, won: 2.
    E→D 10/20 = 0.5, D→C 8/10 = 0.8, C→B 4/8 = 0.5, B→A 4/4 = 1, A→won 2/4 = 0.5."""
    reached = reached_at_least([*HIGHEST, "lost"])
    assert reached == {
        "potential": 20,
        "contacted": 10,
        "acknowledged": 8,
        "intent": 4,
        "ready": 4,
        "won": 2,
    }
    assert conversion_rates(reached) == RATES
    assert conversion_rates(reached_at_least([]))["potential"] is None


@pytest.mark.parametrize(
    ("now", "shape"),
    [
        # E 40 × 0.5 = 20 = D; D 20 × 0.8 = 16 = C.
        ({"potential": 40, "contacted": 20, "acknowledged": 16}, "healthy"),
        # C 4 against D × 0.8 = 1.6: 2.5 times, above 1.5.
        ({"potential": 9, "contacted": 2, "acknowledged": 4, "ready": 2}, "pile_up_in_c"),
        # C 5 against 16: 0.3125, below 0.5.
        ({"potential": 40, "contacted": 20, "acknowledged": 5}, "too_few_in_c"),
        # E 10 × 0.5 = 5 against D 20: 0.25.
        ({"potential": 10, "contacted": 20, "acknowledged": 16}, "too_few_at_top"),
        # Both low: C at 2/16 = 0.125 (4 × too low) beats the top at 0.25 (2 × too low).
        ({"potential": 10, "contacted": 20, "acknowledged": 2}, "too_few_in_c"),
    ],
)
def test_funnel_shapes(now: dict[str, int], shape: str) -> None:
    assert classify_shape(now, RATES).shape == shape


def test_funnel_shape_needs_rates() -> None:
    unknown = dict(RATES, contacted=None)
    assert classify_shape({"potential": 3}, unknown).shape == "insufficient_data"
    both = classify_shape({"potential": 10, "contacted": 20, "acknowledged": 2}, RATES)
    assert both.findings == ("too_few_in_c", "too_few_at_top")


def test_backward_plan_works_back_through_the_funnel() -> None:
    """2 won at A→won 0.5 needs 4 at A, at B→A 1: 4 at B, at 0.5: 8 at C, 10 at D, 20 at E:
    the funnel the rates came from."""
    assert leads_needed(D(2), RATES) == {
        "won": 2,
        "ready": 4,
        "intent": 4,
        "acknowledged": 8,
        "contacted": 10,
        "potential": 20,
    }
    assert leads_needed(D(2), dict(RATES, intent=None))["acknowledged"] is None


def test_weekly_plan_is_redone_from_the_rates_seen() -> None:
    """November's revenue target (20 000, 30 000 from the 9th), 2 200 per won lead.

    Weeks: 2–9 (5 working days), 9–16 (4), 16–23 (5), 23–30 (5), 30–1 Dec (1); now in the
    third. Week 1 was planned with no conversion seen: no plan. Week 2, planned on the 9th
    after 4 400 sold: 25 600 left × 4/15 = 6 826.67 = 3.103 won leads → A 6.206, B 6.206,
    C 12.412, D 15.515, E 31.030 → whole: 4, 7, 7, 13, 16, 32. Week 3, planned on the 16th,
    nothing sold in week 2: 25 600 × 5/11 = 11 636.36 = 5.289 won → 6, 11, 11, 22, 27, 53.
    Week 4 carries week 3's plan: the same. Week 5: 25 600 × 1/11 = 2 327.27 = 1.058 won
    → 2, 3, 3, 5, 6, 11.
    """
    none = dict.fromkeys(RATES)
    weeks = [
        PlanWeek(_at(2), _at(9), 5, D(20000), D(0), none, None),
        PlanWeek(_at(9), _at(16), 4, D(30000), D(4400), RATES, D(2200)),
        PlanWeek(_at(16), _at(23), 5, D(30000), D(4400), RATES, D(2200)),
        PlanWeek(_at(23), _at(30), 5, D(30000), D(9999), none, None),  # not yet known
        PlanWeek(_at(30), DEC, 1, D(30000), D(9999), none, None),
    ]
    plans = plan_weeks(weeks, current=2)
    order = ["won", "ready", "intent", "acknowledged", "contacted", "potential"]

    def whole(index: int) -> list[int | None]:
        needed = whole_leads(plans[index].needed)
        return [needed[s] for s in order]

    assert plans[0].result_needed == 5000
    assert whole(0) == [None] * 6
    assert round(plans[1].result_needed, 2) == D("6826.67")
    assert whole(1) == [4, 7, 7, 13, 16, 32]
    assert round(plans[2].result_needed, 2) == D("11636.36")
    assert whole(2) == [6, 11, 11, 22, 27, 53]
    assert whole(3) == whole(2)
    assert plans[3].planned_at == _at(16)
    assert whole(4) == [2, 3, 3, 5, 6, 11]


def test_driver_gaps_split_the_gap_exactly() -> None:
    """a1 against target-implied drivers (the team's median rates, and the leads dialed that
    would meet the expected 11 000 at them: 11 000 / (0.6 × 0.5 × 0.5 × 2 000) = 36.667).

    ln(4 400 / 11 000) = ln 0.4 = −0.916291. close ln(0.2/0.5) = −0.916291 (share 1.0);
    contact ln(0.5/0.6) = −0.182322 (0.198978); dialed ln(40/36.667) = 0.087011
    (−0.094960); ticket ln(2 200/2 000) = 0.095310 (−0.104017).
    """
    values = {
        "leads_dialed": D(40),
        "contact_rate": D("0.5"),
        "quote_rate": D("0.5"),
        "close_rate": D("0.2"),
        "avg_revenue_per_won_lead": D(2200),
    }
    reference = {
        "leads_dialed": D(11000) / D(300),
        "contact_rate": D("0.6"),
        "quote_rate": D("0.5"),
        "close_rate": D("0.5"),
        "avg_revenue_per_won_lead": D(2000),
    }
    total, gaps = driver_gaps(values, reference)
    assert round(total or 0, 6) == -0.916291
    shares = {g.driver: round(g.share_of_gap or 0, 6) for g in gaps}
    assert shares == {
        "leads_dialed": -0.09496,
        "contact_rate": 0.198978,
        "quote_rate": 0.0,
        "close_rate": 1.0,
        "avg_revenue_per_won_lead": -0.104017,
    }


def test_how_far_is_far() -> None:
    """Baseline 40, 44, 36, 40: mean 40, sd 3.27, 10 % of the mean 4 → spread 4.
    5 today: z = −35/4 = −8.75, far. 52: z = 3, far. 51: 2.75, not far.
    Four identical 20s: spread 10 % = 2; 21 is z 0.5."""
    baseline = [D(40), D(44), D(36), D(40)]
    low = deviation(D(5), baseline, D(1))
    assert (low.baseline_mean, low.spread, low.z, low.far) == (D(40), D(4), D("-8.75"), True)
    assert deviation(D(52), baseline, D(1)).far
    assert not deviation(D(51), baseline, D(1)).far
    assert deviation(D(21), [D(20)] * 4, D(1)).z == D("0.5")
    assert deviation(D(3), [D(0)] * 4, D(1)).far  # the per-KPI floor: 3 units
