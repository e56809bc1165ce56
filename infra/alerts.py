"""Failed-run alerts: Prefect automations that message DingTalk, WeCom, e-mail and generic webhooks.

When a flow run enters **Failed**, **Crashed** or **TimedOut** the Prefect server emits the event
``prefect.flow-run.<state name>``; one automation per channel (a Reactive event trigger on those three events)
runs a ``send-notification`` action through a notification block. Both the blocks and the automations are
upserted **by name**, so :func:`ensure_alerts` can run on every deploy: it updates what exists and never
creates a second copy (prefect.md §4: ``prefect automation create`` is not idempotent, ``prefect.yaml`` cannot
hold automations).

Channels (each optional):

=============  =========================================================================================
``dingtalk``   DingTalk custom robot (自定义机器人), ``msgtype`` markdown or text. Without a signing secret a
               built-in ``CustomWebhookNotificationBlock``; with a secret (加签, ``SEC…``) the orderhub block
               :class:`DingTalkRobot`, which signs each request (timestamp + HMAC-SHA256 ``sign``) and checks
               DingTalk's ``errcode``. It needs the server to import this module (see infra/README.md).
``wecom``      WeCom group robot (企业微信群机器人), msgtype markdown.
``webhook``    any HTTP endpoint: ``{"title", "text", "source": "orderhub"}``.
``email``      an HTTP e-mail gateway (company mail relay, SendGrid/Mailgun-style API):
               ``{"to": [...], "subject", "text"}``, optional bearer token. The open-source server has no
               ``send-email-notification`` action and ``EmailServerCredentials`` lives in prefect-email, so
               orderhub sends e-mail through a gateway instead of SMTP.
=============  =========================================================================================

Every message names the deployment, the flow run, the state, the error message and links to the run in the
UI (``{ui_url}/runs/flow-run/{id}``). URLs and robot secrets are stored in the block's ``secrets`` (masked in
the UI and the API) and come from the command line, the environment or Prefect Secret blocks
(``${secret:BLOCK}`` / ``${env:NAME}``), never from code.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
import time
import urllib.parse
from datetime import timedelta
from typing import Any, Literal, Optional
from uuid import UUID

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from pydantic import Field, SecretStr

from orderhub.connectors.common.secrets import redact, register_secret

ALERT_STATES = ("Failed", "Crashed", "TimedOut")
ALERT_EVENTS = {f"prefect.flow-run.{s}" for s in ALERT_STATES}
DEFAULT_PREFIX = "orderhub-alert"
CHANNELS = ("dingtalk", "wecom", "webhook", "email")

# Jinja rendered by the server (context: flow, flow_run, deployment, event). The state and error come from the
# triggering event, so a later state change (e.g. a retry) cannot change what the alert says.
_STATE = "{{ event.resource.get('prefect.state-name') or flow_run.state.name }}"
_WHAT = "{{ deployment.name if deployment.name else flow.name }}"
SUBJECT = f"[orderhub] {_STATE}: {_WHAT} / {{{{ flow_run.name }}}}"
BODY = """\
### [orderhub] flow run {state}

- **Deployment**: {{{{ deployment.name if deployment.name else '(none)' }}}}
- **Flow**: {{{{ flow.name }}}}
- **Flow run**: {{{{ flow_run.name }}}}
- **State**: {state}
- **Error**: {{{{ (event.resource.get('prefect.state-message') or flow_run.state.message or '-') | truncate(800) }}}}
- **Run**: [{ui}/runs/flow-run/{{{{ flow_run.id }}}}]({ui}/runs/flow-run/{{{{ flow_run.id }}}})
"""


def alert_body(ui_url: str) -> str:
    """The notification body (markdown, Jinja for the server) with run links into ``ui_url``."""
    return BODY.format(state=_STATE, ui=ui_url.rstrip("/"))


# --- DingTalk signing ----------------------------------------------------------------------------------------
def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot 加签: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")), not yet URL-encoded
    (DingTalk 自定义机器人 安全设置 · 加签)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int | None = None) -> str:
    """``url`` with ``&timestamp=…&sign=…`` appended; DingTalk accepts a timestamp within 1 hour of its clock."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{sep}timestamp={ts}&sign={urllib.parse.quote_plus(dingtalk_sign(secret, ts))}"


