"""The KPIs of ``kpis.md``: their keys, names and formulas, defined once.

The aggregator stores the additive counters and the lead facts; the API combines them into
ratios with :func:`compute_kpis`. Both read the definitions from here.

Longer than 500 lines on purpose: the KPI formulas live in one module, so that the
aggregator and the API cannot drift apart and a reader checks ``kpis.md`` against one file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Literal

Number = int | Decimal


class Unit(StrEnum):
    count = "count"  # type: ignore[assignment]
    seconds = "seconds"
    money = "money"
    ratio = "ratio"
    score = "score"
    per_hour = "per_hour"


@dataclass(frozen=True, slots=True)
class Counter:
    """An additive KPI stored per minute and per day."""

    key: str
    name_zh: str
    unit: Unit
    definition: str


@dataclass(frozen=True, slots=True)
class LeadCount:
    """A distinct-lead count: a lead counts once per scope and period."""

    key: str
    name_zh: str
    fact: str
    definition: str


@dataclass(frozen=True, slots=True)
class Ratio:
    """``sum(numerator) / (denominator / denominator_scale)``, then divided by each ratio of
    ``divided_by``; ``None`` when a divisor is zero or unknown (with no ``denominator``, also
    when the numerator is zero)."""

    key: str
    name_zh: str
    numerator: tuple[str, ...]
    denominator: str | None
    unit: Unit
    formula: str
    # Per-hour rates divide by hours, not seconds.
    denominator_scale: int = 1
    # Ratios the value is divided by in turn (capacity: time over the handle time per lead).
    divided_by: tuple[str, ...] = ()


COUNTERS: tuple[Counter, ...] = (
    Counter("dials", "外拨次数", Unit.count, "calls with direction = outbound"),
    Counter("inbound_calls", "呼入", Unit.count, "calls with direction = inbound"),
    Counter("connects", "接通数", Unit.count, "calls answered by a human"),
    Counter("inbound_connects", "呼入接通数", Unit.count, "inbound calls answered by a human"),
    Counter("contacts", "有效联通数", Unit.count, "connected calls with contact_reached = true"),
    Counter(
        "effective_calls", "有效通话数", Unit.count, "connected calls with talk ≥ the threshold"
    ),
    Counter("talk_seconds", "通话时长", Unit.seconds, "sum of talk_seconds"),
    Counter("effective_talk_seconds", "有效通话时长", Unit.seconds, "talk of effective calls"),
    Counter("wrap_seconds", "话后处理", Unit.seconds, "sum of wrap_seconds"),
    Counter("quotes", "报价次数", Unit.count, "quote.given events"),
    Counter("sales", "成交单数", Unit.count, "sale.closed not cancelled"),
    Counter("revenue", "销售额", Unit.money, "sum of the amount of sales not cancelled"),
    Counter("margin", "利润", Unit.money, "sum of the margin of sales not cancelled"),
    Counter("collections", "回款额", Unit.money, "payment.received for orders not cancelled"),
    Counter("new_customer_sales", "新客户开发", Unit.count, "sales with customer_type = new"),
    Counter(
        "existing_customer_sales", "老客户二次开发", Unit.count, "sales, customer_type = existing"
    ),
    Counter("csat_responses", "满意度调查数", Unit.count, "survey.completed, one per call"),
    Counter("csat_sum", "满意度总分", Unit.score, "sum of survey scores"),
    # From the flags of each call's latest disposition code (shared/dispositions.py).
    Counter(
        "drops",
        "掉线",
        Unit.count,
        "calls with a drop code, or answered with no agent; not machine answers",
    ),
    Counter("abandoned", "放弃", Unit.count, "inbound calls ended with no agent having answered"),
    Counter(
        "machine_answers",
        "答录机",
        Unit.count,
        "calls answered by a machine: answered_by = machine or an answering_machine code",
    ),
    Counter("dnc_marks", "拒访", Unit.count, "calls whose latest code has the dnc flag"),
    Counter("callbacks_scheduled", "预约回访", Unit.count, "calls whose latest code has callback"),
    Counter("not_interested", "无意向", Unit.count, "calls whose latest code has not_interested"),
)
COUNTER_KEYS: tuple[str, ...] = tuple(c.key for c in COUNTERS)
MONEY_COUNTERS = frozenset(c.key for c in COUNTERS if c.unit is Unit.money)
SECONDS_COUNTERS = frozenset(c.key for c in COUNTERS if c.unit is Unit.seconds)

LEAD_COUNTS: tuple[LeadCount, ...] = (
    LeadCount("leads_dialed", "呼出客户数", "dialed", "distinct leads with an outbound call"),
    LeadCount("leads_reached", "有效客户数", "reached", "distinct leads with contact_reached"),
    LeadCount("leads_quoted", "报价客户数", "quoted", "distinct leads quoted"),
    LeadCount("leads_won", "成功出单客户数", "won", "distinct leads with a sale not cancelled"),
    LeadCount("leads_intent", "意向客户数", "intent", "distinct leads at stage intent or ready"),
)
LEAD_COUNT_KEYS: tuple[str, ...] = tuple(c.key for c in LEAD_COUNTS)
LEAD_FACT_OF: dict[str, str] = {c.key: c.fact for c in LEAD_COUNTS}

# Time logged in comes from agent states, computed for the exact range asked.
LOGGED_IN_SECONDS = "logged_in_seconds"
RESOLVED_FIRST_CALL = "resolved_first_call"

RATIOS: tuple[Ratio, ...] = (
    Ratio("connect_rate", "通话接通率", ("connects",), "dials", Unit.ratio, "connects / dials"),
    Ratio(
        "contact_rate",
        "有效联通率",
        ("leads_reached",),
        "leads_dialed",
        Unit.ratio,
        "leads_reached / leads_dialed",
    ),
    Ratio(
        "quote_rate",
        "报价成功率",
        ("leads_quoted",),
        "leads_reached",
        Unit.ratio,
        "leads_quoted / leads_reached",
    ),
    Ratio(
        "close_rate",
        "销售成功率",
        ("leads_won",),
        "leads_quoted",
        Unit.ratio,
        "leads_won / leads_quoted",
    ),
    Ratio(
        "conversion_rate",
        "销售转化率",
        ("leads_won",),
        "leads_dialed",
        Unit.ratio,
        "leads_won / leads_dialed",
    ),
    Ratio(
        "intent_rate",
        "意向客户获取率",
        ("leads_intent",),
        "leads_reached",
        Unit.ratio,
        "leads_intent / leads_reached",
    ),
    Ratio(
        "lead_conversion_rate",
        "线索转化率",
        ("leads_won",),
        "leads_intent",
        Unit.ratio,
        "leads_won / leads_intent",
    ),
    Ratio(
        "avg_revenue_per_won_lead",
        "客均保费",
        ("revenue",),
        "leads_won",
        Unit.money,
        "revenue / leads_won",
    ),
    Ratio("avg_order_value", "平均订单金额", ("revenue",), "sales", Unit.money, "revenue / sales"),
    Ratio("margin_rate", "平均利润率", ("margin",), "revenue", Unit.ratio, "margin / revenue"),
    Ratio(
        "avg_talk_seconds",
        "平均通话时长",
        ("talk_seconds",),
        "connects",
        Unit.seconds,
        "talk_seconds / connects",
    ),
    Ratio(
        "avg_handle_seconds",
        "平均处理时长",
        ("talk_seconds", "wrap_seconds"),
        "connects",
        Unit.seconds,
        "(talk_seconds + wrap_seconds) / connects",
    ),
    Ratio(
        "calls_per_lead",
        "客均通话次数",
        ("dials",),
        "leads_dialed",
        Unit.ratio,
        "dials / leads_dialed",
    ),
    Ratio(
        "dials_per_hour",
        "每小时外拨",
        ("dials",),
        LOGGED_IN_SECONDS,
        Unit.per_hour,
        "dials / (logged_in_seconds / 3600)",
        denominator_scale=3600,
    ),
    Ratio(
        "sales_per_hour",
        "每小时成交",
        ("sales",),
        LOGGED_IN_SECONDS,
        Unit.per_hour,
        "sales / (logged_in_seconds / 3600)",
        denominator_scale=3600,
    ),
    Ratio(
        "contacts_per_hour",
        "每小时有效联通",
        ("contacts",),
        LOGGED_IN_SECONDS,
        Unit.per_hour,
        "contacts / (logged_in_seconds / 3600)",
        denominator_scale=3600,
    ),
    Ratio(
        "occupancy",
        "利用率",
        ("talk_seconds", "wrap_seconds"),
        LOGGED_IN_SECONDS,
        Unit.ratio,
        "(talk_seconds + wrap_seconds) / logged_in_seconds",
    ),
    # kpis.md's capacity: how many leads an agent can work in the time logged in, at the
    # handle time per call and the calls per lead seen.
    Ratio(
        "capacity",
        "产能",
        (LOGGED_IN_SECONDS,),
        None,
        Unit.count,
        "logged_in_seconds / (avg_handle_seconds × calls_per_lead)",
        divided_by=("avg_handle_seconds", "calls_per_lead"),
    ),
    Ratio(
        "fcr_rate",
        "首次通话解决率",
        (RESOLVED_FIRST_CALL,),
        "inbound_connects",
        Unit.ratio,
        "resolved_first_call / inbound_connects",
    ),
    Ratio("drop_rate", "掉线率", ("drops",), "connects", Unit.ratio, "drops / connects"),
    Ratio(
        "abandon_rate",
        "放弃率",
        ("abandoned",),
        "inbound_calls",
        Unit.ratio,
        "abandoned / inbound_calls",
    ),
    Ratio(
        "csat_avg",
        "客户满意度",
        ("csat_sum",),
        "csat_responses",
        Unit.score,
        "csat_sum / csat_responses",
    ),
)
RATIO_BY_KEY: dict[str, Ratio] = {r.key: r for r in RATIOS}

DISPOSITIONS = "dispositions"
BASE_KEYS: tuple[str, ...] = (
    *COUNTER_KEYS,
    *LEAD_COUNT_KEYS,
    LOGGED_IN_SECONDS,
    RESOLVED_FIRST_CALL,
)
ALL_KPI_KEYS: tuple[str, ...] = (*BASE_KEYS, *RATIO_BY_KEY, DISPOSITIONS)

# The day's work of a floor, as every summary (API default, digest, demo) starts it.
FLOOR_COUNTERS: tuple[str, ...] = (
    "dials",
    "connects",
    "contacts",
    "talk_seconds",
    "quotes",
    "sales",
    "revenue",
)

DEFAULT_METRICS: tuple[str, ...] = (
    *FLOOR_COUNTERS,
    "leads_dialed",
    "leads_reached",
    "connect_rate",
    "contact_rate",
    "close_rate",
    "avg_talk_seconds",
)

# Ratio values are exact decimals rounded here for display; sums stay exact.
RATIO_PLACES = Decimal("0.000001")
MONEY_PLACES = Decimal("0.01")


def base_keys_for(metrics: tuple[str, ...] | list[str]) -> set[str]:
    """The stored counters, lead counts and time measures that ``metrics`` need."""
    needed: set[str] = set()
    for key in metrics:
        ratio = RATIO_BY_KEY.get(key)
        if ratio is None:
            if key != DISPOSITIONS:
                needed.add(key)
            continue
        needed.update(ratio.numerator)
        if ratio.denominator is not None:
            needed.add(ratio.denominator)
        needed |= base_keys_for(ratio.divided_by)
    return needed


def exact_ratio(ratio: Ratio, base: Mapping[str, Number | None]) -> Decimal | None:
    """One ratio from its base values, unrounded; ``None`` where :class:`Ratio` says."""
    numerator = sum((Decimal(base.get(k) or 0) for k in ratio.numerator), Decimal(0))
    if ratio.denominator is None:
        if numerator == 0:
            return None
        value = numerator
    else:
        denominator = Decimal(base.get(ratio.denominator) or 0)
        if ratio.denominator_scale != 1:
            denominator = denominator / ratio.denominator_scale
        if denominator == 0:
            return None
        value = numerator / denominator
    for key in ratio.divided_by:
        divisor = exact_ratio(RATIO_BY_KEY[key], base)
        if not divisor:
            return None
        value = value / divisor
    return value


def ratio_value(ratio: Ratio, base: Mapping[str, Number | None]) -> Decimal | None:
    """One ratio from its base values, rounded for display; ``None`` as :func:`exact_ratio`."""
    value = exact_ratio(ratio, base)
    if value is None:
        return None
    places = MONEY_PLACES if ratio.unit is Unit.money else RATIO_PLACES
    return value.quantize(places)


def compute_kpis(
    metrics: tuple[str, ...] | list[str], base: Mapping[str, Number | None]
) -> dict[str, Number | None]:
    """The requested KPIs (base values and ratios) for one row of base values."""
    out: dict[str, Number | None] = {}
    for key in metrics:
        ratio = RATIO_BY_KEY.get(key)
        out[key] = ratio_value(ratio, base) if ratio is not None else base.get(key, 0)
    return out


def volume_key(metric: str) -> str:
    """The count a leaderboard's minimum volume applies to: a ratio's denominator (for
    capacity, which has none, the time logged in)."""
    ratio = RATIO_BY_KEY.get(metric)
    if ratio is None:
        return metric
    return ratio.denominator if ratio.denominator is not None else ratio.numerator[0]


# Stored counters are integers: money in ten-thousandths, seconds in milliseconds, so sums are
# exact in every database (SQLite has no decimal type).
STORAGE_SCALE: dict[str, int] = {
    **{key: 10_000 for key in MONEY_COUNTERS},
    **{key: 1_000 for key in SECONDS_COUNTERS},
}


def to_stored(key: str, value: Number) -> int:
    """A counter value in its stored integer unit."""
    scale = STORAGE_SCALE.get(key, 1)
    return int(Decimal(value) * scale) if scale != 1 else int(value)


def from_stored(key: str, value: int | Decimal | None) -> Number:
    """A stored integer back in the KPI's unit (decimal for money and seconds)."""
    if value is None:
        return 0
    scale = STORAGE_SCALE.get(key, 1)
    if scale == 1:
        return int(value)
    return Decimal(value) / scale


