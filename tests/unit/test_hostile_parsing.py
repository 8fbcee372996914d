"""Issue 24, items 3, 4, 9 and the minor ones: what a hostile client's bytes may not do to the parsers.

A YAML alias bomb is refused before it is built (and the parse runs off the event loop); NUL bytes in paths,
oversized or non-ASCII Last-Event-IDs are 4xx, never 500; every JSON route has one content-type rule (415); NaN is
named for what it is; the API's messages name its fields, not CLI flags or the server's home; an MCP tool never
returns a traceback, and a call nested too deep for the MCP library is answered, not dropped.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi")

from tests.fixtures.artifact_jobs import make_job_dir  # noqa: E402
from tests.serve_client import AUTH, serve_client  # noqa: E402
from tests.unit.jobs_fakes import new_job  # noqa: E402
from zlt.core.errors import BadInputError, SpecError  # noqa: E402
from zlt.serve.api_words import api_text  # noqa: E402
from zlt.serve.intake import Fence  # noqa: E402
from zlt.serve.mcp_server import call, make_tools, unreadable_reply  # noqa: E402
from zlt.serve.mcp_tool import Tool, ToolArgs  # noqa: E402
from zlt.serve.sse import resume_point  # noqa: E402
from zlt.spec.load import parse_set, read_spec_file  # noqa: E402
from zlt.spec.yaml_text import MAX_NODES, load_yaml  # noqa: E402


def alias_bomb(levels: int = 9) -> str:
    """~350 bytes that expand to 9^levels values (the issue's 368-byte multipart `spec`)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


BOMB = alias_bomb()
JOB = "20260801-120000-abc123"


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    (r / "style").mkdir(parents=True)
    (r / "style" / "a.png").write_bytes(b"x")
    return r


@pytest.fixture
def client(zlt_home: Path, data_root: Path):
    with serve_client(zlt_home, [data_root]) as c:
        yield c


# --- item 3: the alias bomb -------------------------------------------------------------------------------------


def test_the_bomb_is_small_and_would_expand_past_the_bound():
    assert len(BOMB) < 400 and 9 ** 9 > MAX_NODES


@pytest.mark.parametrize("route", ["/lora/train", "/v1/jobs"])
def test_an_alias_bomb_in_the_multipart_spec_is_422_in_milliseconds(client, route):
    t = time.monotonic()
    r = client.post(route, headers=AUTH, files={"spec": (None, BOMB)})
    elapsed = time.monotonic() - t
    assert r.status_code == 422, r.text
    assert elapsed < 1.0, elapsed
    body = r.json()
    assert body["errors"][0]["path"] == "spec" and "aliases" in body["errors"][0]["message"]


def test_an_alias_bomb_in_a_spec_file_and_in_a_set_value_is_refused_fast(tmp_path: Path):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(BOMB)
    t = time.monotonic()
    with pytest.raises(SpecError) as e:
        read_spec_file(spec)
    assert "expands to more than" in str(e.value.errors[0].message)
    with pytest.raises(BadInputError, match="expands to more than"):
        parse_set("dataset.captions=" + BOMB.replace("\n", ", ").replace("a: &a", "{a: &a", 1).rstrip(", ") + "}")
    assert time.monotonic() - t < 1.0


def test_self_reference_deep_nesting_and_duplicate_keys_are_yaml_errors():
    for text in ("&a [*a]", "[" * 5000, "a: 1\na: 2\n"):
        with pytest.raises(yaml.YAMLError):
            load_yaml(text)
    assert load_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}  # a few aliases are fine


def test_healthz_answers_while_a_spec_is_parsed(client, monkeypatch):
    """The parse runs in the thread pool: a slow one (here: made slow) never holds the event loop."""
    import zlt.serve.app as app_module

    real = app_module.parse_json

    def slow_parse(raw, what="request body"):
        time.sleep(1.5)
        return real(raw, what)

    monkeypatch.setattr(app_module, "parse_json", slow_parse)
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(
        client.post("/v1/specs/validate", headers=AUTH, json={"dataset": {"path": "style"}}).status_code))
    worker.start()
    time.sleep(0.3)  # the validate request is now inside the slow parse
    t = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - t < 0.8
    worker.join(10)
    assert done == [200]


# --- item 4: no 500 ---------------------------------------------------------------------------------------------


def test_a_nul_byte_in_the_registry_path_is_422(client):
    r = client.post("/v1/specs/validate", headers=AUTH,
                    json={"dataset": {"path": "style"}, "output": {"registry": {"path": "a\x00b"}}})
    assert r.status_code == 422 and "output.registry.path" in r.text


