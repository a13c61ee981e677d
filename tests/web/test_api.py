"""The REST API over real HTTP (uvicorn on loopback): token, processes, nodes, control, submit,
daemon, server-sent events, and refusals as JSON 4xx naming the field."""

from __future__ import annotations

import json
import os
import stat

import pytest

import plait
from plait.orm import Float, SinglefileData, load_node
from plait.workflows.demo import NewtonSqrtWorkChain


def _no_traceback(response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_every_request_needs_the_token(web_server):
    with web_server.client(token="") as anonymous, web_server.client(token="wrong" * 8) as wrong:
        for client in (anonymous, wrong):
            for method, path in [
                ("GET", "/openapi.json"),
                ("GET", "/docs"),
                ("GET", "/api/processes"),
                ("GET", "/api/nodes/1"),
                ("GET", "/api/daemon"),
                ("POST", "/api/processes/control"),
                ("POST", "/api/processes"),
                ("POST", "/api/daemon/incr"),
                ("GET", "/no/such/page"),
            ]:
                response = client.request(method, path, json={})
                assert response.status_code == 401, (method, path, response.text)
                assert "token" in response.json()["error"]
                assert response.headers["www-authenticate"] == "Bearer"
    with web_server.client(token="") as anonymous:
        assert anonymous.get("/api/processes", params={"token": web_server.token}).status_code == 200
        docs = anonymous.get("/docs", params={"token": web_server.token})
        assert docs.status_code == 200 and "openapi.json?token=" in docs.text
    with web_server.client() as client:
        spec = client.get("/openapi.json").json()
        assert {"/api/processes", "/api/processes/{pk}", "/api/nodes/{pk}", "/api/daemon"} <= set(
            spec["paths"]
        )
        assert "HTTPBearer" in spec["components"]["securitySchemes"]
        response = client.get("/api/processes", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in response.headers  # no CORS


def test_the_profile_token_is_made_once_and_kept_owner_only(plait_home):
    from plait.storage import get_profile
    from plait.web.auth import TokenError, load_or_create_token, token_path

    plait.load_profile()
    profile = get_profile()
    token = load_or_create_token(profile)
    path = token_path(profile)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(token) >= 40
    assert load_or_create_token(profile) == token
    os.chmod(path, 0o644)
    with pytest.raises(TokenError, match="can be read by other users"):
        load_or_create_token(profile)


def test_processes_list_show_report_and_nodes(web_server):
    outputs, node = plait.run_get_node(NewtonSqrtWorkChain, a=Float(2.0))
    child = node.called[0]
    with web_server.client() as client:
        listed = client.get("/api/processes", params={"state": "finished", "limit": 2}).json()
        assert listed["total"] == 1 + len(node.called) and len(listed["items"]) == 2
        assert listed["items"][0]["pk"] > listed["items"][1]["pk"]  # newest first
        page2 = client.get("/api/processes", params={"state": "finished", "limit": 2, "offset": 2}).json()
        assert {i["pk"] for i in page2["items"]}.isdisjoint(i["pk"] for i in listed["items"])
        chains = client.get("/api/processes", params={"process_label": "NewtonSqrtWorkChain"}).json()
        assert [i["pk"] for i in chains["items"]] == [node.pk]
        assert client.get("/api/processes", params={"state": "running"}).json()["total"] == 0
        assert client.get("/api/processes", params={"since": "2999-01-01T00:00:00Z"}).json()["total"] == 0

        shown = client.get(f"/api/processes/{node.pk}").json()
        assert shown["state"] == "finished" and shown["exit_status"] == 0
        assert shown["inputs"]["a"]["value"] == 2.0
        assert abs(shown["outputs"]["root"]["value"] - 2**0.5) < 1e-6
        assert child.pk in [c["pk"] for c in shown["children"]]
        assert [c["pk"] for c in shown["call_tree"]] == [c.pk for c in node.called]
        report = client.get(f"/api/processes/{node.pk}/report").json()
        assert report["lines"] and all(
            {"time", "level", "message", "pk"} <= set(line) for line in report["lines"]
        )

        graph = client.get(f"/api/nodes/{node.pk}/graph", params={"descendants": 1}).json()
        assert graph["center"] == node.pk
        pks = {entry["pk"] for entry in graph["nodes"]}
        assert {node.pk, outputs["root"].pk, child.pk} <= pks
        assert {"source": node.pk, "target": child.pk} in [
            {"source": link["source"], "target": link["target"]} for link in graph["links"]
        ]
        center = next(entry for entry in graph["nodes"] if entry["pk"] == node.pk)
        assert center["process"]["state"] == "finished"
        too_deep = client.get(f"/api/nodes/{node.pk}/graph", params={"ancestors": 11})
        assert too_deep.status_code == 422 and too_deep.json()["field"] == "query.ancestors"
        drawn = client.get(
            f"/api/nodes/{node.pk}/graph.svg", params={"descendants": 1, "highlight_class": "Float"}
        )
        assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/svg+xml"
        assert drawn.text.lstrip().startswith("<?xml") and "<svg" in drawn.text
        assert f"{child.pk}" in drawn.text and "#ffd54f" in drawn.text  # the child drawn, Floats highlighted
        assert "script-src" not in drawn.headers["content-security-policy"]  # default-src 'none' covers it

        data = client.get(f"/api/nodes/{outputs['root'].pk}").json()
        assert data["attributes"]["value"] == outputs["root"].value
        assert any(link["node"]["pk"] == node.pk for link in data["incoming"])

    stored = SinglefileData(b"hello\x00world", filename="a.bin").store()
    with web_server.client() as client:
        files = client.get(f"/api/nodes/{stored.pk}").json()["files"]
        assert files == ["a.bin"]
        download = client.get(f"/api/nodes/{stored.pk}/files/a.bin")
        assert download.content == b"hello\x00world"
        assert download.headers["content-disposition"] == 'attachment; filename="a.bin"'
        missing = client.get(f"/api/nodes/{stored.pk}/files/b.bin")
        assert missing.status_code == 404 and missing.json()["field"] == "path"
        unsafe = client.get(f"/api/nodes/{stored.pk}/files/..%2F..%2Fetc%2Fpasswd")
        assert unsafe.status_code in (404, 422)
        _no_traceback(unsafe)


def test_bad_requests_get_a_json_4xx_naming_the_field(web_server):
    with web_server.client() as client:
        cases = [
            (client.get("/api/processes", params={"limit": 0}), 422, "query.limit"),
            (client.get("/api/processes", params={"state": "sleeping"}), 422, "query.state.0"),
            (client.get("/api/processes", params={"since": "yesterday"}), 422, "query.since"),
            (client.get("/api/processes/abc"), 422, "path.pk"),
            (client.get(f"/api/processes/{2**70}"), 422, "path.pk"),
            (client.get("/api/nodes/999999"), 404, None),
            (client.post("/api/processes/1/explode"), 422, "path.action"),
            (client.post("/api/processes", json={"process": "no.such.thing"}), 422, "body.process"),
            (client.post("/api/processes", json={"process": "os:path"}), 422, "body.process"),
            (client.post("/api/processes", json={"process": "no_such_module_x:Y"}), 422, "body.process"),
            (
                client.post("/api/processes", json={"process": "arithmetic.add", "inputs": {"x": 1}}),
                422,
                "body.inputs",
            ),
            (
                client.post(
                    "/api/processes", json={"process": "arithmetic.add", "inputs": {"code": {"$node": 99999}}}
                ),
                422,
                "body.inputs.code",
            ),
            (client.post("/api/processes/control", json={"action": "kill"}), 422, "body.pks"),
            (
                client.post("/api/processes/control", json={"action": "kill", "pks": [1], "all": True}),
                422,
                "body.all",
            ),
            (
                client.post(
                    "/api/processes", content=b"{not json", headers={"content-type": "application/json"}
                ),
                422,
                None,
            ),
            (client.post("/api/daemon/incr", params={"n": 0}), 422, "query.n"),
        ]
        for response, status, field in cases:
            assert response.status_code == status, (response.request.url, response.text)
            body = response.json()
            assert body["error"]
            if field is not None:
                assert body["field"] == field, body
            _no_traceback(response)
        data = Float(1.0).store()
        response = client.get(f"/api/processes/{data.pk}")
        assert response.status_code == 404 and "not a process" in response.json()["error"]


def test_submit_control_and_the_event_stream(web_server):
    with web_server.client() as client:
        response = client.post(
            "/api/processes",
            json={"process": "plait.workflows.demo:NewtonSqrtWorkChain", "inputs": {"a": 2.0}},
        )
        assert response.status_code == 201, response.text
        pk = response.json()["pk"]
        assert load_node(pk).inputs.a.value == 2.0
        other = client.post(
            "/api/processes",
            json={"process": "plait.workflows.demo:NewtonSqrtWorkChain", "inputs": {"a": 3.0}},
        ).json()["pk"]

        paused = client.post(f"/api/processes/{pk}/pause").json()
        assert paused["action"] == "pause" and load_node(pk).paused
        played = client.post("/api/processes/control", json={"action": "play", "all": True}).json()
        assert set(played["results"]) == {str(pk)} and not load_node(pk).paused

        events = []
        with client.stream("GET", f"/api/processes/{pk}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            for line in lines:
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 1:  # the process as it is; now kill it from another request
                        with web_server.client() as second:
                            killed = second.post(f"/api/processes/{pk}/kill", json={"message": "stop"})
                            assert killed.json()["results"] == {str(pk): "killed"}
                    if events[-1]["terminal"]:
                        break
        assert events[0]["state"] == "created" and events[-1]["state"] == "killed"

        killed_all = client.post(
            "/api/processes/control",
            json={"action": "kill", "all": True, "filter": {"process_label": "NewtonSqrtWorkChain"}},
        ).json()
        assert killed_all["results"] == {str(other): "killed"}
        assert client.get("/api/processes", params={"state": "killed"}).json()["total"] == 2


def test_daemon_status_when_not_running(web_server):
    with web_server.client() as client:
        assert client.get("/api/daemon").json() == {"running": False, "workers": []}
        response = client.post("/api/daemon/incr", params={"n": 1})
        assert response.status_code == 409 and "plait daemon start" in response.json()["error"]
