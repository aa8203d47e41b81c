"""The words of a report in the reader's language: ``lang``, else ``Accept-Language``, else
English. KPI names come from ``shared.kpis``; the other headers are here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from shared.kpis import LANGUAGES, Lang, kpi_name

# Headers and captions that are not KPIs: (zh-CN, zh-TW, en).
_WORDS: dict[str, tuple[str, str, str]] = {
    "agent_id": ("坐席", "坐席", "Agent"),
    "team_id": ("团队", "團隊", "Team"),
    "campaign_id": ("活动", "活動", "Campaign"),
    "bucket": ("时段", "時段", "Period from"),
    "rank": ("排名", "排名", "Rank"),
    "previous_rank": ("上期排名", "上期排名", "Previous rank"),
    "rank_change": ("名次变化", "名次變化", "Rank change"),
    "volume": ("样本量", "樣本量", "Volume"),
    "target_id": ("目标编号", "目標編號", "Target id"),
    "scope": ("范围", "範圍", "Scope"),
    "scope_id": ("对象", "對象", "Scope id"),
    "kpi": ("指标", "指標", "KPI"),
    "period": ("周期", "週期", "Period"),
    "period_start": ("周期开始", "週期開始", "Period start"),
    "from": ("开始", "開始", "From"),
    "to": ("结束", "結束", "To"),
    "value": ("目标值", "目標值", "Target"),
    "actual": ("实际", "實際", "Actual"),
    "target": ("目标", "目標", "Target"),
    "expected": ("应达", "應達", "Expected to date"),
    "elapsed_share": ("已过时间占比", "已過時間佔比", "Elapsed share"),
    "attainment": ("达成率", "達成率", "Attainment"),
    "weight": ("权重", "權重", "Weight"),
    "pace": ("进度", "進度", "Pace"),
    "projection": ("预计", "預計", "Projection"),
    "status": ("状态", "狀態", "Status"),
    "score": ("得分", "得分", "Score"),
    # The first sheet.
    "about": ("报表说明", "報表說明", "About"),
    "all": ("全部", "全部", "All"),
    "report": ("报表", "報表", "Report"),
    "timezone": ("时区", "時區", "Time zone"),
    "filters": ("筛选", "篩選", "Filters"),
    "none": ("无", "無", "none"),
    "as_of": ("截至", "截至", "As of"),
    "granularity": ("粒度", "粒度", "Granularity"),
    "metrics": ("指标", "指標", "KPIs"),
    "metric": ("排名指标", "排名指標", "Ranked by"),
    "min_volume": ("最小样本量", "最小樣本量", "Minimum volume"),
    "order": ("排序", "排序", "Order"),
    "weights": ("权重", "權重", "Weights"),
    "cap": ("达成率上限", "達成率上限", "Attainment cap"),
    "metrics_report": ("指标报表", "指標報表", "KPIs"),
    "leaderboard_report": ("排行榜", "排行榜", "Leaderboard"),
    "scorecards_report": ("绩效评分卡", "績效評分卡", "Scorecards"),
    "pacing_report": ("目标进度", "目標進度", "Target pacing"),
}


def word(key: str, lang: Lang) -> str:
    """A caption in ``lang``; a KPI key is the KPI's name."""
    words = _WORDS.get(key)
    if words is None:
        return kpi_name(key, lang)
    return words[LANGUAGES.index(lang)]


def from_accept_language(header: str | None) -> Lang:
    """The first language of ``Accept-Language`` (by weight) a report can be written in:
    Traditional Chinese for zh-TW, zh-HK, zh-MO and zh-Hant, Simplified for any other
    Chinese, English otherwise."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, raw = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(raw)
                except ValueError:
                    weight = 0.0
        if tag and weight > 0:
            ranked.append((-weight, position, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag == "zh" or tag.startswith("zh-"):
            traditional = ("zh-tw", "zh-hk", "zh-mo", "zh-hant")
            return "zh-TW" if tag.startswith(traditional) else "zh-CN"
        if tag == "en" or tag.startswith("en-"):
            return "en"
    return "en"


def request_lang(
    request: Request,
    lang: Annotated[
        Lang | None,
        Query(description="Language of a file's headers; default from Accept-Language, else en"),
    ] = None,
) -> Lang:
    return lang or from_accept_language(request.headers.get("accept-language"))