def _dingtalk_payload(msgtype: str, subject: str | None, body: str) -> dict[str, Any]:
    if msgtype == "text":
        return {"msgtype": "text", "text": {"content": f"{subject}\n{body}" if subject else body}}
    return {"msgtype": "markdown", "markdown": {"title": subject or "orderhub", "text": body}}


class DingTalkRobot(NotificationBlock):
    """DingTalk custom robot with 加签 (signed) security: every message gets a fresh ``timestamp``/``sign``.

    DingTalk answers HTTP 200 with ``errcode`` ≠ 0 for a bad token, signature or keyword; this block raises then,
    so the automation records a failed action instead of a silent success.
    """

    _block_type_name = "orderhub DingTalk Robot"
    _block_type_slug = "orderhub-dingtalk-robot"
    _description = "DingTalk custom robot (自定义机器人) with signed requests (加签)."

    webhook_url: SecretStr = Field(description="https://oapi.dingtalk.com/robot/send?access_token=…")
    secret: Optional[SecretStr] = Field(default=None, description="加签 secret (SEC…); empty: unsigned")
    msgtype: Literal["markdown", "text"] = "markdown"
    timeout: float = 10.0

    def _request(self, body: str, subject: str | None) -> tuple[str, dict[str, Any]]:
        url = self.webhook_url.get_secret_value()
        if self.secret is not None and self.secret.get_secret_value():
            url = dingtalk_signed_url(url, self.secret.get_secret_value())
        return url, _dingtalk_payload(self.msgtype, subject, body)

    @staticmethod
    def _check(resp: Any) -> None:
        if resp.is_error:  # not raise_for_status(): its message carries the URL, i.e. the robot's access_token
            raise RuntimeError(f"DingTalk answered HTTP {resp.status_code} {resp.reason_phrase}")
        answer = resp.json()
        if answer.get("errcode", 0) != 0:
            raise RuntimeError(f"DingTalk refused the message: errcode {answer.get('errcode')}: "
                               f"{answer.get('errmsg')}")

    async def anotify(self, body: str, subject: str | None = None) -> None:
        import httpx

        url, payload = self._request(body, subject)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            self._check(await client.post(url, json=payload))

    @async_dispatch(anotify)
    def notify(self, body: str, subject: str | None = None) -> None:  # type: ignore[override]
        import httpx

        url, payload = self._request(body, subject)
        with httpx.Client(timeout=self.timeout) as client:
            self._check(client.post(url, json=payload))


# --- channel blocks ------------------------------------------------------------------------------------------
def _secret_url_block(name: str, url: str, json_data: dict[str, Any], *, headers: dict[str, str] | None = None,
                      secrets: dict[str, str] | None = None) -> CustomWebhookNotificationBlock:
    """A CustomWebhookNotificationBlock whose whole URL is a secret (robot URLs carry the access token)."""
    register_secret(url)
    for v in (secrets or {}).values():
        register_secret(v)
    return CustomWebhookNotificationBlock(name=name, url="{{url}}", method="POST", json_data=json_data,
                                          headers=headers, secrets={"url": url, **(secrets or {})})


def dingtalk_block(url: str, *, secret: str | None = None,
                   msgtype: Literal["markdown", "text"] = "markdown") -> NotificationBlock:
    register_secret(url)
    if secret:
        register_secret(secret)
        return DingTalkRobot(webhook_url=url, secret=secret, msgtype=msgtype)
    payload = _dingtalk_payload(msgtype, "{{subject}}", "{{body}}")
    return _secret_url_block("DingTalk robot", url, payload)


def wecom_block(url: str) -> CustomWebhookNotificationBlock:
    return _secret_url_block("WeCom robot", url, {"msgtype": "markdown",
                                                  "markdown": {"content": "**{{subject}}**\n{{body}}"}})


def webhook_block(url: str) -> CustomWebhookNotificationBlock:
    return _secret_url_block("orderhub webhook", url, {"title": "{{subject}}", "text": "{{body}}",
                                                       "source": "orderhub"})


def email_block(url: str, to: list[str], *, token: str | None = None) -> CustomWebhookNotificationBlock:
    if not to:
        raise ValueError("email alerts need at least one recipient (--email-to)")
    headers = {"Authorization": "Bearer {{token}}"} if token else None
    return _secret_url_block("orderhub e-mail gateway", url, {"to": list(to), "subject": "{{subject}}",
                                                               "text": "{{body}}"},
                             headers=headers, secrets={"token": token} if token else None)


