"""The shipped example as a new user runs it (`automator run --sandbox`, no variables set): its `staff` connector,
which has no secret, and its `forms` connector, whose secret's variable is not set, accept no webhook from anyone,
while the emulated systems' webhooks still come in."""
from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

from e2e_support import Daemon, Project, query, wait_for

ROOT = Path(__file__).resolve().parents[2]
SECRET_VARIABLES = ("B24_WEBHOOK_URL", "B24_APP_TOKEN", "YCLIENTS_PARTNER_TOKEN", "YCLIENTS_USER_TOKEN",
                    "YCLIENTS_HOOK_SECRET", "SMSRU_API_ID", "STAFF_HOOK_TOKEN", "FORMS_HOOK_TOKEN")


def _example(root: Path) -> Project:
    root.mkdir()
    shutil.copy(ROOT / "automator.yaml", root / "automator.yaml")
    shutil.copy(ROOT / "segments.yaml", root / "segments.yaml")
    shutil.copy(ROOT / "loyalty.yaml", root / "loyalty.yaml")
    for folder in ("rules", "pipelines"):
        shutil.copytree(ROOT / folder, root / folder)
    return Project(root, 0)


def test_the_examples_staff_connector_is_no_open_endpoint(tmp_path: Path, start_daemon: Callable[..., Daemon],
                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in SECRET_VARIABLES:  # a fresh machine
        monkeypatch.delenv(name, raising=False)
    daemon = start_daemon(_example(tmp_path / "clinic"), args=("--sandbox",))
    # What the outsider sent: a client's phone changed, to make the daemon text that number.
    forged = {"event": "client.updated", "entity": {"kind": "client", "id": "1005"},
              "data": {"phone": "+79990001122"}, "delivery_id": "forged-1"}
    for token in (None, "", "guess"):
        answer = daemon.post("staff", forged, token=token)
        assert (answer.status, answer.body) == (
            401, {"error": "connector 'staff' (local) has no `secret` set: it accepts no webhooks"})
    nps = {"event": "nps.received", "entity": {"kind": "client", "id": "1005"}, "data": {"score": 3}}
    for token in (None, "", "guess"):
        assert daemon.post("forms", nps, token=token).status == 401
    refused = [r for r in daemon.log_records() if r["msg"].startswith("webhook refused: 401")]
    assert len(refused) == 6 and all(r["reason"] == "auth" for r in refused)
    assert [r["connector"] for r in refused] == ["staff"] * 3 + ["forms"] * 3
    assert any(r["msg"] == "sandbox: connector forms accepts no webhooks: secret needs FORMS_HOOK_TOKEN"
               for r in daemon.log_records())

    # The emulated YCLIENTS still delivers its (authenticated) webhooks to the daemon.
    base = f"http://127.0.0.1:{daemon.port}/_sandbox/booking/_emulator"
    request = urllib.request.Request(f"{base}/attendance", data=json.dumps({"record_id": 1008, "attendance": -1})
                                     .encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    wait_for(lambda: query(daemon.project.db, "select count(*) from journal where source = 'booking'")[0][0] >= 1,
             20, "the YCLIENTS webhook to be journaled")
    assert query(daemon.project.db, "select count(*) from journal where source in ('staff', 'forms')") == [(0,)]
    assert daemon.terminate() == 0
