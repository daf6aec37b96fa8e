"""Variables and knowledge that arrive while the twin runs: no retraining.

Run: .venv/bin/python examples/02_schema_change.py
"""

from lmtwin import LocalRidge, Persistence, Twin, UnknownVariable, Variable

twin = Twin("room", variables=[Variable("temp", "state", "C", "room temperature")],
            predictors=[Persistence(), LocalRidge()], store="room.db")
for t in range(10):
    twin.observe({"temp": 20.0 + 0.1 * t}, episode="day-1", t=float(t))

try:  # strict mode: an unknown variable is a typed error and nothing is stored
    twin.observe({"temp": 21.0, "heater": 1.0}, episode="day-1", t=10.0)
except UnknownVariable as exc:
    print("strict:", exc)

twin.add_variable(Variable("heater", "action", "kW", "heater power", lower=0, upper=3))
twin.add_knowledge("the heater was serviced: it now heats twice as fast")
temp = 21.0
for t in range(10, 40):
    heater = 1.0 if t % 3 == 0 else 0.0
    twin.observe({"temp": temp, "heater": heater}, episode="day-1", t=float(t))
    temp += 0.6 * heater - 0.1 * (temp - 20.0)  # heats, and loses heat to the outside

print("schema version:", twin.schema.version, [c.kind for c in twin.schema.history])
p = twin.predict({"temp": 21.0}, {"heater": 1.0})
print("prediction from 21.0 C with the heater on:", p.by_predictor, "(truth 21.5)")
print("state as of the first change:", twin.state("day-1", as_of=twin.schema.history[1].at))
twin.close()
