"""A digest as each platform's own message, within its size limit, in the channel's language.

WeCom: ``markdown`` (content ≤ 4096 bytes). DingTalk: ``markdown`` {title, text} (body ≤
20000 bytes). Feishu: an ``interactive`` card with ``lark_md`` (body ≤ 20 KB). Slack: Block
Kit with ``mrkdwn`` (a section's text ≤ 3000 characters). Teams: an Adaptive Card in
``attachments``, as a Workflows webhook takes it (≤ 28 KB). ``webhook``: the digest itself.

A ranking that does not fit is cut, shorter and shorter, with a last line "…and N more";
then, if the message is still too long, the other lists (targets, tied champions, a contest's
leaders or winners) the same way: the message fits, and is never refused for its size.
Slack's text is escaped (``&``, ``<``, ``>``), so a name or a prize cannot mention a channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import orjson

from services.api.channels.schemas import Kind
from shared.kpis import Lang, kpi_name

# Bytes of the whole JSON body, except WeCom (its markdown content) and Slack (the text of
# one section); kept a little under each platform's documented limit.
LIMITS = {
    Kind.wecom: 4000,
    Kind.dingtalk: 19_500,
    Kind.feishu: 19_500,
    Kind.slack: 2900,
    Kind.teams: 27_000,
}
TOP_N = 10


class Cut(NamedTuple):
    """How much of each list a message shows: ranking rows, and items of every other list
    (``None``: all of them)."""

    rows: int
    items: int | None = None


def _listed(items: Sequence[str], cut: Cut, more: str) -> list[str]:
    """``items`` up to the cut's share of them, and "…and N more" for the rest."""
    if cut.items is None or len(items) <= cut.items:
        return list(items)
    return [*items[: cut.items], more.format(n=len(items) - cut.items)]


LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "daily_ranking": "业绩排行",
        "shift_summary": "班次小结",
        "target_pacing": "目标进度",
        "today": "今日",
        "yesterday": "昨日",
        "wtd": "本周",
        "mtd": "本月",
        "period": "统计区间",
        "top": "排行",
        "champion": "销售冠军",
        "targets": "目标达成",
        "attainment": "达成",
        "pace": "进度",
        "target": "目标",
        "more": "…还有 {n} 人",
        "more_targets": "…还有 {n} 项",
        "none": "暂无",
        "floor": "全场",
        "new": "新",
    },
    "zh-TW": {
        "daily_ranking": "業績排行",
        "shift_summary": "班次小結",
        "target_pacing": "目標進度",
        "today": "今日",
        "yesterday": "昨日",
        "wtd": "本週",
        "mtd": "本月",
        "period": "統計區間",
        "top": "排行",
        "champion": "銷售冠軍",
        "targets": "目標達成",
        "attainment": "達成",
        "pace": "進度",
        "target": "目標",
        "more": "…還有 {n} 人",
        "more_targets": "…還有 {n} 項",
        "none": "暫無",
        "floor": "全場",
        "new": "新",
    },
    "en": {
        "daily_ranking": "Ranking",
        "shift_summary": "Shift summary",
        "target_pacing": "Target pacing",
        "today": "today",
        "yesterday": "yesterday",
        "wtd": "week to date",
        "mtd": "month to date",
        "period": "Period",
        "top": "Top",
        "champion": "Champion",
        "targets": "Targets",
        "attainment": "attainment",
        "pace": "pace",
        "target": "target",
        "more": "…and {n} more",
        "more_targets": "…and {n} more",
        "none": "none yet",
        "floor": "Floor",
        "new": "new",
    },
}


# A contest's announcements (report ``contest``): its start, a change of leader, its result.
CONTEST_LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "start": "竞赛开始",
        "lead": "领先变化",
        "result": "竞赛结果",
        "kpi": "指标",
        "period": "时间",
        "prize": "奖品",
        "leader": "当前领先",
        "winner": "冠军",
        "standings": "排名",
        "more": "…还有 {n} 名",
        "none": "暂无",
    },
    "zh-TW": {
        "start": "競賽開始",
        "lead": "領先變化",
        "result": "競賽結果",
        "kpi": "指標",
        "period": "時間",
        "prize": "獎品",
        "leader": "目前領先",
        "winner": "冠軍",
        "standings": "排名",
        "more": "…還有 {n} 名",
        "none": "暫無",
    },
    "en": {
        "start": "Contest started",
        "lead": "New leader",
        "result": "Contest result",
        "kpi": "KPI",
        "period": "Time",
        "prize": "Prize",
        "leader": "Leading",
        "winner": "Winner",
        "standings": "Standings",
        "more": "…and {n} more",
        "none": "none",
    },
}


