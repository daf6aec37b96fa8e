"""MCP with the SDK's own client over stdio (`lmtwin mcp`), and the CLI's approvals."""

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from lmtwin.agent.suite import make_twin

LMTWIN = str(Path(sys.executable).parent / "lmtwin")


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "twins.db"
    make_twin("tank", store=path).close()
    return path


def serve(store, *extra):
    return StdioServerParameters(command=LMTWIN, args=["mcp", "--store", str(store),
                                                      "--time-unit", "minute", *extra])


async def _session(params, work):
    async with Client(params, read_timeout_seconds=120) as client:
        return await work(client)


def run(params, work):
    return anyio.run(_session, params, work)


def test_read_only_by_default(store):
    async def work(client):
        tools = {t.name for t in (await client.list_tools()).tools}
        listing = await client.read_resource("twin://list")
        tank = await client.read_resource("twin://tank")
        state = await client.call_tool("get_state", {"twin": "tank", "variables": ["level"]})
        bad = await client.call_tool("get_state", {"twin": "tank", "variables": ["ghost"]})
        return tools, listing, tank, state, bad

    tools, listing, tank, state, bad = run(serve(store), work)
    assert {"get_state", "predict", "what_if", "time_to", "ask"} <= tools
    assert not tools & {"actuate", "add_variable", "remove_variable", "add_note"}
    assert json.loads(listing.contents[0].text) == ["tank"]
    described = json.loads(tank.contents[0].text)
    assert [v["name"] for v in described["variables"]] == ["level", "valve", "pump"]
    assert state.structured_content["status"] == "done"
    assert set(state.structured_content["result"]["values"]) == {"level"}
    assert bad.is_error and "CallRefused" in bad.content[0].text


def test_writes_go_through_the_approval_queue(store, tmp_path):
    log = tmp_path / "actuator.jsonl"

    async def work(client):
        tools = {t.name for t in (await client.list_tools()).tools}
        queued = await client.call_tool("actuate", {"twin": "tank", "variable": "valve",
                                                    "value": 40, "unit": "%"})
        refused = await client.call_tool("actuate", {"twin": "tank", "variable": "level",
                                                     "value": 1})
        return tools, queued, refused

    tools, queued, refused = run(serve(store, "--writes", "--actuator-log", str(log)), work)
    assert "actuate" in tools and "approve" not in tools  # MCP cannot approve
    out = queued.structured_content
    assert out["status"] == "pending" and out["args"]["value"] == pytest.approx(0.4)
    assert refused.is_error and "state variable" in refused.content[0].text
    assert not log.exists()
    # a person approves from the CLI; only then the actuator runs
    listed = subprocess.run([LMTWIN, "approvals", "--store", str(store), "--twin", "tank"],
                            capture_output=True, text=True, check=True)
    assert out["call_id"] in listed.stdout
    subprocess.run([LMTWIN, "approvals", "--store", str(store), "--twin", "tank",
                    "--approve", out["call_id"], "--actuator-log", str(log)], check=True,
                   capture_output=True)
    assert [json.loads(x)["values"] for x in log.read_text().splitlines()] == [{"valve": 0.4}]
    again = subprocess.run([LMTWIN, "approvals", "--store", str(store), "--twin", "tank",
                            "--approve", out["call_id"]], capture_output=True, text=True)
    assert again.returncode == 1 and "AlreadyDecided" in again.stdout


def test_cli_ask_answers_and_leaves_actuation_pending(store, tmp_path):
    out = subprocess.run([LMTWIN, "ask", "what's the current water level", "--store",
                          str(store), "--twin", "tank", "--time-unit", "minute"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "get_state" in out.stdout and "done" in out.stdout
    out = subprocess.run([LMTWIN, "ask", "open the valve fully", "--store", str(store),
                          "--twin", "tank", "--no-interactive", "--actuator-log",
                          str(tmp_path / "a.jsonl")], capture_output=True, text=True)
    assert "pending" in out.stdout and "waiting for approval" in out.stdout
    assert not (tmp_path / "a.jsonl").exists()
    out = subprocess.run([LMTWIN, "ask", "", "--store", str(store), "--twin", "tank"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "RequestRejected" in out.stdout


def test_forecast_plot(tmp_path):
    from lmtwin.agent import Agent
    from lmtwin.agent.cli import _plot
    from lmtwin.agent.validate import validate

    twin = make_twin("tank")
    agent = Agent(twin, time_unit="minute")
    for tool, args in [("predict", {"horizon": 5}), ("what_if", {"actions": {"valve": 1}})]:
        out = agent.call(tool, args)
        assert _plot(out, tmp_path / f"{tool}.png").stat().st_size > 1000
    assert validate("get_state", {}, twin.schema)
