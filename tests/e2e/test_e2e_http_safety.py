"""The `http` connector, end to end, against what a webhook sender can put in its data: `${env:NAME}` (sent as
text, never resolved), CR/LF in a templated header (refused before anything is sent, dead-lettered with the
reason) and a URL whose host name resolves to the loopback under `allow: ["*"]` (refused the same way); on each
HTTP engine the operator may choose with AUTOMATOR_HTTP_ENGINE."""
from __future__ import annotations

import pytest
from e2e_support import FakeServer, wait_for, write_project

from automator.http import DEFAULT_ENGINE, ENGINES

CANARY = "canary-secret-3f9a"
STATIC = "static-from-env"

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {{type: local}}
  booking:
    type: local
    secret: "${{env:{token_env}}}"
    events: {{order.paid: {{data: {{trace: text}}}}, probe.sent: {{}}}}
  web: {{type: http, allow: ["127.0.0.1:{fake_port}"], headers: {{X-Static: "${{env:E2E_HTTP_STATIC}}"}}, timeout: 5}}
  open: {{type: http, allow: ["*"], timeout: 5}}
store: automator.db
settings:
  orders_url: "http://127.0.0.1:{fake_port}/orders"
  inside_url: "http://localhost:{fake_port}/inside"
daemon:
  retry: {{attempts: 2, first_delay: 1s, max_delay: 2s}}
"""

RULES = """\
rules:
  - id: order-traced
    description: A paid order is reported with the sender's trace id in a header.
    when: {event: order.paid}
    do:
      - http.request:
          method: POST
          url: "{{ settings.orders_url }}"
          headers: {X-Trace: "{{ event.trace }}"}
          json: {order: "{{ entity.id }}"}
        via: web

  - id: probe-inside
    description: A URL whose host name is the loopback, on a connector that allows every name.
    when: {event: probe.sent}
    do:
      - http.request: {method: GET, url: "{{ settings.inside_url }}"}
        via: open
"""


def webhook(kind: str, entity: str, data: dict[str, str]) -> dict:
    return {"event": kind, "entity": {"kind": "order", "id": entity}, "data": data, "delivery_id": f"{kind}-{entity}"}


def settled(daemon, rule: str, entity: str) -> tuple:
    rows = daemon.query("select status, attempts, error, params from effects where rule_id = ? and entity like ?",
                        (rule, f"%{entity}%"))
    return rows[0] if rows and rows[0][0] in ("done", "dead") else ()


@pytest.mark.parametrize("engine", ENGINES)
def test_webhook_data_cannot_read_the_environment_split_a_request_or_reach_the_loopback(
        tmp_path, fake_server: FakeServer, start_daemon, engine: str) -> None:
    project = write_project(tmp_path / "project", fake_server.port, RULES, config=CONFIG)
    daemon = start_daemon(project, env={"E2E_SSRF_CANARY_SECRET": CANARY, "E2E_HTTP_STATIC": STATIC,
                                        "AUTOMATOR_HTTP_ENGINE": engine})
    chosen = [r["msg"] for r in daemon.log_records() if r["msg"].startswith("outbound HTTP on")]
    assert chosen == ([] if engine == DEFAULT_ENGINE else [f"outbound HTTP on the {engine} engine (AUTOMATOR_HTTP_ENGINE)"])

    # `${env:…}` in webhook data is text: the receiver sees it as sent, and the secret is nowhere.
    assert daemon.post("booking", webhook("order.paid", "1", {"trace": "${env:E2E_SSRF_CANARY_SECRET}"})).status == 200
    status, attempts, error, params = wait_for(lambda: settled(daemon, "order-traced", "1"), 10, "order 1 sent")
    assert status == "done", error
    (seen,) = fake_server.received("/orders")
    assert seen.headers["x-trace"] == "${env:E2E_SSRF_CANARY_SECRET}" and seen.body == {"order": "1"}
    assert seen.headers["x-static"] == STATIC  # the connector's own setting is read from the environment, at start
    assert CANARY not in repr(fake_server.received()) and CANARY not in params and STATIC not in params

    # CR/LF in a templated header: refused before anything is sent, dead at once with the reason.
    smuggling = "a\r\nContent-Length: 0\r\n\r\nGET /smuggled-admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert daemon.post("booking", webhook("order.paid", "2", {"trace": smuggling})).status == 200
    status, attempts, error, _ = wait_for(lambda: settled(daemon, "order-traced", "2"), 10, "order 2 settled")
    assert (status, attempts) == ("dead", 1), error
    assert "UnsafeRequest: the value of header X-Trace holds CR" in error and "smuggled" not in error

    # A host name that resolves to 127.0.0.1, on a connector allowing every name: refused, dead with the reason.
    assert daemon.post("booking", webhook("probe.sent", "3", {})).status == 200
    status, attempts, error, _ = wait_for(lambda: settled(daemon, "probe-inside", "3"), 10, "the probe settled")
    assert (status, attempts) == ("dead", 1), error
    assert "host 'localhost' resolves to" in error and "a loopback address" in error

    assert [r.path for r in fake_server.received()] == ["/orders"]  # nothing else reached the outside system