def _competitor(row: dict[str, Any]) -> str:
    return str(row.get("agent_id") or row["team_id"])


def _contest_title(news: dict[str, Any]) -> str:
    words = CONTEST_LABELS[news["lang"]]
    return f"{words[news['event']]} · {news['contest']['name']}"


def _contest_sections(
    news: dict[str, Any], cut: Cut, bold: Callable[[str], str]
) -> list[list[str]]:
    """A contest announcement as sections of lines; every number as the API answers it."""
    words = CONTEST_LABELS[news["lang"]]
    about = news["contest"]
    kpi = about["kpi"]
    head = [f"{words['kpi']}: {_kpi(kpi, news['lang'])}"]
    head.append(
        f"{words['period']}: {about['starts_at']} – {about['ends_at']} ({about['timezone']})"
    )
    named = news["winners"] if news["event"] == "result" else news["leaders"]
    if news["event"] != "start":
        who = ", ".join(
            _listed([f"{_competitor(r)} ({_text(r['value'])})" for r in named], cut, words["more"])
        )
        label = words["winner"] if news["event"] == "result" else words["leader"]
        head.append(f"{label}: {bold(who or words['none'])}")
    if about["prize"]:
        head.append(f"{words['prize']}: {bold(_text(about['prize']))}")
    rows = news["ranking"]["rows"]
    ranking = [bold(words["standings"])] if rows else []
    ranking += [f"{r['rank']}. {_competitor(r)} {_text(r['value'])}" for r in rows[: cut.rows]]
    if len(rows) > cut.rows:
        ranking.append(words["more"].format(n=len(rows) - cut.rows))
    return [head, ranking]


def _size(payload: dict[str, Any]) -> int:
    return len(orjson.dumps(payload))


def _change(row: dict[str, Any], words: dict[str, str]) -> str:
    change = row["rank_change"]
    if change is None:
        return words["new"]
    if change > 0:
        return f"↑{change}"
    if change < 0:
        return f"↓{-change}"
    return "–"


def title(digest: dict[str, Any]) -> str:
    if digest["report"] == "contest":
        return _contest_title(digest)
    words = LABELS[digest["lang"]]
    scope = ", ".join(digest["teams"]) or words["floor"]
    if digest["lang"] == "en":
        return f"{words[digest['report']]}, {words[digest['period']]} · {scope}"
    return f"{words[digest['period']]}{words[digest['report']]} · {scope}"


def _kpi(key: str, lang: str) -> str:
    """A KPI's name in the channel's language, from the one list of names in shared.kpis."""
    return kpi_name(key, cast(Lang, lang))


def _text(value: object) -> str:
    """A number as the API answers it; no value (a ratio of nothing) as a dash."""
    return "—" if value is None else str(value)


def sections(digest: dict[str, Any], cut: Cut, bold: Callable[[str], str]) -> list[list[str]]:
    """The digest as sections of lines: period, totals, champion, ranking and targets, each list
    as far as ``cut`` shows it (then "…and N more"). Every number as the API answers it."""
    if digest["report"] == "contest":
        return _contest_sections(digest, cut, bold)
    words = LABELS[digest["lang"]]
    totals = digest["totals"]
    head = [f"{words['period']}: {digest['from']} – {digest['to']} ({digest['timezone']})"]
    head += [f"{_kpi(k, digest['lang'])}: {bold(_text(v))}" for k, v in totals.items()]
    champion = ", ".join(
        _listed(
            [f"{c['agent_id']} ({c['sales']})" for c in digest["champions"]], cut, words["more"]
        )
    )
    head.append(f"{words['champion']}: {bold(champion or words['none'])}")
    rows = digest["ranking"]["rows"]
    metric = digest["ranking"]["metric"]
    ranking = [bold(f"{words['top']} · {_kpi(metric, digest['lang'])}")]
    ranking += [
        f"{r['rank']}. {r['agent_id']} {_text(r['value'])} ({_change(r, words)})"
        for r in rows[: cut.rows]
    ]
    if len(rows) > cut.rows:
        ranking.append(words["more"].format(n=len(rows) - cut.rows))
    targets = [bold(words["targets"])] if digest["targets"] else []
    targets += _listed(
        [
            f"{t['scope_id'] or words['floor']} {_kpi(t['kpi'], digest['lang'])}: "
            f"{_text(t['actual'])} / {words['target']} {t['target']} · "
            f"{words['attainment']} {_text(t['attainment'])} · "
            f"{words['pace']} {_text(t['pace'])} ({t['status']})"
            for t in digest["targets"]
        ],
        cut,
        words["more_targets"],
    )
    return [head, ranking, targets]


