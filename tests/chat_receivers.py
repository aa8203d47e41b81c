"""Local stand-ins for the chat platforms' webhooks, on 127.0.0.1 only.

Each checks what its platform checks (wallboard.md section 6) and answers as it does:
- WeCom ``/cgi-bin/webhook/send?key=K``: markdown content ≤ 4096 bytes; HTTP 200 with
  ``errcode`` 0, 93000 for an unknown key, 45009 when throttled.
- DingTalk ``/robot/send?access_token=T&timestamp=&sign=``: the signature (HMAC-SHA256 keyed
  by the secret over ``timestamp\\nsecret``, Base64, URL-encoded) and a timestamp in ms within
  an hour; body ≤ 20000 bytes; HTTP 200 with ``errcode`` 0, 310000 ``sign not match``,
  300005 for an unknown token, 130101 when throttled, 460101 for a body too big.
- Feishu ``/open-apis/bot/v2/hook/TOKEN``: ``timestamp`` (s) and ``sign`` in the body (HMAC-
  SHA256 keyed by ``timestamp\\nsecret`` over nothing, Base64), within an hour; body ≤ 20 KB;
  HTTP 200 with ``code`` 0, 19021 for a bad signature, 11232 when throttled, 9499 for a
  malformed body.
- Slack ``/services/T/B/X``: ``text`` or ``blocks``; 200 ``ok``, 403 ``invalid_token``, 429
  with ``Retry-After``, 400 ``invalid_payload``.
- Teams ``/workflows/W?sig=S``: an Adaptive Card in ``attachments``, ≤ 28 KB; 202, 401 for a
  bad ``sig``, 429 when throttled.
- webhook ``/hook/H``: any JSON object; 200, or 503 while "throttled".

The signatures are checked here with code of the tests' own, written from the platforms'
descriptions, not with the project's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOUR_MS = 3_600_000
# Settings for a pipeline whose channels are watched in a test: a schedule looked at twice a
# second, and retries that do not keep the test waiting.
QUICK_CHANNELS = {
    "CALLBOARD_CHANNEL_TICK_SECONDS": "0.5",
    "CALLBOARD_CHANNEL_BACKOFF_SECONDS": "0.05",
}


@dataclass
class Received:
    kind: str
    path: str
    body: dict[str, Any]
    size: int
    status: int
    answer: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class State:
    tokens: dict[str, str] = field(default_factory=dict)  # kind -> the valid token
    secrets: dict[str, str] = field(default_factory=dict)  # kind -> the signing secret
    throttle: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _dingtalk_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _feishu_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), digestmod=hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class _Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> None:
        text = answer if isinstance(answer, str) else json.dumps(answer)
        data = text.encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/plain" if isinstance(answer, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self._answered = (status, text)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        kind = parts.path.strip("/").split("/")[0]
        kind = {
            "cgi-bin": "wecom",
            "robot": "dingtalk",
            "open-apis": "feishu",
            "services": "slack",
            "workflows": "teams",
            "hook": "webhook",
        }.get(kind, kind)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = None
        self._answered = (0, "")
        getattr(self, f"_{kind}")(parts.path, query, body, len(raw))
        with self.state.lock:
            self.state.received.append(
                Received(kind, parts.path, body or {}, len(raw), *self._answered)
            )

    def _throttled(self, kind: str) -> bool:
        with self.state.lock:
            if self.state.throttle[kind] > 0:
                self.state.throttle[kind] -= 1
                return True
        return False

    def _wecom(self, path: str, query: dict[str, str], body: Any, size: int) -> None:
        if query.get("key") != self.state.tokens["wecom"]:
            return self._reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
        if self._throttled("wecom"):
            return self._reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
        if not isinstance(body, dict) or body.get("msgtype") != "markdown":
            return self._reply(200, {"errcode": 40008, "errmsg": "invalid message type"})
        if len(body["markdown"]["content"].encode()) > 4096:
            return self._reply(
                200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}
            )
        return self._reply(200, {"errcode": 0, "errmsg": "ok"})

    def _dingtalk(self, path: str, query: dict[str, str], body: Any, size: int) -> None:
        if query.get("access_token") != self.state.tokens["dingtalk"]:
            return self._reply(200, {"errcode": 300005, "errmsg": "token is not exist"})
        timestamp = query.get("timestamp", "")
        # parse_qs has URL-decoded the sign once, which undoes the client's quote_plus.
        sign = query.get("sign", "")
        fresh = timestamp.isdigit() and abs(int(timestamp) - time.time() * 1000) < HOUR_MS
        if not fresh or not hmac.compare_digest(
            sign, _dingtalk_sign(self.state.secrets["dingtalk"], timestamp)
        ):
            return self._reply(200, {"errcode": 310000, "errmsg": "sign not match, more: [...]"})
        if size > 20000:
            return self._reply(
                200, {"errcode": 460101, "errmsg": "message too long, body 大小不合法"}
            )
        if self._throttled("dingtalk"):
            return self._reply(
                200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
            )
        markdown = (body or {}).get("markdown") if isinstance(body, dict) else None
        if (
            body.get("msgtype") != "markdown"
            or not markdown
            or not markdown.get("title")
            or not markdown.get("text")
        ):
            return self._reply(200, {"errcode": 40035, "errmsg": "缺少参数 json"})
        return self._reply(200, {"errcode": 0, "errmsg": "ok"})

    def _feishu(self, path: str, query: dict[str, str], body: Any, size: int) -> None:
        token = path.rsplit("/", 1)[-1]
        if token != self.state.tokens["feishu"]:
            return self._reply(
                200, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
            )
        if not isinstance(body, dict):
            return self._reply(200, {"code": 9499, "msg": "Bad Request"})
        timestamp = str(body.get("timestamp", ""))
        fresh = timestamp.isdigit() and abs(int(timestamp) - time.time()) < 3600
        if not fresh or not hmac.compare_digest(
            str(body.get("sign", "")), _feishu_sign(self.state.secrets["feishu"], timestamp)
        ):
            return self._reply(
                200,
                {
                    "code": 19021,
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                },
            )
        if size > 20 * 1024:
            return self._reply(200, {"code": 9499, "msg": "Bad Request: body too large"})
        if self._throttled("feishu"):
            return self._reply(
                200,
                {
                    "code": 11232,
                    "msg": "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
                },
            )
        card = body.get("card") if body.get("msg_type") == "interactive" else None
        if not card or not card.get("elements"):
            return self._reply(200, {"code": 9499, "msg": "Bad Request"})
        return self._reply(200, {"code": 0, "msg": "success", "data": {}})

    def _slack(self, path: str, query: dict[str, str], body: Any, size: int) -> None:
        if path != f"/services/{self.state.tokens['slack']}":
            return self._reply(403, "invalid_token")
        if self._throttled("slack"):
            return self._reply(429, "rate_limited", {"Retry-After": "1"})
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return self._reply(400, "invalid_payload")
        for block in body.get("blocks", []):
            text = block.get("text", {}).get("text", "")
            if block["type"] == "section" and len(text) > 3000:
                return self._reply(400, "invalid_blocks")
        return self._reply(200, "ok")

    def _teams(self, path: str, query: dict[str, str], body: Any, size: int) -> None:
        if query.get("sig") != self.state.tokens["teams"]:
            return self._reply(
                401,
                {
                    "error": {
                        "code": "DirectApiAuthorizationRequired",
                        "message": "The request must be authenticated",
                    }
                },
            )
        if self._throttled("teams"):
            return self._reply(
                429, {"error": {"code": "WorkflowTriggeredTooManyTimes"}}, {"Retry-After": "1"}
            )
        if size > 28 * 1024:
            return self._reply(413, {"error": {"code": "MessageTooLarge"}})
        attachments = body.get("attachments") if isinstance(body, dict) else None
        if (
            body.get("type") != "message"
            or not attachments
            or attachments[0].get("contentType") != "application/vnd.microsoft.card.adaptive"
            or attachments[0]["content"].get("type") != "AdaptiveCard"
        ):
            return self._reply(400, {"error": {"code": "InvalidRequestContent"}})
        return self._reply(202, "")

    def _webhook(self, path: str, query: dict[str, str], body: Any, size: int) -> None:
        if self._throttled("webhook"):
            return self._reply(503, "upstream unavailable")
        if not isinstance(body, dict):
            return self._reply(400, "not JSON")
        return self._reply(200, {"ok": True})


class ChatReceivers:
    """All six platforms on one local port; ``url(kind)`` is a channel's good URL."""

    def __init__(self) -> None:
        self.state = State(
            tokens={
                "wecom": "wecom-key-7d1f",
                "dingtalk": "dingtalk-token-93ab",
                "feishu": "feishu-token-51c0",
                "slack": "T0001/B0001/XXXXsecretXXXX",
                "teams": "teams-sig-c2e9",
                "webhook": "",
            },
            secrets={"dingtalk": "SECdingtalk-secret-0e6a", "feishu": "feishu-secret-44b7"},
        )
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ChatReceivers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, kind: str, token: str | None = None) -> str:
        token = self.state.tokens[kind] if token is None else token
        return {
            "wecom": f"{self.base}/cgi-bin/webhook/send?key={token}",
            "dingtalk": f"{self.base}/robot/send?access_token={token}",
            "feishu": f"{self.base}/open-apis/bot/v2/hook/{token}",
            "slack": f"{self.base}/services/{token}",
            "teams": f"{self.base}/workflows/digest/invoke?api-version=1&sig={token}",
            "webhook": f"{self.base}/hook/digests",
        }[kind]

    def secret(self, kind: str) -> str | None:
        return self.state.secrets.get(kind)

    def throttle(self, kind: str, times: int) -> None:
        with self.state.lock:
            self.state.throttle[kind] = times

    def received(self, kind: str | None = None) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if kind is None or r.kind == kind]
