"""A twin of a damped cart learns in context from a live stream, on the embedded model.

Run: .venv/bin/python examples/01_quickstart.py
"""

from lmtwin import Twin, Variable

twin = Twin(
    "cart",
    variables=[
        Variable("x", "state", "m", "cart position"),
        Variable("u", "action", "N", "push force", lower=-5, upper=5),
    ],
)  # default predictors: persistence, local ridge, Gemma 3 270M (embedded)

x = 1.0
for t in range(25):
    u = 1.0 if t % 4 == 0 else 0.0
    twin.observe({"x": x, "u": u}, episode="run-1")
    p = twin.predict({"x": x}, {"u": u}, episode="run-1")  # scored when x' arrives
    x = 0.8 * x + 0.5 * u

p = twin.predict({"x": x}, {"u": 1.0})
print(f"next x from {x:.3f} under u=1: {p.mean['x']:.3f} (truth {0.8 * x + 0.5:.3f})")
print("interval:", {k: round(v, 3) for k, v in p.lower.items()},
      {k: round(v, 3) for k, v in p.upper.items()})
print("each predictor:", {n: round(v["x"], 3) for n, v in p.by_predictor.items()})
print("weights:", {n: round(w, 3) for n, w in p.weights.items()})
twin.close()
