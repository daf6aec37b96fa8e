"""The report of ``lmtwin bench cooperate``: markdown tables, plain verdicts, PNG plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _ci(r: Mapping[str, Any], digits: int = 1) -> str:
    return f"{r['mean']:.{digits}f} [{r['lower']:.{digits}f}, {r['upper']:.{digits}f}]"


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return not (a["lower"] > b["upper"] or b["lower"] > a["upper"])


def _verdict(name_a: str, a: Mapping[str, Any], name_b: str, b: Mapping[str, Any],
             diff: Mapping[str, Any]) -> str:
    better = a["mean"] > b["mean"]
    sep = "do not overlap" if not _overlap(a, b) else "overlap"
    paired = ("excludes 0" if diff["lower"] > 0 or diff["upper"] < 0 else "includes 0")
    word = "beats" if better else "does not beat"
    return (f"- {name_a} {word} {name_b}: {a['mean']:.1f} vs {b['mean']:.1f}; the two 95% "
            f"intervals {sep}; the paired difference {_ci(diff, 2)} {paired}.")


def _seeds(r: Mapping[str, Any]) -> str:
    """The objective of each training seed (over the same held-out episodes)."""
    xs = r.get("per_seed", [])
    return ", ".join(f"{x:.0f}" for x in xs) if len(xs) > 1 else "-"


def _seconds(xs: Sequence[float]) -> str:
    return f"{float(np.median(xs)):.0f}" if xs else "-"


def _credit(c: Mapping[str, Any]) -> list[str]:
    agents = list(c["twin"]["values"])
    lines = ["| agent | Shapley credit on the twin | on the true simulator |", "|---|---|---|"]
    for a in agents:
        lines.append(f"| {a} | {c['twin']['values'][a]:.1f} | "
                     f"{c['true simulator']['values'][a]:.1f} |")
    for key, label in (("v_all", "v(all agents act)"), ("v_none", "v(none act: default)")):
        lines.append(f"| {label} | {c['twin'][key]:.1f} | {c['true simulator'][key]:.1f} |")
    lines.append(f"| sum of credit - (v(all) - v(none)) | {c['twin']['gap']:.2g} | "
                 f"{c['true simulator']['gap']:.2g} |")
    return lines


def cancer_section(r: Mapping[str, Any], sizes: Mapping[str, Any]) -> list[str]:
    m = r["methods"]
    lines = [
        "## Cancer: a chemo agent and a radio agent",
        "",
        f"Twin: {sizes['cancer_twin_patients']} patients x 60 days under the protocol's "
        "treatment policy, persistence + the numeric learner, each transition scored as it "
        "arrived (Hedge weights and conformal intervals learnt). Agents: tabular Q-learning "
        "on (v, c, chemo so far, radio so far) cut at quantiles into 8 x 3 x 3 x 3 bins, "
        "actions chemo {0, 5} mg and radio {0, 2} Gy a day, "
        f"{sizes['cancer_episodes']} episodes of {sizes['cancer_horizon']} days on the twin, "
        f"{sizes['seeds']} training seeds. Scored on the true simulator, "
        f"{sizes['held_out']} held-out patients (seeds 1000+), "
        f"{sizes['cancer_horizon']} days each.",
        "",
        "Objective (higher is better; the same object gives the agents their rewards): per "
        "day -v/100 (tumour, physical, both agents), -0.05 per mg chemo and -0.1 per Gy "
        "radio (toxicity, abstract, the giver), -1 per mg or Gy beyond budgets of 150 mg "
        "and 60 Gy (abstract), -sigma_v/100 (the twin's uncertainty, computational; 0 on "
        "the true simulator). Cooperative: R_i' = R_i + 0.5 R_j; independent: R_i' = R_i.",
        "",
        "| method | true objective, mean [95% CI] | per training seed | final volume (cm3) "
        "| chemo (mg) | radio (Gy) | training s / seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in m.items():
        secs = r["training_seconds"].get(name, [])
        lines.append(f"| {name} | {_ci(x)} | {_seeds(x)} | {x['final_volume']:.1f} | "
                     f"{x['chemo_mg']:.0f} | {x['radio_gy']:.0f} | {_seconds(secs)} |")
    p = r["paired"]
    lines += ["", "Paired differences on the same patients (95% CI):", ""]
    lines += [f"- {k}: {_ci(v, 2)}" for k, v in p.items()]
    lines += ["", "Verdicts:", "",
              _verdict("cooperative", m["cooperative (beta 0.5)"], "independent",
                       m["independent (beta 0)"], p["cooperative - independent"]),
              _verdict("cooperative", m["cooperative (beta 0.5)"], "the protocol policy",
                       m["protocol policy"], p["cooperative - protocol"])]
    opt = "intervene optimiser (open-loop plan on the twin)"
    if opt in m:
        lines.append(f"- the intervene stage's optimiser (CMA-ES, one open-loop plan a "
                     f"patient on the twin, doses held over 15-day blocks): {_ci(m[opt])}.")
    gap = p["trained on truth - trained on twin"]
    lines.append(f"- the twin's cost to control quality (trained on the true simulator minus "
                 f"trained on the twin, same settings): {_ci(gap, 2)}.")
    lines += ["", "Shapley credit (cooperative agents, first seed; coalition value = mean "
              "objective over the same patients and seeds when only its agents act and the "
              "others give nothing; exact, 2 agents):", ""]
    lines += _credit(r["credit"])
    return lines


def grid_section(r: Mapping[str, Any], sizes: Mapping[str, Any]) -> list[str]:
    m = r["methods"]
    lines = [
        "## Microgrid: battery, generator and demand response",
        "",
        f"Twin: {sizes['grid_twin_days']} days of the real grid run with random actions at "
        "the agents' levels, scored as they arrived. Contexts (advanced by the clock): the "
        "hour and the operator's usual net load for this hour and the next (a profile that "
        "does not follow a drift). States: net load, battery energy, CO2 so far. Agents "
        "observe hour, net load, battery and CO2. Battery {-15, 0, 15} kW, "
        "generator {0, 15, 30} kW, demand response {0, 10} kW; Q-learning on (hour, net, "
        "soc, co2) in 6 x 4 x 4 x 4 bins at the system's thresholds (hours 6, 10, 14, 17, "
        "21; net 20, 35, 45 kW; battery 10, 25, 45 kWh; CO2 150, 250, 300 kg), "
        f"{sizes['grid_episodes']} days on the twin, "
        f"{sizes['seeds']} seeds; scored on {sizes['held_out']} held-out true days.",
        "",
        "Objective: -3 per kW unserved (physical), -0.1 per kWh under a 10 kWh battery "
        "reserve (physical, battery); grid bill at the tariff (0.10 night, 0.22 day, 0.45 "
        "17-21 h), fuel 0.28 per kWh, discomfort 0.12 per kW shed, 0.5 per kg CO2 beyond a "
        "300 kg daily cap (abstract); battery wear and the twin's uncertainty "
        "(computational). Crisis weights: (w_p, w_a, w_c) = (3, 1, 1) while the net load "
        "exceeds 40 kW or the battery holds under 8 kWh, else (1, 1, 1). The table scores "
        "every method with the crisis-weighted objective; the next column with fixed "
        "weights (1, 1, 1).",
        "",
        "| method | true objective (crisis weights) [95% CI] | per training seed | with fixed "
        "weights | unserved (kWh/day) | bill | CO2 (kg/day) | training s / seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, x in m.items():
        secs = r["training_seconds"].get(name, [])
        lines.append(f"| {name} | {_ci(x)} | {_seeds(x)} | {r['fixed_weight_score'][name]:.1f} | "
                     f"{x['unserved_kwh']:.1f} | {x['bill']:.1f} | {x['co2_kg']:.0f} | "
                     f"{_seconds(secs)} |")
    p = r["paired"]
    lines += ["", "Paired differences on the same days (95% CI):", ""]
    lines += [f"- {k}: {_ci(v, 2)}" for k, v in p.items()]
    coop = m["cooperative (beta 0.5), crisis weights"]
    lines += ["", "Verdicts:", "",
              _verdict("cooperative", coop, "independent",
                       m["independent (beta 0), crisis weights"], p["cooperative - independent"]),
              _verdict("cooperative", coop, "the hand-written rules", m["hand-written rules"],
                       p["cooperative - hand-written"]),
              _verdict("crisis weights", coop, "fixed weights",
                       m["cooperative (beta 0.5), fixed weights"], p["crisis - fixed weights"]),
              f"- the twin's cost to control quality (trained on the true simulator minus "
              f"trained on the twin): {_ci(p['trained on truth - trained on twin'], 2)}."]
    d = r["drift"]
    lines += ["", "### Drift: the true load grows by 30% mid-run", "",
              f"The real grid, run by the cooperative agents (10% exploration), fed "
              f"{sizes['drift_days']} days to the twin (no retraining of the twin); the agents "
              f"then went on learning on it for {sizes['drift_episodes']} days (or were frozen). "
              f"Scored on {sizes['held_out']} held-out days of the drifted true grid.", "",
              "| after the drift | true objective [95% CI] | per training seed | unserved "
              "(kWh/day) | bill | CO2 |",
              "|---|---|---|---|---|---|"]
    for name in ("frozen (trained before the drift)", "kept learning on the updated twin",
                 "hand-written rules", "no action"):
        x = d[name]
        lines.append(f"| {name} | {_ci(x)} | {_seeds(x)} | {x['unserved_kwh']:.1f} | "
                     f"{x['bill']:.1f} | {x['co2_kg']:.0f} |")
    kept = d["paired: kept learning - frozen"]
    lines += ["", f"- kept learning - frozen (paired): {_ci(kept, 2)}; continued learning "
              f"took {_seconds(d['seconds_continued'])} s a seed."]
    lines += ["", "Shapley credit (cooperative agents, first seed; outside the coalition a unit "
              "does nothing; exact, 3 agents):", ""]
    lines += _credit(r["credit"])
    return lines


def five_section(r: Mapping[str, Any]) -> list[str]:
    ex = r["exact"]
    lines = ["## Shapley credit with five agents: sampled against exact", "",
             "Five hand-written units (two batteries, two generators, demand response) on the "
             f"twin of a five-unit microgrid; each coalition value is the mean objective over "
             f"{r['episodes_per_coalition']} days with common random numbers (the same starts "
             f"and noise for every coalition); exact enumeration of the 32 coalitions took "
             f"{r['seconds_exact']:.0f} s. Sampled: random orders, each with its reverse.", "",
             "| agent | exact | " + " | ".join(f"{m} orders" for m in r["sampled"]) + " |",
             "|---|---|" + "---|" * len(r["sampled"])]
    for a, v in ex["values"].items():
        lines.append(f"| {a} | {v:.2f} | " + " | ".join(
            f"{s['values'][a]:.2f}" for s in r["sampled"].values()) + " |")
    lines.append("| largest error / sum of abs(exact) | - | " + " | ".join(
        f"{s['max_error_over_sum_abs']:.1%}" for s in r["sampled"].values()) + " |")
    lines.append(f"| efficiency: sum - (v(all) - v(none)) | {ex['gap']:.1g} | " + " | ".join(
        f"{s['efficiency_gap']:.1g}" for s in r["sampled"].values()) + " |")
    return lines


def markdown(results: Mapping[str, Any]) -> str:
    sizes = results["sizes"]
    lines = [
        "# Cooperating agents on the twin (`lmtwin bench cooperate`)",
        "",
        f"Run {results['date']} on {results['cores']} cores shared with other work, "
        f"{results['seconds'] / 60:.1f} minutes in all. Agents learn only on the twin (its "
        "fast numeric path: persistence + the local ridge, Hedge-weighted, calibrated "
        "noise; one `Twin.predict` per path-step; no language model); every method is "
        "scored on the TRUE simulator on the same held-out episodes and seeds. Intervals: "
        "95% t-intervals over the held-out episodes (each episode's value averaged over "
        "the training seeds; the spread between seeds is shown beside them). Settings "
        "were fixed before this run and checked on validation seeds (500+), not on the "
        "scored seeds (1000+). Training seconds are "
        "medians over seeds on this shared machine.",
        "",
        "Sizes: " + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ".",
        "",
    ]
    if "cancer" in results:
        lines += [*cancer_section(results["cancer"], sizes), ""]
    if "microgrid" in results:
        lines += [*grid_section(results["microgrid"], sizes), ""]
    if "five_agents" in results:
        lines += [*five_section(results["five_agents"]), ""]
    lines += ["![results](cooperate_results.png)", "", "![learning](cooperate_learning.png)",
              ""]
    return "\n".join(lines)


def plots(results: Mapping[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [(k, results[k]) for k in ("cancer", "microgrid") if k in results]
    written = []
    if systems:
        fig, axes = plt.subplots(1, len(systems), figsize=(7 * len(systems), 4.5),
                                 squeeze=False)
        for ax, (name, r) in zip(axes[0], systems, strict=True):
            items = list(r["methods"].items())
            if name == "microgrid":
                items += [(f"drift: {k}", v) for k, v in r["drift"].items()
                          if isinstance(v, dict) and "per_start" in v]
            # doing nothing is far worse than everything else: it is in the table, and left
            # out here so that the differences that matter stay visible
            items = [(k, v) for k, v in items if not k.split(": ")[-1].startswith("no ")]
            means = [v["mean"] for _, v in items]
            err = np.array([[v["mean"] - v["lower"], v["upper"] - v["mean"]] for _, v in items]).T
            ax.errorbar(means, range(len(items)), xerr=err, fmt="o", color="tab:blue",
                        capsize=3)
            ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=7)
            ax.invert_yaxis()
            ax.grid(axis="x", alpha=0.3)
            ax.set_xlabel("true objective per episode (higher is better), 95% CI")
            ax.set_title(f"{name} (doing nothing: see the table)")
        fig.tight_layout()
        path = out / "cooperate_results.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        fig, axes = plt.subplots(1, len(systems), figsize=(7 * len(systems), 4), squeeze=False)
        for ax, (name, r) in zip(axes[0], systems, strict=True):
            for label, runs in r["returns"].items():
                curve = np.mean(np.asarray(runs, dtype=float), axis=0)
                w = max(1, len(curve) // 20)
                smooth = np.convolve(curve, np.ones(w) / w, mode="valid")
                ax.plot(smooth, label=label)
            ax.set_xlabel("training episode")
            ax.set_ylabel("objective per episode (moving mean)")
            ax.set_title(f"{name}: learning, each on its own training objective")
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = out / "cooperate_learning.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
