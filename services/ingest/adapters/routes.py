"""The adapter routes: native records in, v1 events to Kafka.

Each route authenticates like ``POST /v1/events`` (the ingest scope). Dialers that cannot
send a header may give the ingest key as the query parameter ``key`` or as the password of
HTTP Basic auth (adapter routes only); Firehose sends it as ``X-Amz-Firehose-Access-Key``.
Every route answers success only once Kafka acknowledged every event, 503 with
``Retry-After`` otherwise.
"""

from __future__ import annotations

import base64
import binascii
import time
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator, get_signature_algorithm

from services.ingest.adapters import connect, freeswitch, twilio, vicidial
from services.ingest.adapters.common import RawEvent
from services.ingest.adapters.service import AdapterService
from shared.auth import Authenticator, Principal, Scope
from shared.errors import (
    ERROR_RESPONSES,
    CallboardError,
    ErrorBody,
    Forbidden,
    InvalidInput,
    UnsupportedMediaType,
)
from shared.http import JsonResponse

router = APIRouter(tags=["adapters"])


class AdapterResponse(BaseModel):
    accepted: int = Field(description="Events stored in Kafka from this record")


class FirehoseResponse(BaseModel):
    """Firehose's HTTP endpoint delivery answer."""

    requestId: str
    timestamp: int = Field(description="Milliseconds since the epoch")
    errorMessage: str | None = None


def get_adapters(request: Request) -> AdapterService:
    service: AdapterService = request.app.state.adapters
    return service


Adapters = Annotated[AdapterService, Depends(get_adapters)]


def _presented_key(request: Request) -> str | None:
    """An ingest key given where only adapters look: HTTP Basic's password, Firehose's
    access key header, or ``?key=``."""
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        _, _, password = decoded.partition(":")
        if password:
            return password
    firehose_key = request.headers.get("x-amz-firehose-access-key")
    if firehose_key:
        return firehose_key.strip()
    key = request.query_params.get("key")
    return key.strip() if key else None


async def adapter_dialer(request: Request) -> Principal:
    """The caller, allowed the ingest scope, with the adapters' extra places for the key."""
    key = _presented_key(request)
    target = request
    if key is not None and "x-api-key" not in request.headers:
        headers = [
            (name, value)
            for name, value in request.scope["headers"]
            if name.lower() not in (b"authorization", b"x-api-key")
        ]
        headers.append((b"x-api-key", key.encode()))
        target = Request({**request.scope, "headers": headers})
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.authenticate(target, Scope.ingest)
    request.state.principal = principal
    return principal


Dialer = Annotated[Principal, Depends(adapter_dialer)]


def public_url(request: Request, base_url: str | None) -> str:
    """The URL as the caller requested it: behind a proxy, the configured base or the
    ``X-Forwarded-Proto``/``X-Forwarded-Host`` it sets."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    path = path.split("?", 1)[0]
    if base_url:
        prefix = base_url.rstrip("/")
    else:
        scheme = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0]
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        prefix = f"{scheme.strip()}://{host.split(',')[0].strip()}"
    return f"{prefix}{path}" + (f"?{query}" if query else "")


async def _form(request: Request, adapters: AdapterService) -> ImmutableMultiDict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, every value of a repeated name kept."""
    body = await request.body()
    adapters.ingest.check_size(None, len(body))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the form body is not UTF-8") from exc
    return ImmutableMultiDict(parse_qsl(text, keep_blank_values=True))


async def _json_form(
    request: Request, adapters: AdapterService
) -> tuple[str, ImmutableMultiDict[str, str]]:
    """A JSON object body: its text (what the signature covers) and its values as fields."""
    body = await request.body()
    adapters.ingest.check_size(None, len(body))
    try:
        text = body.decode("utf-8")
        document = orjson.loads(body)
    except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise InvalidInput("the body is not UTF-8 JSON") from exc
    if not isinstance(document, dict):
        raise InvalidInput("the JSON body must be an object of callback parameters")
    fields = [
        (str(name), value if isinstance(value, str) else orjson.dumps(value).decode())
        for name, value in document.items()
        if value is not None
    ]
    return text, ImmutableMultiDict(fields)


def _merged(query: Any, form: ImmutableMultiDict[str, str] | None) -> dict[str, str]:
    params = {k: str(v) for k, v in query.items()}
    if form is not None:
        params.update(form.items())
    return params


_TWILIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    413: {"model": ErrorBody, "description": "Body over the limit"},
}