@dataclass(frozen=True, slots=True)
class Driver:
    """A factor of the performance-driver model and the playbook's question about it."""

    key: str
    name_zh: str
    question: str


# result = leads_dialed × contact_rate × quote_rate × close_rate × avg_revenue_per_won_lead
#          × margin_rate   (the last factor only where there is margin data)
DRIVERS: tuple[Driver, ...] = (
    Driver("leads_dialed", "呼出客户数", "too few dials?"),
    Driver("contact_rate", "有效联通率", "poor lead data (contact rate)?"),
    Driver("quote_rate", "报价成功率", "cannot quote?"),
    Driver("close_rate", "销售成功率", "cannot close?"),
    Driver("avg_revenue_per_won_lead", "客均保费", "low ticket size?"),
    Driver("margin_rate", "平均利润率", "poor margin control?"),
)
DRIVER_BASE_KEYS: tuple[str, ...] = (
    "leads_dialed",
    "leads_reached",
    "leads_quoted",
    "leads_won",
    "revenue",
    "margin",
)


def driver_values(
    base: Mapping[str, Number | None], with_margin: bool
) -> dict[str, Decimal | None]:
    """The drivers of one scope, unrounded, so that their product is exactly the result."""
    values: dict[str, Decimal | None] = {}
    for driver in DRIVERS:
        if driver.key == "margin_rate" and not with_margin:
            continue
        ratio = RATIO_BY_KEY.get(driver.key)
        if ratio is None:
            values[driver.key] = Decimal(base.get(driver.key) or 0)
            continue
        values[driver.key] = exact_ratio(ratio, base)
    return values


