"""The operator agent: plain-language requests become validated, approved, audited calls.

    from lmtwin.agent import Agent, LoggingActuator
    agent = Agent(twin, actuator=LoggingActuator(), time_unit="minute")
    reply = agent.ask("open the valve to 40%")     # queued: actuation asks by default
    agent.approve(reply.pending[0].call_id)

Needs the ``agent`` extra (pydantic, pint, lingua, mcp; MiniLM from the ``tune`` extra).
"""

from lmtwin.agent.actuators import Actuator, LoggingActuator
from lmtwin.agent.agent import Agent, Outcome, Reply
from lmtwin.agent.planners import Context, EmbeddedPlanner, Planner, Proposal
from lmtwin.agent.policy import Policy, RateLimiter
from lmtwin.agent.router import Router
from lmtwin.agent.tools import TOOLS, Tool
from lmtwin.agent.validate import Call, validate

__all__ = [
    "TOOLS",
    "Actuator",
    "Agent",
    "Call",
    "Context",
    "EmbeddedPlanner",
    "LoggingActuator",
    "Outcome",
    "Planner",
    "Policy",
    "Proposal",
    "RateLimiter",
    "Reply",
    "Router",
    "Tool",
    "validate",
]