# --- upserts -------------------------------------------------------------------------------------------------
def failure_automation(name: str, block_document_id: UUID, ui_url: str, *,
                       tags: list[str] | None = None) -> Any:
    """The automation: any flow run (optionally only runs tagged ``tags``) entering Failed, Crashed or TimedOut
    sends one notification through the block."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    match_related = ({"prefect.resource.role": "tag", "prefect.resource.id": [f"prefect.tag.{t}" for t in tags]}
                     if tags else {})
    return Automation(
        name=name,
        description="orderhub: alert when a flow run is Failed, Crashed or TimedOut (infra/alerts.py)",
        enabled=True,
        trigger=EventTrigger(match={"prefect.resource.id": "prefect.flow-run.*"}, match_related=match_related,
                             expect=set(ALERT_EVENTS), posture=Posture.Reactive, threshold=1,
                             within=timedelta(0)),
        actions=[SendNotification(block_document_id=block_document_id, subject=SUBJECT,
                                  body=alert_body(ui_url))],
    )


def upsert_automation(automation: Any) -> UUID:
    """Create the automation, or update the one with the same name; extra copies with that name are deleted."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    with get_client(sync_client=True) as client:
        resp = client.request("POST", "/automations/filter",
                              json={"automations": {"name": {"any_": [automation.name]}}})
        existing = sorted(resp.json(), key=lambda a: (a.get("created") or "", a["id"]))  # oldest first
        core = AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))
        if not existing:
            return client.create_automation(core)
        keep, *extra = (UUID(a["id"]) for a in existing)
        for dup in extra:
            client.delete_automation(dup)
        client.update_automation(keep, core)
        return keep


def ensure_alerts(*, ui_url: str, dingtalk_url: str | None = None, dingtalk_secret: str | None = None,
                  dingtalk_msgtype: Literal["markdown", "text"] = "markdown", wecom_url: str | None = None,
                  webhook_url: str | None = None, email_url: str | None = None,
                  email_to: list[str] | None = None, email_token: str | None = None,
                  tags: list[str] | None = None, prefix: str = DEFAULT_PREFIX) -> dict[str, UUID]:
    """Upsert one notification block and one automation per configured channel; returns channel → automation id.

    Names are ``{prefix}-{channel}`` for both, so running this again (e.g. on every deploy) changes nothing but
    the configuration. Channels not given are left alone (use :func:`remove_alerts` to delete them).
    """
    blocks: dict[str, NotificationBlock] = {}
    if dingtalk_url:
        blocks["dingtalk"] = dingtalk_block(dingtalk_url, secret=dingtalk_secret, msgtype=dingtalk_msgtype)
    if wecom_url:
        blocks["wecom"] = wecom_block(wecom_url)
    if webhook_url:
        blocks["webhook"] = webhook_block(webhook_url)
    if email_url:
        blocks["email"] = email_block(email_url, list(email_to or []), token=email_token)
    out: dict[str, UUID] = {}
    for channel, block in blocks.items():
        name = f"{prefix}-{channel}"
        block_id = block.save(name, overwrite=True)
        out[channel] = upsert_automation(failure_automation(name, block_id, ui_url, tags=tags))
    return out


def remove_alerts(prefix: str = DEFAULT_PREFIX, channels: tuple[str, ...] = CHANNELS) -> int:
    """Delete the automations (not the blocks) created by :func:`ensure_alerts`; returns how many."""
    from prefect.client.orchestration import get_client

    n = 0
    with get_client(sync_client=True) as client:
        for channel in channels:
            for a in client.read_automations_by_name(f"{prefix}-{channel}"):
                client.delete_automation(a.id)
                n += 1
    return n