def _markdown(digest: dict[str, Any], cut: Cut) -> str:
    parts = [f"## {title(digest)}"]
    parts += [
        "\n".join(f"> {line}" if i else line for i, line in enumerate(s))
        for s in sections(digest, cut, lambda s: f"**{s}**")
        if s
    ]
    return "\n\n".join(parts)


def _wecom(digest: dict[str, Any], cut: Cut) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"content": _markdown(digest, cut)}}


def _dingtalk(digest: dict[str, Any], cut: Cut) -> dict[str, Any]:
    return {
        "msgtype": "markdown",
        "markdown": {"title": title(digest), "text": _markdown(digest, cut)},
    }


def _feishu(digest: dict[str, Any], cut: Cut) -> dict[str, Any]:
    elements: list[dict[str, Any]] = []
    for section in sections(digest, cut, lambda s: f"**{s}**"):
        if section:
            if elements:
                elements.append({"tag": "hr"})
            elements.append(
                {"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(section)}}
            )
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "title": {"tag": "plain_text", "content": title(digest)},
                "template": "blue",
            },
            "elements": elements,
        },
    }


def _slack(digest: dict[str, Any], cut: Cut) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(digest)[:150]}}
    ]
    for section in sections(digest, cut, lambda s: f"*{s}*"):
        if section:
            text = slack_escape("\n".join(section))
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return {"text": slack_escape(title(digest)), "blocks": blocks}


def slack_escape(text: str) -> str:
    """Slack's three control characters as the entities it asks for: a ``<!channel>`` in a
    name or a prize stays text, never a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _teams(digest: dict[str, Any], cut: Cut) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": title(digest),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    for section in sections(digest, cut, lambda s: f"**{s}**"):
        for line in section:
            body.append({"type": "TextBlock", "text": line, "wrap": True, "spacing": "None"})
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


_RENDER: dict[Kind, Callable[[dict[str, Any], Cut], dict[str, Any]]] = {
    Kind.wecom: _wecom,
    Kind.dingtalk: _dingtalk,
    Kind.feishu: _feishu,
    Kind.slack: _slack,
    Kind.teams: _teams,
}


def _measured(kind: Kind, payload: dict[str, Any]) -> int:
    if kind is Kind.wecom:
        return len(payload["markdown"]["content"].encode())
    if kind is Kind.slack:
        return max(len(b["text"]["text"]) for b in payload["blocks"])
    return _size(payload)


# Room left for what signing adds to the body (Feishu's timestamp and sign).
SIGNING_ROOM = 128


def _fewer(n: int) -> int:
    return max(0, n - max(1, n // 4))


def render(kind: Kind, digest: dict[str, Any], top_n: int = TOP_N) -> dict[str, Any]:
    """The message for ``kind``: the top ``top_n`` rows, fewer if the platform's limit says,
    then fewer items of the other lists."""
    if kind is Kind.webhook:
        return {"digest": digest}
    limit = LIMITS[kind] - SIGNING_ROOM
    cut = Cut(min(top_n, len(digest["ranking"]["rows"])))
    longest = max(
        (len(digest.get(k) or ()) for k in ("targets", "champions", "leaders", "winners")),
        default=0,
    )
    while True:
        payload = _RENDER[kind](digest, cut)
        if _measured(kind, payload) <= limit or cut == (0, 0):
            return payload
        if cut.rows:
            cut = Cut(_fewer(cut.rows))
        else:
            cut = Cut(0, _fewer(longest if cut.items is None else cut.items))
