"""The operator agent on the embedded path: MiniLM routing, parsing, validation, policy,
approvals, audit, bad input. Real parts: MiniLM (loaded once), SQLite files."""

import pytest

from lmtwin import SQLiteStore
from lmtwin.agent import Agent, LoggingActuator, Policy, Router, validate
from lmtwin.agent.extract import extract
from lmtwin.agent.suite import make_twin
from lmtwin.errors import (
    ActionDenied,
    ActuationRateLimited,
    AlreadyDecided,
    CallRefused,
    RequestRejected,
    UnknownApproval,
)


@pytest.fixture(scope="module")
def router():
    return Router()


@pytest.fixture
def tank(tmp_path):
    twin = make_twin("tank", store=tmp_path / "tank.db")
    yield twin
    twin.close()


@pytest.fixture
def agent(tank, router):
    return Agent(tank, actuator=LoggingActuator(), time_unit="minute", router=router)


# --- validation (no model) -------------------------------------------------------------
@pytest.mark.parametrize("tool, args, argument, words", [
    ("nope", {}, None, "no such tool"),
    ("actuate", {"variable": "pressure", "value": 1}, "variable", "unknown variable"),
    ("actuate", {"variable": "level", "value": 50}, "variable", "state variable"),
    ("actuate", {"variable": "valve", "value": 1.5}, "value", "above the upper bound"),
    ("actuate", {"variable": "pump", "value": -1}, "value", "below the lower bound"),
    ("actuate", {"variable": "valve", "value": 40, "unit": "cm"}, "unit", "cannot be expressed"),
    ("actuate", {"variable": "valve", "value": "lots"}, "value", "number"),
    ("actuate", {"variable": "valve", "value": 1, "force": True}, "force", "Extra"),
    ("predict", {"actions": {"level": 3}}, "actions", "state variable"),
    ("what_if", {"actions": {"valve": 2}}, "actions.valve", "above the upper bound"),
    ("time_to", {"variable": "level", "threshold": 500}, "threshold", "above the upper bound"),
    ("optimise", {"variable": "valve", "goal": "maximise"}, "variable", "action variable"),
    ("add_variable", {"name": "level"}, "name", "already has"),
    ("add_variable", {"name": "9bad"}, "name", "invalid variable name"),
    ("update_variable", {"name": "level"}, None, "nothing to change"),
    ("update_variable", {"name": "level", "lower": 300}, None, "lower bound above"),
    ("remove_variable", {"name": "ghost"}, "name", "unknown variable"),
    ("get_history", {"last": 0}, "last", "greater than"),
])
def test_validation_refuses_with_the_reason(tank, tool, args, argument, words):
    with pytest.raises(CallRefused) as info:
        validate(tool, args, tank.schema)
    assert info.value.argument == argument
    assert words.lower() in str(info.value).lower()


def test_validation_converts_units_to_the_variables_own():
    from lmtwin.agent.suite import make_twin

    twin = make_twin("greenhouse", steps=2)
    call = validate("actuate", {"variable": "heater", "value": 1500, "unit": "W"}, twin.schema)
    assert call.args.model_dump() == {"variable": "heater", "value": 1.5, "unit": None}
    tank = make_twin("tank", steps=2)
    call = validate("actuate", {"variable": "valve", "value": 40, "unit": "%"}, tank.schema)
    assert call.args.value == pytest.approx(0.4)


@pytest.mark.parametrize("tool, text, want", [
    ("actuate", "open the valve to 40%", {"variable": "valve", "value": 0.4}),
    ("actuate", "set the pump to 0.5 L/s", {"variable": "pump", "value": 30.0}),
    ("actuate", "open the valve fully", {"variable": "valve", "value": 1.0}),
    ("actuate", "shut the inflow valve", {"variable": "valve", "value": 0.0}),
    ("time_to", "how long before the level reaches 1.5 m", {"variable": "level",
                                                            "threshold": 150.0}),
    ("predict", "forecast the level for the next hour", {"variables": ["level"],
                                                         "horizon": 60}),
    ("what_if", "what if we shut the valve, how does the level evolve over 20 minutes",
     {"actions": {"valve": 0.0}, "horizon": 20, "variables": ["level"]}),
    ("add_note", "remember that the pump was replaced", {"text": "the pump was replaced"}),
])
def test_parser_reads_names_numbers_units_and_durations(tank, tool, text, want):
    assert extract(tool, text, tank.schema, "minute") == want


# --- requests end to end (MiniLM) -------------------------------------------------------
def test_reads_run_at_once(agent):
    reply = agent.ask("what's the current water level")
    [out] = reply.outcomes
    assert (out.tool, out.status) == ("get_state", "done")
    assert set(out.result["values"]) == {"level"}
    reply = agent.ask("forecast the tank level for the next 5 minutes")
    [out] = reply.outcomes
    assert out.tool == "predict" and out.status == "done"
    assert len(out.result["trajectory"]["level"]["median"]) == 6