# Twilio calls back with POST, or GET where the account says so: one route per method, so
# each has an operation id of its own in the OpenAPI document.
@router.get(
    "/v1/adapters/twilio/status",
    response_model=AdapterResponse,
    responses=_TWILIO_RESPONSES,
    operation_id="twilio_status_get",
)
@router.post(
    "/v1/adapters/twilio/status",
    response_model=AdapterResponse,
    responses=_TWILIO_RESPONSES,
    operation_id="twilio_status_post",
)
async def twilio_status(request: Request, adapters: Adapters, dialer: Dialer) -> AdapterResponse:
    """A Twilio status callback (form POST, or GET), signed with the account's Auth Token."""
    token = adapters.settings.twilio_auth_token
    if token is None:
        raise Forbidden(
            "Twilio callbacks are refused until CALLBOARD_TWILIO_AUTH_TOKEN is set to the "
            "Twilio account's Auth Token (Console > Account > API keys & tokens)"
        )
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise Forbidden("the request has no X-Twilio-Signature header; only Twilio may call")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form: ImmutableMultiDict[str, str] | None = None
    signed: str | ImmutableMultiDict[str, str] = ImmutableMultiDict()
    if request.method == "POST" and media == "application/json":
        # Twilio signs a JSON body through the query parameter bodySHA256 (its SHA-256),
        # and the URL alone; the validator checks both when given the body as text.
        if "bodySHA256" not in request.query_params:
            raise Forbidden("a JSON body must be signed through the bodySHA256 query parameter")
        signed, form = await _json_form(request, adapters)
    elif request.method == "POST":
        form = signed = await _form(request, adapters)
    url = public_url(request, adapters.settings.public_base_url)
    algorithm = get_signature_algorithm(request.headers.get("x-twilio-webhooks-signature-settings"))
    validator = RequestValidator(token.get_secret_value())
    if not validator.validate(url, signed, signature, algorithm):
        raise Forbidden(
            "the X-Twilio-Signature does not match this request: check "
            "CALLBOARD_TWILIO_AUTH_TOKEN, and behind a proxy CALLBOARD_PUBLIC_BASE_URL (or "
            "X-Forwarded-Proto/Host), so that the URL checked is the one Twilio requested",
            details={"url_checked": url.split("?", 1)[0]},
        )
    params = _merged(request.query_params, form)
    events = adapters.check_one(twilio.SYSTEM, lambda: twilio.translate(params, adapters.context))
    await run_in_threadpool(
        adapters.publish, twilio.SYSTEM, events, 1, request.state.request_id, dialer
    )
    return AdapterResponse(accepted=len(events))


async def _vicidial(
    kind: vicidial.Kind, request: Request, adapters: AdapterService, dialer: Principal
) -> AdapterResponse:
    params = {k: v for k, v in request.query_params.items()}
    events = adapters.check_one(
        vicidial.SYSTEM, lambda: vicidial.translate(kind, params, adapters.context)
    )
    await run_in_threadpool(
        adapters.publish, vicidial.SYSTEM, events, 1, request.state.request_id, dialer
    )
    return AdapterResponse(accepted=len(events))


@router.get(
    "/v1/adapters/vicidial/dispo", response_model=AdapterResponse, responses=ERROR_RESPONSES
)
async def vicidial_dispo(request: Request, adapters: Adapters, dialer: Dialer) -> AdapterResponse:
    """VICIdial's Dispo Call URL: the agent set the call's status."""
    return await _vicidial("dispo", request, adapters, dialer)


@router.get(
    "/v1/adapters/vicidial/start", response_model=AdapterResponse, responses=ERROR_RESPONSES
)
async def vicidial_start(request: Request, adapters: Adapters, dialer: Dialer) -> AdapterResponse:
    """VICIdial's Start Call URL: the call was sent to an agent."""
    return await _vicidial("start", request, adapters, dialer)


@router.get(
    "/v1/adapters/vicidial/no-agent", response_model=AdapterResponse, responses=ERROR_RESPONSES
)
async def vicidial_no_agent(
    request: Request, adapters: Adapters, dialer: Dialer
) -> AdapterResponse:
    """VICIdial's No Agent Call URL: a drop, no answer, busy or machine no agent took."""
    return await _vicidial("no-agent", request, adapters, dialer)