def driver_result(values: Mapping[str, Decimal | None]) -> Decimal | None:
    """The product of the drivers: margin earned, or revenue without margin data."""
    product = Decimal(1)
    for value in values.values():
        if value is None:
            return None
        product *= value
    return product


def log_ratio(value: Decimal | None, reference: Decimal | None) -> float | None:
    """``ln(value / reference)``: a driver's exact term in ``ln(result / reference result)``
    (the performance-driver model); ``None`` unless both are positive."""
    if value is None or reference is None or value <= 0 or reference <= 0:
        return None
    return math.log(value / reference)


def median_driver(values: Iterable[Decimal | None]) -> Decimal | None:
    """A reference driver: the median of the known values (a team's agents, or the teams)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def result_per_won_lead(kpi: str, base: Mapping[str, Decimal | None]) -> Decimal | None:
    """What one won lead brings to a result KPI: the result over the won leads seen."""
    won = base.get("leads_won")
    if kpi == "leads_won":
        return Decimal(1)
    value = base.get(kpi)
    if not won or value is None:
        return None
    return value / won


# ---------------------------------------------------------------------------------------------
# Names, for reports and spreadsheets. The Chinese names are those of kpis.md; the keys that
# are not counters, lead counts or ratios have theirs here.

Lang = Literal["zh-CN", "zh-TW", "en"]
LANGUAGES: tuple[Lang, ...] = ("zh-CN", "zh-TW", "en")

NAMES_ZH: dict[str, str] = {
    **{c.key: c.name_zh for c in COUNTERS},
    **{c.key: c.name_zh for c in LEAD_COUNTS},
    LOGGED_IN_SECONDS: "在线时长",
    RESOLVED_FIRST_CALL: "首次通话解决",
    **{r.key: r.name_zh for r in RATIOS},
    DISPOSITIONS: "结果分布",
}

# Traditional characters of the same names, as Taiwan's floors read them.
NAMES_ZH_TW: dict[str, str] = {
    "dials": "外撥次數",
    "inbound_calls": "呼入",
    "connects": "接通數",
    "inbound_connects": "呼入接通數",
    "contacts": "有效聯通數",
    "effective_calls": "有效通話數",
    "talk_seconds": "通話時長",
    "effective_talk_seconds": "有效通話時長",
    "wrap_seconds": "話後處理",
    "quotes": "報價次數",
    "sales": "成交單數",
    "revenue": "銷售額",
    "margin": "利潤",
    "collections": "回款額",
    "new_customer_sales": "新客戶開發",
    "existing_customer_sales": "老客戶二次開發",
    "csat_responses": "滿意度調查數",
    "csat_sum": "滿意度總分",
    "drops": "掉線",
    "abandoned": "放棄",
    "machine_answers": "答錄機",
    "dnc_marks": "拒訪",
    "callbacks_scheduled": "預約回訪",
    "not_interested": "無意向",
    "leads_dialed": "呼出客戶數",
    "leads_reached": "有效客戶數",
    "leads_quoted": "報價客戶數",
    "leads_won": "成功出單客戶數",
    "leads_intent": "意向客戶數",
    LOGGED_IN_SECONDS: "在線時長",
    RESOLVED_FIRST_CALL: "首次通話解決",
    "connect_rate": "通話接通率",
    "contact_rate": "有效聯通率",
    "quote_rate": "報價成功率",
    "close_rate": "銷售成功率",
    "conversion_rate": "銷售轉化率",
    "intent_rate": "意向客戶獲取率",
    "lead_conversion_rate": "線索轉化率",
    "avg_revenue_per_won_lead": "客均保費",
    "avg_order_value": "平均訂單金額",
    "margin_rate": "平均利潤率",
    "avg_talk_seconds": "平均通話時長",
    "avg_handle_seconds": "平均處理時長",
    "calls_per_lead": "客均通話次數",
    "dials_per_hour": "每小時外撥",
    "sales_per_hour": "每小時成交",
    "contacts_per_hour": "每小時有效聯通",
    "occupancy": "利用率",
    "capacity": "產能",
    "fcr_rate": "首次通話解決率",
    "drop_rate": "掉線率",
    "abandon_rate": "放棄率",
    "csat_avg": "客戶滿意度",
    DISPOSITIONS: "結果分佈",
}

# English names where the key alone reads badly; the rest are the key in words.
_NAMES_EN: dict[str, str] = {
    "dnc_marks": "Do-not-call marks",
    "csat_responses": "CSAT responses",
    "csat_sum": "CSAT total score",
    "csat_avg": "CSAT average",
    "fcr_rate": "First-call resolution rate",
    "avg_revenue_per_won_lead": "Average revenue per won lead",
    "avg_talk_seconds": "Average talk time",
    "avg_handle_seconds": "Average handle time",
    "capacity": "Lead capacity",
    "talk_seconds": "Talk time",
    "effective_talk_seconds": "Effective talk time",
    "wrap_seconds": "Wrap-up time",
    "logged_in_seconds": "Logged-in time",
    "resolved_first_call": "Resolved on first call",
}
NAMES_EN: dict[str, str] = {
    key: _NAMES_EN.get(key, key.replace("_", " ").capitalize()) for key in ALL_KPI_KEYS
}


def kpi_name(key: str, lang: Lang) -> str:
    """A KPI's name in one of :data:`LANGUAGES`; an unknown key is its own name."""
    names = NAMES_ZH if lang == "zh-CN" else NAMES_ZH_TW if lang == "zh-TW" else NAMES_EN
    return names.get(key, key)