def test_actuation_waits_for_approval(agent, tank):
    reply = agent.ask("open the valve to 40%")
    [out] = reply.outcomes
    assert out.status == "pending" and out.args == {"variable": "valve", "value": 0.4,
                                                    "unit": None}
    assert agent.actuator.applied == []
    assert [p["call_id"] for p in agent.pending()] == [out.call_id]
    done = agent.approve(out.call_id, by="tester")
    assert done.status == "done"
    assert [a["values"] for a in agent.actuator.applied] == [{"valve": 0.4}]
    with pytest.raises(AlreadyDecided):
        agent.approve(out.call_id)
    with pytest.raises(AlreadyDecided):
        agent.reject(out.call_id)
    with pytest.raises(UnknownApproval):
        agent.approve("no-such-id")
    assert len(agent.actuator.applied) == 1


def test_rejected_call_never_runs_and_pending_survives_a_restart(tmp_path, router):
    path = tmp_path / "t.db"
    twin = make_twin("tank", store=path)
    first = Agent(twin, actuator=LoggingActuator(), time_unit="minute", router=router)
    a = first.ask("shut the inflow valve").outcomes[0]
    b = first.ask("add a context variable called rain in mm").outcomes[0]
    assert (a.status, b.status) == ("pending", "pending")
    twin.close()
    twin = make_twin("tank", store=SQLiteStore(path), steps=0)
    actuator = LoggingActuator()
    second = Agent(twin, actuator=actuator, time_unit="minute", router=router)
    assert {p["call_id"] for p in second.pending()} == {a.call_id, b.call_id}
    assert second.reject(a.call_id, reason="not now").status == "rejected"
    assert second.approve(b.call_id).status == "done"
    assert twin.schema["rain"].role == "context" and twin.schema["rain"].unit == "mm"
    assert actuator.applied == [] and second.pending() == []
    twin.close()


def test_policy_auto_deny_and_rate_limit(tank, router):
    actuator = LoggingActuator()
    agent = Agent(tank, actuator=actuator, time_unit="minute", router=router,
                  policy=Policy({"actuate": "auto", "schema": "deny"}), rate_limit=2)
    assert agent.ask("open the valve fully").outcomes[0].status == "done"
    assert agent.ask("shut the inflow valve").outcomes[0].status == "done"
    with pytest.raises(ActuationRateLimited) as info:
        agent.ask("open the valve to 40%")
    assert info.value.retry_after > 0
    assert len(actuator.applied) == 2
    with pytest.raises(ActionDenied):
        agent.ask("remove the variable pump")
    assert "pump" in tank.schema
    # the budget is counted from the audit log, so a new agent on the twin respects it
    again = Agent(tank, actuator=actuator, time_unit="minute", router=router,
                  policy=Policy({"actuate": "auto"}), rate_limit=2)
    with pytest.raises(ActuationRateLimited):
        again.call("actuate", {"variable": "valve", "value": 0.5})
    with pytest.raises(ValueError):
        Policy({"actuate": "sometimes"})


def test_audit_records_every_step(agent):
    reply = agent.ask("open the valve to 40%")
    call_id = reply.outcomes[0].call_id
    agent.approve(call_id, by="ops")
    with pytest.raises(CallRefused):
        agent.ask("open the valve to 150%")
    events = [(r.payload["event"], r.payload.get("tool")) for r in agent.audit()]
    assert events[:6] == [("request", None), ("proposed", "actuate"), ("validated", "actuate"),
                          ("pending", "actuate"), ("approved", "actuate"),
                          ("executed", "actuate")]
    assert events[-3:] == [("request", None), ("proposed", "actuate"), ("refused", "actuate")]
    approved = [r.payload for r in agent.audit() if r.payload["event"] == "approved"]
    assert approved[0]["by"] == "ops"


@pytest.mark.parametrize("text, error, words", [
    ("", RequestRejected, "empty"),
    ("   ", RequestRejected, "empty"),
    ("x" * 100_000, RequestRejected, "100,000 characters"),
    ("¿Cuál es el nivel del agua ahora?", RequestRejected, "english"),
    ("öffne das Ventil ganz", RequestRejected, "english"),
    ("tell me a joke", RequestRejected, "not understood"),
    ("set the pressure to 3 bar", CallRefused, "unknown variable 'pressure'"),
    ("set the level to 80 cm", CallRefused, "state variable"),
    ("open the valve to 150%", CallRefused, "above the upper bound"),
    ("set the valve to 40 cm", CallRefused, "cannot be expressed"),
    ("remove the variable ghost", CallRefused, "unknown variable"),
])
def test_bad_requests_are_refused_and_change_nothing(agent, tank, text, error, words):
    version, notes = tank.schema.version, len(tank.notes)
    with pytest.raises(error) as info:
        agent.ask(text)
    assert words.lower() in str(info.value).lower()
    assert tank.schema.version == version and len(tank.notes) == notes
    assert agent.actuator.applied == [] and agent.pending() == []


def test_no_actuator_refuses_actuation(tank, router):
    agent = Agent(tank, time_unit="minute", router=router)
    with pytest.raises(Exception) as info:
        agent.ask("open the valve fully")
    assert type(info.value).__name__ == "ToolUnavailable"
    assert agent.pending() == []


def test_notes_run_at_once_and_read_back(agent, tank):
    out = agent.ask("remember that the pump was replaced").outcomes[0]
    assert out.status == "done" and tank.notes[-1].text == "the pump was replaced"
    listed = agent.ask("list the notes").outcomes[0]
    assert listed.result["notes"][-1]["text"] == "the pump was replaced"