def send_test(block_name: str) -> None:
    """Send a test message through a saved alert block; raises if the endpoint refuses it — also when a robot
    answers HTTP 200 with ``errcode`` ≠ 0 (wrong key, keyword or signature), which the built-in block ignores."""
    import httpx
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        slugs = [d.block_type.slug for d in client.read_block_documents() if d.name == block_name and d.block_type]
    if not slugs:
        raise ValueError(f"no block named {block_name!r}; run ensure_alerts first")
    block = Block.load(f"{slugs[0]}/{block_name}")
    body, subject = "orderhub alert test: failed-run alerts reach this channel.", "[orderhub] alert test"
    build = getattr(block, "_build_request_args", None)  # CustomWebhookNotificationBlock (prefect 3.8)
    if build is None:
        with block.raise_on_failure():
            block.notify(body, subject=subject)
        return
    args = build(body, subject)
    cookies = args.pop("cookies", None) or {}
    with httpx.Client(cookies=cookies) as http:
        resp = http.request(**args)
    resp.raise_for_status()
    try:
        answer = resp.json()
    except ValueError:
        return
    if isinstance(answer, dict) and answer.get("errcode", 0) != 0:
        raise RuntimeError(f"{block_name}: the robot refused the message: errcode {answer.get('errcode')}: "
                           f"{answer.get('errmsg')}")


# --- CLI -----------------------------------------------------------------------------------------------------
def _resolved(value: str | None, key: str) -> str | None:
    """``${env:NAME}`` / ``${secret:BLOCK}`` references in a command-line value, resolved and registered."""
    if not value:
        return None
    from orderhub.connectors.common.config import resolve

    out = resolve(value, key)
    register_secret(out)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m orderhub.infra.alerts",
        description="Create or update (by name) the failed/crashed/timed-out run alerts. Values may be "
                    "${env:NAME} or ${secret:BLOCK}; defaults come from the ORDERHUB_ALERT_* variables.")
    p.add_argument("--dingtalk-url", default=env("ORDERHUB_ALERT_DINGTALK_URL"))
    p.add_argument("--dingtalk-secret", default=env("ORDERHUB_ALERT_DINGTALK_SECRET"),
                   help="加签 secret (SEC…); needs the server to import orderhub (infra/README.md)")
    p.add_argument("--dingtalk-msgtype", choices=["markdown", "text"], default="markdown")
    p.add_argument("--wecom-url", default=env("ORDERHUB_ALERT_WECOM_URL"))
    p.add_argument("--webhook-url", default=env("ORDERHUB_ALERT_WEBHOOK_URL"))
    p.add_argument("--email-url", default=env("ORDERHUB_ALERT_EMAIL_URL"), help="HTTP e-mail gateway")
    p.add_argument("--email-to", default=env("ORDERHUB_ALERT_EMAIL_TO", ""), help="comma-separated addresses")
    p.add_argument("--email-token", default=env("ORDERHUB_ALERT_EMAIL_TOKEN"))
    p.add_argument("--tag", action="append", dest="tags", help="only runs with this tag (repeatable)")
    p.add_argument("--ui-url", default=env("ORDERHUB_UI_URL"),
                   help="base URL of the Prefect UI for run links (default: PREFECT_UI_URL / PREFECT_API_URL)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX)
    p.add_argument("--send-test", action="store_true", help="then send a test message to every channel")
    p.add_argument("--remove", action="store_true", help="delete the alert automations instead")
    a = p.parse_args(argv)

    if a.remove:
        print(f"deleted {remove_alerts(a.prefix)} automation(s)")
        return 0
    ui_url = a.ui_url or PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    if not ui_url:
        p.error("no UI URL: pass --ui-url or set PREFECT_API_URL")
    made = ensure_alerts(
        ui_url=ui_url, dingtalk_url=_resolved(a.dingtalk_url, "dingtalk_url"),
        dingtalk_secret=_resolved(a.dingtalk_secret, "dingtalk_secret"), dingtalk_msgtype=a.dingtalk_msgtype,
        wecom_url=_resolved(a.wecom_url, "wecom_url"), webhook_url=_resolved(a.webhook_url, "webhook_url"),
        email_url=_resolved(a.email_url, "email_url"),
        email_to=[x.strip() for x in (a.email_to or "").split(",") if x.strip()],
        email_token=_resolved(a.email_token, "email_token"), tags=a.tags, prefix=a.prefix)
    if not made:
        p.error("no channel given: --dingtalk-url, --wecom-url, --webhook-url or --email-url")
    for channel, automation_id in made.items():
        print(f"{a.prefix}-{channel}: automation {automation_id}")
    failed = 0
    for channel in made if a.send_test else ():
        try:
            send_test(f"{a.prefix}-{channel}")
            print(f"{a.prefix}-{channel}: test message accepted")
        except Exception as exc:  # noqa: BLE001 - report every channel, then fail
            failed += 1
            print(f"{a.prefix}-{channel}: test message FAILED: {redact(str(exc))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