def test_a_nul_byte_in_a_file_name_route_is_400(zlt_home: Path, tmp_path: Path, data_root: Path):
    from zlt.artifacts import collect_artifact

    aid = collect_artifact(make_job_dir(tmp_path / "job"), home=zlt_home).id
    with serve_client(zlt_home, [data_root]) as c:  # raises, as the TestClient does, on a 500
        assert c.get(f"/v1/artifacts/{aid}/files/lora.safetensors", headers=AUTH).status_code == 200
        for url in (f"/v1/artifacts/{aid}/files/lora.safetensors%00.txt", f"/v1/generations/{JOB}/files/a%00.png",
                    f"/v1/artifacts/{aid}?x=%00"):
            r = c.get(url, headers=AUTH)
            assert r.status_code == 400 and "NUL" in r.json()["message"], (url, r.text)


@pytest.fixture
def job_client(zlt_home: Path, tmp_path: Path, data_root: Path):
    from zlt.jobs.store import JobStore

    store = JobStore(zlt_home)
    store.create(new_job(JOB, job_dir=str(make_job_dir(tmp_path / "job")), gpus_needed=0, spec_json="{}"))
    store.close()
    with serve_client(zlt_home, [data_root]) as c:
        yield c


@pytest.mark.parametrize("header", [b"9" * 5000, b"9" * 20, "²".encode("latin-1"), "²".encode(), "٣".encode()])
def test_a_last_event_id_no_seq_could_be_is_400(job_client, header):
    r = job_client.get(f"/v1/jobs/{JOB}/events?follow=false", headers=[*AUTH.items(), ("Last-Event-ID", header)])
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["message"], r.text


def test_an_ordinary_or_meaningless_last_event_id_still_streams(job_client):
    for header in ("0", "x", "-1"):
        r = job_client.get(f"/v1/jobs/{JOB}/events?follow=false", headers={**AUTH, "Last-Event-ID": header})
        assert r.status_code == 200 and r.text.startswith("retry:")
    assert job_client.get(f"/v1/jobs/{JOB}/events?follow=false&after={'9' * 5000}", headers=AUTH).status_code == 422


def test_resume_point_refuses_digits_no_seq_could_be():
    assert resume_point(str(2**63 - 1), 0) == 2**63 - 1
    for text in (str(2**63), "9" * 5000, "²", "１２"):
        with pytest.raises(BadInputError):
            resume_point(text, 0)


# --- minor: one content-type rule, NaN, the API's words ---------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/specs/validate", "/v1/specs/render", "/v1/jobs", "/lora/train",
                                   "/v1/generations", "/v1/transfers", "/v1/artifacts/x/evaluate",
                                   "/v1/artifacts/x/retrain"])
@pytest.mark.parametrize("ctype", ["text/plain", "text/xml", "application/x-www-form-urlencoded"])
def test_every_json_route_answers_415_to_another_content_type(client, route, ctype):
    r = client.post(route, headers={**AUTH, "content-type": ctype}, content=b'{"dataset": {"path": "style"}}')
    assert r.status_code == 415, (route, r.text)
    assert r.json()["error"] == "unsupported_media_type"


def test_the_openapi_document_lists_415_for_every_route_with_a_body(client):
    doc = client.get("/openapi.json", headers=AUTH).json()
    ops = [(path, m, op) for path, item in doc["paths"].items() for m, op in item.items() if "requestBody" in op]
    assert len(ops) >= 8
    assert [(path, m) for path, m, op in ops if "415" not in op["responses"]] == []


def test_json_with_parameters_or_no_content_type_is_read(client):
    body = json.dumps({"dataset": {"path": "style"}}).encode()
    for headers in ({"content-type": "application/json; charset=utf-8"}, {}):
        r = client.post("/v1/specs/validate", headers={**AUTH, **headers}, content=body)
        assert r.status_code == 200, r.text


def test_nan_and_infinity_are_named_as_not_finite(client):
    r = client.post("/v1/specs/validate", headers={**AUTH, "content-type": "application/json"},
                    content=b'{"dataset": {"path": "style"}, "training": {"learning_rate": NaN}}')
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "training.learning_rate", r.text
    assert "finite" in r.json()["errors"][0]["message"]
    r = client.post("/v1/generations", headers={**AUTH, "content-type": "application/json"},
                    content=b'{"loras": [{"artifact": "x"}], "prompts": ["a"], "guidance": NaN, "seed": Infinity}')
    assert r.status_code == 422 and "<= 30" not in r.text
    assert {e["path"] for e in r.json()["errors"]} == {"guidance", "seed"}
    r = client.post("/v1/specs/render?vram_gb=nan", headers=AUTH, json={"dataset": {"path": "style"}})
    assert r.status_code == 422 and "finite" in r.text and "greater than" not in r.text


def test_the_transfer_request_form_field_is_parsed_like_a_body(client):
    png = ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")
    r = client.post("/v1/transfers", headers=AUTH, files={"request": (None, "[" * 100_000), "image": png})
    assert r.status_code in (400, 422) and "nested deeper" in r.text, r.text
    r = client.post("/v1/transfers", headers=AUTH,
                    files={"request": (None, '{"loras": [{"artifact": "x"}], "guidance": NaN}'), "image": png})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "guidance" and "finite" in r.text


