"""Failed-run alerts: real deployments on a real process worker fail; the automations message local robots."""
import time

import httpx
import pytest

from orderhub.infra.alerts import (DingTalkRobot, dingtalk_sign, dingtalk_signed_url, ensure_alerts,
                                   remove_alerts)
from orderhub.infra.prefect_server import tail
from orderhub.infra.webhook_receiver import WebhookReceiver
from tests.prefect.conftest import deploy_test_flow
from tests.prefect.flows_for_tests import FAILURE_MESSAGE

SECRET = "SECthis-is-a-test-secret"


# --- DingTalk 加签, no server needed ---------------------------------------------------------------------------
def test_dingtalk_sign_matches_openssl_vector():
    # printf '1577262236757\nSECthis-is-a-test-secret' | openssl dgst -sha256 -hmac 'SECthis-is-a-test-secret' \
    #   -binary | base64
    assert dingtalk_sign(SECRET, 1577262236757) == "NkacC61mETTYp7O9Zp6aCDO7zbXe/+aoMo91VLOeqog="
    assert dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=abc", SECRET, 1577262236757) == (
        "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1577262236757"
        "&sign=NkacC61mETTYp7O9Zp6aCDO7zbXe%2F%2BaoMo91VLOeqog%3D")


def test_signed_dingtalk_block_is_accepted_and_a_wrong_secret_is_refused():
    with WebhookReceiver(dingtalk_secret=SECRET) as robot:
        DingTalkRobot(webhook_url=f"{robot.url}/robot/send?access_token=t1", secret=SECRET).notify(
            "body text", subject="[orderhub] test")
        hit = robot.wait_for(lambda h: True, timeout=5)
        assert hit.query["access_token"] == "t1"
        assert hit.json == {"msgtype": "markdown", "markdown": {"title": "[orderhub] test", "text": "body text"}}
        with pytest.raises(RuntimeError, match="errcode 310000"):
            DingTalkRobot(webhook_url=f"{robot.url}/robot/send?access_token=t1", secret="SECwrong").notify("x")
        assert len(robot.hits) == 1


def test_receiver_refuses_an_expired_dingtalk_timestamp():
    with WebhookReceiver(dingtalk_secret=SECRET) as robot:
        old = int(time.time() * 1000) - 2 * 3600_000
        answer = httpx.post(dingtalk_signed_url(f"{robot.url}/robot/send?access_token=t", SECRET, old),
                            json={"msgtype": "text", "text": {"content": "late"}}).json()
        assert answer["errcode"] == 310000 and robot.hits == []


# --- against the real server ----------------------------------------------------------------------------------
@pytest.mark.prefect
def test_failed_timed_out_and_crashed_deployment_runs_alert_every_channel_within_60s(prefect_api, process_worker,
                                                                             receiver):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    prefix = "orderhub-alert-e2e"
    with WebhookReceiver(dingtalk_secret=SECRET) as dingtalk:
        try:
            ensure_alerts(ui_url=prefect_api.ui_url, prefix=prefix,
                          webhook_url=f"{receiver.url}/hook", wecom_url=f"{receiver.url}/wecom?key=k1",
                          dingtalk_url=f"{dingtalk.url}/robot/send?access_token=t1", dingtalk_secret=SECRET)
            failing = run_deployment(deploy_test_flow("always_fails", "erp-sync-shop-a"), timeout=0)
            slow = run_deployment(deploy_test_flow("too_slow", "slow-sync"), timeout=0)
            crash = run_deployment(deploy_test_flow("crashes", "oom-sync"), timeout=0)

            hook = receiver.wait_for(lambda h: h.path == "/hook" and str(failing.id) in h.text, timeout=120)
            text = hook.json["text"]
            assert hook.json["title"] == f"[orderhub] Failed: erp-sync-shop-a / {failing.name}"
            assert "- **Deployment**: erp-sync-shop-a" in text
            assert "- **State**: Failed" in text
            assert FAILURE_MESSAGE in text  # quotes survive: the block JSON-encodes the rendered body
            assert f"{prefect_api.ui_url}/runs/flow-run/{failing.id}" in text
            with get_client(sync_client=True) as client:
                failed_at = client.read_flow_run(failing.id).state.timestamp.timestamp()
            late = hook.received_at - failed_at
            print(f"alert {late:.2f} s after the Failed state")
            assert late < 60, f"alert {late:.1f} s late; the server's log ends:\n{tail(prefect_api.log_file)}"
            link = httpx.get(f"{prefect_api.ui_url}/runs/flow-run/{failing.id}", headers={"Accept": "text/html"})
            assert link.status_code == 200 and "<!DOCTYPE html>" in link.text  # the UI serves the run page

            wecom = receiver.wait_for(lambda h: h.path == "/wecom" and str(failing.id) in h.text, timeout=30)
            assert wecom.query == {"key": "k1"} and wecom.json["msgtype"] == "markdown"
            assert wecom.json["markdown"]["content"].startswith("**[orderhub] Failed: erp-sync-shop-a")
            signed = dingtalk.wait_for(lambda h: str(failing.id) in h.text, timeout=30)  # sign verified
            assert signed.json["markdown"]["title"] == f"[orderhub] Failed: erp-sync-shop-a / {failing.name}"

            timed_out = receiver.wait_for(lambda h: h.path == "/hook" and str(slow.id) in h.text, timeout=120)
            assert timed_out.json["title"] == f"[orderhub] TimedOut: slow-sync / {slow.name}"
            assert "exceeded timeout of 1" in timed_out.json["text"]
            crashed = receiver.wait_for(lambda h: h.path == "/hook" and str(crash.id) in h.text, timeout=120)
            assert crashed.json["title"] == f"[orderhub] Crashed: oom-sync / {crash.name}"
            assert "- **Error**: " in crashed.json["text"] and f"/runs/flow-run/{crash.id}" in crashed.json["text"]
        finally:
            remove_alerts(prefix)


