"""Channels: small adapters behind one interface. Each sends one message or raises DeliveryError saying whether
another attempt could succeed. Reasons name status codes and error kinds only, never addresses or text."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parseaddr, parsedate_to_datetime
from typing import Protocol

import aiosmtplib
import httpx

from notify import egress

from lienthong.messaging import CLOUDEVENTS_JSON
from notify.compose import Message


SMTP_POLICY = SMTP.clone(max_line_length=998)


class DeliveryError(Exception):
    def __init__(self, reason: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after


class Channel(Protocol):
    async def send(self, message: Message, delivery_id: str) -> None:
        """Deliver or raise DeliveryError. `delivery_id` is stable across attempts, so receivers can deduplicate."""


def delivery_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class EmailChannel:
    def __init__(self, *, host: str, port: int, sender: str, timeout: float, username: str | None = None,
                 password: str | None = None, starttls: bool = False) -> None:
        self.options = dict(hostname=host, port=port, timeout=timeout, username=username, password=password,
                            start_tls=starttls)
        self.sender = sender
        self.envelope_sender = parseaddr(sender)[1]

    async def send(self, message: Message, delivery_id: str) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        # The same Message-ID on every attempt lets mail clients fold a duplicate sent in the crash window.
        mail["Message-ID"] = f"<{delivery_id}@lienthong.thanhhoa.gov.vn>"
        mail.set_content(message.body, subtype="html")
        # CPython's header folding drops the space between two encoded words ("xử lý" arrives as "xửlý"); one
        # unfolded line (RFC 5322 allows 998 characters) keeps Vietnamese subjects intact.
        raw = mail.as_bytes(policy=SMTP_POLICY)
        try:
            await aiosmtplib.send(raw, sender=self.envelope_sender, recipients=[message.to], **self.options)
        except aiosmtplib.SMTPRecipientsRefused as exc:  # one recipient per message: its refusal decides
            code = max(refusal.code for refusal in exc.recipients)
            raise DeliveryError(f"smtp {code}", transient=code < 500) from exc
        except aiosmtplib.SMTPResponseException as exc:  # 4xx: try later; 5xx: the server refuses for good
            raise DeliveryError(f"smtp {exc.code}", transient=exc.code < 500) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"smtp {type(exc).__name__}", transient=True) from exc


def retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def check_response(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    status = response.status_code
    transient = status in (408, 425, 429) or status >= 500
    raise DeliveryError(f"{what} http {status}", transient=transient,
                        retry_after=retry_after_s(response) if status in (429, 503) else None)


async def post(client: httpx.AsyncClient, url: str | httpx.URL, what: str, **kwargs: object) -> None:
    """POST and judge by the status alone: the body is never read (no unbounded responses)."""
    try:
        async with client.stream("POST", url, **kwargs) as response:  # type: ignore[arg-type]
            check_response(response, what)
    except httpx.HTTPError as exc:  # timeouts, refused connections, TLS errors: the receiver may come back
        raise DeliveryError(f"{what} {_category(exc)}", transient=True) from exc


def _category(exc: httpx.HTTPError) -> str:
    """What a subscriber or the dashboard may read of a failure: a category, not a probe result."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "unreachable"
    return "transport error"


class SmsChannel:
    """An HTTP SMS gateway: POST {to, text, reference} with a bearer token."""

    def __init__(self, client: httpx.AsyncClient, *, url: str, token: str) -> None:
        self.client, self.url, self.token = client, url, token

    async def send(self, message: Message, delivery_id: str) -> None:
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        await post(self.client, self.url, "sms", headers=auth,
                   json={"to": message.to, "text": message.body, "reference": delivery_id})


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str
    active: bool


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Signature`: HMAC-SHA256 over "<timestamp>.<body>" with the subscriber's secret, hex."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel:
    """POSTs the CloudEvent (structured mode) to an agency system, signed so the agency knows it came from us and
    was not replayed later (the timestamp is inside the signature)."""

    def __init__(self, client: httpx.AsyncClient, target: Callable[[str], Awaitable[WebhookTarget | None]], *,
                 allow_private: bool = False) -> None:
        self.client, self.target, self.allow_private = client, target, allow_private

    async def send(self, message: Message, delivery_id: str) -> None:
        target = await self.target(message.to)
        if target is None or not target.active:
            raise DeliveryError("webhook subscription inactive", transient=False)
        try:
            destination = await egress.resolve(target.url, allow_private=self.allow_private)
        except egress.RefusedAddress as exc:
            raise DeliveryError("webhook refused address", transient=False) from exc
        body = message.body.encode()
        timestamp = str(int(time.time()))
        await post(self.client, destination.url, "webhook", content=body,
                   extensions={"sni_hostname": destination.host}, headers={
            "Host": destination.host,
            "Content-Type": CLOUDEVENTS_JSON,
            "X-Signature": signature(target.secret, timestamp, body),
            "X-Signature-Timestamp": timestamp,
            "X-Delivery-Id": delivery_id,
        })