@router.post(
    "/v1/adapters/freeswitch/cdr",
    response_model=AdapterResponse,
    responses={
        **ERROR_RESPONSES,
        413: {"model": ErrorBody, "description": "Body over the limit"},
        415: {"model": ErrorBody, "description": "Not a mod_json_cdr body"},
    },
)
async def freeswitch_cdr(request: Request, adapters: Adapters, dialer: Dialer) -> AdapterResponse:
    """A ``mod_json_cdr`` leg: a JSON body (``encode=false``), the form field ``cdr``
    (``encode=true``) or ``cdr=`` and base64 (``encode=base64``)."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    body = await request.body()
    adapters.ingest.check_size(None, len(body))
    if media == "application/x-www-form-urlencoded":
        cdr = (await _form(request, adapters)).get("cdr")
        if not isinstance(cdr, str):
            raise InvalidInput("the form has no field cdr", details=[{"field": "cdr"}])
        raw: bytes = cdr.encode()
    elif media == "application/x-www-form-base64-encoded":
        text = body.decode("latin-1").removeprefix("cdr=")
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("the CDR is not base64", details=[{"field": "cdr"}]) from exc
    elif media in ("application/json", "text/plain", "application/x-www-form-plaintext", ""):
        # Older mod_json_cdr sends unencoded JSON as x-www-form-plaintext.
        raw = body.removeprefix(b"cdr=")
    else:
        raise UnsupportedMediaType(f"{media} is not a mod_json_cdr body")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        hint = (
            " (encode=true leaves the escapes of encode-values as they are: with encode=true set"
            " encode-values=false, or use encode=false or base64)"
            if media == "application/x-www-form-urlencoded"
            else ""
        )
        raise InvalidInput(f"the CDR is not valid JSON{hint}", details=[{"field": "cdr"}]) from exc
    uuid = request.query_params.get("uuid")
    events = adapters.check_one(
        freeswitch.SYSTEM, lambda: freeswitch.translate(document, adapters.context, uuid)
    )
    await run_in_threadpool(
        adapters.publish, freeswitch.SYSTEM, events, 1, request.state.request_id, dialer
    )
    return AdapterResponse(accepted=len(events))


def _gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body, inflated to at most one byte over ``limit`` (enough to refuse it)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput("the body is not valid gzip") from exc


# Firehose sends HTTP endpoints bodies of up to 64 MiB before compression (its buffer size,
# 1 to 64 MiB, 5 by default). It takes an answer 413 as a permanent failure and drops the
# batch without backing it up, so this route takes any body Firehose may send, and refuses a
# larger one with 400 (retried, then backed up), never 413.
FIREHOSE_MAX_BODY_BYTES = 64 * 1024 * 1024


def _firehose_size(size: int) -> None:
    if size > FIREHOSE_MAX_BODY_BYTES:
        raise InvalidInput(
            f"the body is {size} bytes; Firehose sends at most {FIREHOSE_MAX_BODY_BYTES} bytes"
        )


def _firehose_answer(request_id: str, status: int, message: str | None = None) -> JsonResponse:
    body: dict[str, Any] = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
    if message is not None:
        body["errorMessage"] = message
    headers = {"Retry-After": "5"} if status == 503 else None
    return JsonResponse(body, status_code=status, headers=headers)


@router.post(
    "/v1/adapters/connect/firehose",
    response_model=FirehoseResponse,
    responses={
        400: {"model": FirehoseResponse, "description": "The body is not a Firehose request"},
        401: {"model": FirehoseResponse, "description": "No or a wrong access key"},
        403: {"model": FirehoseResponse, "description": "The key has no ingest scope"},
        429: {"model": FirehoseResponse, "description": "Too many requests for this key"},
        503: {"model": FirehoseResponse, "description": "Kafka cannot take the records now"},
    },
)
async def connect_firehose(request: Request, adapters: Adapters) -> JsonResponse:
    """Amazon Connect contact records delivered by Kinesis Data Firehose (HTTP endpoint).

    Records that are not base64 or not JSON, or not usable contact records, are set aside
    with their reason and the others stored; the answer is then 200, as Firehose would
    otherwise resend the whole batch, good records with the bad, for as long as it retries.
    """
    request_id = request.headers.get("x-amz-firehose-request-id", "")
    try:
        dialer = await adapter_dialer(request)
        body = await request.body()
        _firehose_size(len(body))
        if request.headers.get("content-encoding", "").lower() == "gzip":
            body = _gunzip(body, FIREHOSE_MAX_BODY_BYTES)
            _firehose_size(len(body))
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("the body is not a Firehose request: not JSON") from exc
        if not isinstance(envelope, dict) or not isinstance(envelope.get("records"), list):
            raise InvalidInput("the body is not a Firehose request: no records list")
        request_id = str(envelope.get("requestId") or request_id)
        records = envelope["records"]
        # Each record is decoded as its turn to be translated comes, and its document let go
        # right after: 500 parsed contact records alive at once cost more in allocation and
        # garbage collection than their decoding.
        decoded: list[tuple[int, bytes]] = []

        def translations() -> Iterator[Callable[[], list[RawEvent]]]:
            for index, record in enumerate(records):
                data = record.get("data") if isinstance(record, dict) else None
                if not isinstance(data, str):
                    adapters.set_aside(connect.SYSTEM, index, "the record has no data", b"")
                    continue
                try:
                    raw = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    adapters.set_aside(connect.SYSTEM, index, "data is not base64", data.encode())
                    continue
                try:
                    document = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    adapters.set_aside(connect.SYSTEM, index, "data is not JSON", raw)
                    continue
                decoded.append((index, raw))
                yield partial(connect.translate, document, adapters.context)

        events, rejections = adapters.check_many(connect.SYSTEM, translations())
        for rejection in rejections:
            index, raw = decoded[rejection.index]
            adapters.set_aside(connect.SYSTEM, index, rejection.reason, raw)
        stored = len(decoded) - len(rejections)
        await run_in_threadpool(
            adapters.publish, connect.SYSTEM, events, stored, request.state.request_id, dialer
        )
    except CallboardError as exc:
        status = exc.status_code if exc.status_code in (401, 403, 429, 503) else 400
        return _firehose_answer(request_id, status, exc.message)
    return _firehose_answer(request_id, 200)