def test_nan_in_mcp_arguments_is_named_too(zlt_home: Path):
    tool = next(t for t in make_tools(zlt_home, Fence(None, None)) if t.name == "validate_spec")
    result, is_error = call(tool, {"spec": {"training": {"learning_rate": float("nan")}}})
    assert is_error and "finite" in json.dumps(result) and "spec.training.learning_rate" in json.dumps(result)


def test_api_text_names_fields_not_flags_and_hides_the_home(tmp_path: Path):
    assert api_text("--steps and --more-steps: give one") == "steps and more_steps: give one"
    assert api_text("--size 17: must be a multiple of 16") == "size 17: must be a multiple of 16"
    assert api_text("e.g. --set dataset.resolution=768") == "e.g. set dataset.resolution to 768 in the spec"
    assert api_text("restart with --data-root DIR") == "restart with --data-root DIR"  # the operator's flag stays
    assert api_text(f"no job 'x' in {tmp_path}", tmp_path) == "no job 'x' in <ZLT_HOME>"
    assert api_text("/data/my--size/x") == "/data/my--size/x"


def test_the_http_api_and_mcp_never_cite_cli_flags_for_a_retrain(zlt_home: Path, client):
    r = client.post("/v1/artifacts/x/retrain", headers=AUTH, json={"steps": 5, "more_steps": 5})
    assert r.status_code in (400, 404, 422) and "--" not in json.dumps(r.json()), r.text
    r = client.get("/v1/jobs/nosuchjob", headers=AUTH)
    assert r.status_code == 404 and str(zlt_home) not in r.text and "<ZLT_HOME>" in r.text
    tool = next(t for t in make_tools(zlt_home, Fence(None, None)) if t.name == "retrain_lora")
    result, is_error = call(tool, {"artifact": "x", "steps": 5, "more_steps": 5})
    assert is_error and "--" not in result["message"] + result["hint"], result


# --- item 9 and the MCP minor: no traceback, no silent drop -----------------------------------------------------


class _Args(ToolArgs):
    path: str = ""


@pytest.mark.parametrize("exc", [ValueError("embedded null byte"), KeyError("x"), RuntimeError("boom"),
                                 RecursionError("deep"), OSError(36, "File name too long")])
def test_an_unexpected_exception_in_a_tool_is_the_error_object(exc, capsys):
    def run(_args):
        raise exc

    result, is_error = call(Tool("style_transfer", "t", _Args, run), {"path": "a\x00b"})
    assert is_error and set(result) >= {"error", "message", "hint"} and result["ok"] is False
    assert result["error"] == "internal_error" and type(exc).__name__ in result["message"]
    assert "Traceback" not in json.dumps(result)
    assert "Traceback" in capsys.readouterr().err  # the operator still sees where it failed


def nested_call(depth: int, rid: object = 7) -> str:
    """A tools/call line whose arguments nest `depth` lists deep (written out: json.dumps stops near 1000)."""
    head = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                       "params": {"name": "validate_spec", "arguments": {"spec": {"x": 0}}}})
    return head.replace('"x": 0', '"x": ' + "[" * depth + '{"a": 1}' + "]" * depth)


def library_error(line: str) -> Exception:
    import mcp_types as types

    try:
        types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception as e:  # noqa: BLE001 - exactly what the stdio transport hands the server
        return e
    raise AssertionError("the MCP library read the line")


@pytest.mark.parametrize("depth,rid", [(200, 7), (5000, "req-1")])
def test_a_call_nested_too_deep_for_the_mcp_library_gets_an_answer(depth, rid):
    reply = unreadable_reply(library_error(nested_call(depth, rid)))
    assert reply is not None and reply["id"] == rid and reply["error"]["code"] == -32600
    assert "nests deeper" in reply["error"]["message"]


def test_garbage_lines_get_parse_errors_and_notifications_nothing():
    assert unreadable_reply(library_error("{not json"))["error"]["code"] == -32700
    note = json.loads(nested_call(300))
    note.pop("id")
    assert unreadable_reply(library_error(json.dumps(note))) is None


def test_the_stdio_server_answers_the_dropped_line(zlt_home: Path):
    """End to end through the server loop: the transport's exception item comes back as a JSON-RPC error."""
    import anyio

    from zlt.serve.mcp_server import build_server, serve_streams

    server = build_server(zlt_home, Fence(None, None))

    async def main() -> object:
        to_server, server_reads = anyio.create_memory_object_stream(10)
        server_writes, from_server = anyio.create_memory_object_stream(10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_streams, server, server_reads, server_writes)
            await to_server.send(library_error(nested_call(200, 42)))
            with anyio.fail_after(5):
                answer = await from_server.receive()
            await to_server.aclose()
        return answer.message

    message = anyio.run(main)
    assert message.id == 42 and "nests deeper" in message.error.message