@pytest.mark.prefect
def test_ensure_alerts_twice_keeps_one_automation_and_one_block_per_channel(prefect_api, receiver):
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    prefix = "orderhub-alert-idem"
    first = ensure_alerts(ui_url=prefect_api.ui_url, prefix=prefix, webhook_url=f"{receiver.url}/a?token=tok-1",
                          wecom_url=f"{receiver.url}/wecom?key=k1")
    # a copy made by hand (say, `prefect automation create` run twice) is folded into the one automation
    Automation.read(id=first["webhook"]).model_copy(update={"id": None}).create()
    second = ensure_alerts(ui_url=prefect_api.ui_url, prefix=prefix, webhook_url=f"{receiver.url}/b?token=tok-2",
                           wecom_url=f"{receiver.url}/wecom?key=k1")
    try:
        assert second == first
        with get_client(sync_client=True) as client:
            names = sorted(a.name for a in client.read_automations() if a.name.startswith(prefix))
            assert names == [f"{prefix}-webhook", f"{prefix}-wecom"]
            docs = [d.name for d in client.read_block_documents() if d.name.startswith(prefix)]
            assert sorted(docs) == [f"{prefix}-webhook", f"{prefix}-wecom"]
            public = client.read_block_document_by_name(f"{prefix}-webhook", "custom-webhook", include_secrets=False)
        assert "tok-2" not in str(public.data) and public.data["url"] == "{{url}}"  # the token stays secret
        block = CustomWebhookNotificationBlock.load(f"{prefix}-webhook")
        assert block.secrets.get_secret_value()["url"] == f"{receiver.url}/b?token=tok-2"  # updated in place
    finally:
        assert remove_alerts(prefix) == 2


@pytest.mark.prefect
def test_alerts_cli_sends_test_messages_and_reports_a_robot_that_refuses(prefect_api, receiver, monkeypatch,
                                                                         capsys):
    from orderhub.infra.alerts import main

    prefix = "orderhub-alert-cli"
    monkeypatch.setenv("OPS_MAIL_TOKEN", "mail-token-4711")
    with WebhookReceiver(dingtalk_secret=SECRET) as signing_robot:
        try:
            assert main(["--prefix", prefix, "--email-url", f"{receiver.url}/mail", "--send-test",
                         "--email-to", "ops@example.com, it@example.com",
                         "--email-token", "${env:OPS_MAIL_TOKEN}"]) == 0
            mail = receiver.wait_for(lambda h: h.path == "/mail", timeout=5)
            assert mail.headers["authorization"] == "Bearer mail-token-4711"
            assert mail.json == {"to": ["ops@example.com", "it@example.com"], "subject": "[orderhub] alert test",
                                 "text": "orderhub alert test: failed-run alerts reach this channel."}
            # a robot answering HTTP 200 with errcode ≠ 0 (here: an unsigned request to a 加签 robot) is a failure
            assert main(["--prefix", prefix, "--dingtalk-url", f"{signing_robot.url}/robot/send?access_token=t",
                         "--send-test"]) == 1
            err = capsys.readouterr().err
            assert "orderhub-alert-cli-dingtalk: test message FAILED: " in err and "errcode 310000" in err
        finally:
            remove_alerts(prefix)
