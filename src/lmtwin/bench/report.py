"""The markdown report and the PNG plots of ``lmtwin bench tasks``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

DEPARTURES = [
    "- Hare-Lynx: no action (HDTwinGen passes the year as one; a calendar year carries no "
    "dynamics, and a twin should not extrapolate on it).",
    "- Baselines are fitted on the train split only, with no early stopping on the "
    "validation split; lmtwin uses the validation split's first steps to learn its "
    "combination weights and intervals.",
    "- LLMTime-style forecaster: the variables of one time step are written side by side "
    "and forecast in one call (LLMTime forecasts each variable in its own call); its "
    "history is the test trajectory so far (at most 20 steps), so its first step is "
    "persistence; precision 3 digits, scaler alpha 0.95, beta 0.3. A reply it cannot "
    "parse falls back to persistence and is counted.",
    "- GRU and Transformer: a history shorter than the window is padded with its first "
    "row; the Transformer has d_model 64, 2 layers, 4 heads (the protocol fixes only "
    "its window).",
    "- Plankton: integrated with LSODA (rtol 1e-10) at t = 0..100; the largest gap to the "
    "CSV is in the task's data line. COVID: initial infections scaled to the population "
    "size; E-I is covasim's exposed minus infectious.",
    "- Scenarios: errors are relative (patients differ in size by orders of magnitude).",
]


def _num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def _ci(cell: dict[str, float] | None) -> str:
    if not cell:
        return "-"
    ci = cell.get("ci95", float("nan"))
    return _num(cell["mean"]) + (f" ± {_num(ci, 2)}" if math.isfinite(ci) else "")


def task_table(r: dict[str, Any]) -> list[str]:
    scale = r["mse_scale"]
    unit = " (x1e6)" if scale != 1 else ""
    lines = [f"| method | one-step MSE{unit} | nMSE | rollout MSE{unit} | coverage | "
             "width / sd | s / pred | LM tokens / pred | fit s | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(r["methods"], key=lambda m: (not m.startswith("lmtwin"),
                                               r["methods"][m].get("mse", {}).get("mean", 1e99)))
    for m in order:
        row = r["methods"][m]
        fit = row.get("fit_seconds", row.get("run_seconds"))
        fails = f" ({row['failures']} fallbacks)" if row.get("failures") else ""
        if row.get("rollout_failures"):
            fails += f" ({row['rollout_failures']} rollout steps without a forecast)"
        lines.append(
            f"| {m}{fails} | {_ci(row.get('mse'))} | {_ci(row.get('nmse'))} | "
            f"{_ci(row.get('rollout_mse'))} | "
            f"{_num(row.get('coverage', {}).get('mean'), 3)} | "
            f"{_num(row.get('width_over_sd', {}).get('mean'), 3)} | "
            f"{_num(row.get('seconds_per_prediction', {}).get('mean'), 2)} | "
            f"{_num(row.get('tokens_per_prediction', {}).get('mean'), 4)} | "
            f"{_num(fit, 3)} | {row['seeds']} |")
    for m, err in r.get("errors", {}).items():
        lines.append(f"| {m} | not run: {err} | | | | | | | | |")
    return lines


def scenario_table(s: dict[str, Any]) -> list[str]:
    lines = ["| method | error before | first 5 after | last 10 after | back within 1.5x "
             "after (obs) | refit s |", "|---|---|---|---|---|---|"]
    for m, row in s["summary"].items():
        rec = row["recovery_observations"]
        lines.append(f"| {m} | {_num(row['pre_level'], 3)} | {_num(row['post_first5'], 3)} | "
                     f"{_num(row['post_last10'], 3)} | "
                     f"{'never' if rec is None else rec}"
                     f"{' ✓' if row['recovered_within_20'] else ''}"
                     f" | {_num(row.get('refit_seconds'), 3)} |")
    for m, err in s.get("errors", {}).items():
        lines.append(f"| {m} | not run: {err} | | | | |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [
        "# lmtwin on the literature's tasks", "",
        f"Run {results['date']} UTC with `{results['command']}`, in "
        f"{results['seconds'] / 60:.1f} minutes on this 2-core machine (shared), language "
        f"model `{results['backend']}` (2 threads). Peak memory of the process: "
        f"{results.get('peak_rss_mb', 0):.0f} MB.", "",
    ]
    if cfg["quick"]:
        s = cfg["sizes"]
        lines += [
            f"**Quick run**, smaller than the protocol: seeds {cfg['seeds']} (the protocol: "
            f"10..19), language-model methods on the first {cfg['lm_seeds']} seed(s) only; "
            f"cancer {s['patients'][0]}/{s['patients'][1]}/{s['patients'][2]} "
            f"train/validation/test patients (protocol 1000 each), COVID "
            f"{s['covid_trajectories']} trajectories per split of a "
            f"{s['covid_population']:,}-person population (protocol 24 of 1,000,000); the test "
            f"score covers the first {s['test_trajectories']} test trajectory(ies), first "
            f"{s['test_steps']} steps; baselines trained briefly "
            f"({cfg['train_steps']}); encoder tuned {cfg['tune_steps']} steps; retrieval k = "
            f"{cfg['k']} examples in the language model's prompt; tuned retrieval only on "
            f"{', '.join(cfg['tuned_tasks'] or ['every task'])}; rollouts of the methods "
            "that call the language model are skipped.",
            "",
        ]
    lines += [
        "The metric is the protocol's: one-step-ahead, teacher-forced MSE on raw states of "
        "the test split, `pred[0] = x[0]` included, mean ± 95% t-interval over seeds. "
        "nMSE divides each variable's error by its variance over all splits. "
        "Coverage and width (in standard deviations of the variable) are for the twin's "
        "90% conformal intervals. Each method predicts a step before it observes it. "
        "lmtwin variants: `lmtwin` is the twin's combination (persistence, the numeric "
        "in-context learner and the language model, Hedge weights), `lmtwin-llm` the language "
        "model alone, `lmtwin-numeric` the numeric in-context learner (LocalRidge) alone; all "
        "three come from the same twin calls, with `[raw]` (standardised features) or "
        "`[tuned]` (the CALM-DT set encoder fine-tuned on the train split) retrieval. The "
        "twin observed the train split and the first validation steps; it keeps observing "
        "the test stream after each prediction (online, as a twin runs), while baselines "
        "keep their train-split fit. `fit s` is the training time of a baseline and, for "
        "lmtwin rows, the twin's whole run (observing the train split, tuning, streaming); "
        "`s / pred` of lmtwin rows is the twin's whole prediction (every predictor in it).",
        "",
        "## Summary", "",
        "| task | best baseline | its MSE | lmtwin[raw] / best | lmtwin[tuned] / best | "
        "LM weight share (raw, tuned) |", "|---|---|---|---|---|---|",
    ]
    for name, r in results["tasks"].items():
        if "error" in r:
            lines.append(f"| {name} | not run: {r['error']} | | | | |")
            continue
        best = r["best_baseline"]
        best_mse = r["methods"][best]["mse"]["mean"] if best else None
        ratio = r["ratio_to_best_baseline"]
        share = r["lm_weight_share"]
        lines.append(f"| {name} | {best} | {_num(best_mse)} | {_num(ratio.get('lmtwin[raw]'), 3)}"
                     f" | {_num(ratio.get('lmtwin[tuned]'), 3)} | "
                     f"{_num(share.get('raw'), 2)}, {_num(share.get('tuned'), 2)} |")
    lines += ["", "Target: lmtwin's combination at or below the best baseline (ratio <= 1).", ""]
    for name, r in results["tasks"].items():
        lines += [f"## {name}", ""]
        if "error" in r:
            lines += [f"Not run: {r['error']}", ""]
            continue
        info = ", ".join(f"{k}: {v}" for k, v in r["info"].items())
        if info:
            lines += [f"Data: {info}.", ""]
        if r.get("reused_deterministic"):
            lines += ["The data do not depend on the seed and decoding is greedy, so lmtwin's "
                      "raw-retrieval numbers are computed once and repeated for the other "
                      "seeds.", ""]
        lines += task_table(r)
        lines += ["", f"![{name}]({name}.png)", ""]
    if results.get("scenarios"):
        lines += [
            "## Continual-update scenarios", "",
            "A twin warmed up on the old system predicts each day of one patient before the "
            "change and one after it, observing each day after predicting it; nothing in it "
            "is retrained. Error: squared relative error of the tumour volume v. Recovery: "
            "observations after the change until the mean error of the last 5 is back "
            "within 1.5x of the level before the change (target: within 20, ✓; the stream "
            f"after the change is {results['scenario_sizes']['post_steps']} observations "
            f"long, after {results['scenario_sizes']['pre_steps']} before it and "
            f"{results['scenario_sizes']['warm_patients']} warm-up patients). Baselines "
            "are kept as fitted before the change, or refitted every "
            f"{results['scenario_sizes']['refit_every']} observations on everything seen "
            "(actions not yet in the schema taken as 0); refit time is their cost.", "",
        ]
        for name, s in results["scenarios"].items():
            lines += [f"### {name}: {s.get('title', '')}", ""]
            if "error" in s:
                lines += [f"Not run: {s['error']}", ""]
                continue
            w = ", ".join(f"{k} {v:.2f}" for k, v in s["weights_after"].items())
            lines += [*scenario_table(s), "", f"Combination weights at the end: {w}.", ""]
        lines += ["![scenarios](scenarios.png)", ""]
    lines += ["## Departures from the protocol", "", *DEPARTURES, ""]
    lines += ["## Full protocol", "", results.get("full_protocol_note", ""), ""]
    return "\n".join(lines)


def plot_task(r: dict[str, Any], path: Path) -> Path:
    """One test trajectory: truth, one-step predictions with the twin's intervals, and
    free-running rollouts."""
    plot = r["plot"]
    truth = np.array(plot["truth"])
    states = plot["states"]
    methods = plot["methods"]
    best = r.get("best_baseline")
    twin = next((m for m in ("lmtwin[raw]", "lmtwin[tuned]") if m in methods), None)
    fig, axes = plt.subplots(len(states), 2, figsize=(11, 2.6 * len(states)), squeeze=False)
    t = np.arange(len(truth))
    for j, s in enumerate(states):
        ax = axes[j][0]
        ax.plot(t, truth[:, j], "k.-", lw=1, ms=3, label="actual")
        if twin:
            p = np.array(methods[twin]["pred"], dtype=float)
            ax.plot(t, p[:, j], "C0-", label=f"{twin} one-step")
            span = float(np.ptp(truth[:, j])) or 1.0
            lim = (truth[:, j].min() - 2 * span, truth[:, j].max() + 2 * span)
            lo = np.clip(np.array(methods[twin]["lower"], dtype=float), *lim)
            hi = np.clip(np.array(methods[twin]["upper"], dtype=float), *lim)
            ax.fill_between(t, lo[:, j], hi[:, j], color="C0", alpha=0.2, label="90% interval")
        if best and best in methods:
            ax.plot(t, np.array(methods[best]["pred"])[:, j], "C1--", label=f"{best} one-step")
        ax.set_ylabel(s)
        ax.set_title(f"{r['task']}: {s}, one-step (teacher-forced)", fontsize=9)
        ax = axes[j][1]
        ax.plot(t, truth[:, j], "k.-", lw=1, ms=3, label="actual")
        for k, (m, d) in enumerate(sorted(methods.items())):
            if d.get("rollout") is not None and (m in (best, "lmtwin-numeric[raw]", twin)
                                                 or m in ("sindy", "dynode")):
                span = float(np.ptp(truth[:, j])) or 1.0
                run = np.clip(np.array(d["rollout"], dtype=float)[:, j],
                              truth[:, j].min() - 2 * span, truth[:, j].max() + 2 * span)
                ax.plot(t, run, f"C{k % 10}-", lw=1, label=m)
        ax.set_title(f"{r['task']}: {s}, free-running rollout", fontsize=9)
        if j == 0:
            axes[j][0].legend(fontsize=7)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_scenarios(scenarios: dict[str, Any], path: Path) -> Path:
    """Error curves (rolling mean of 5) before and after each change."""
    names = [n for n, s in scenarios.items() if "curves" in s]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.8 * max(len(names), 1), 3.6),
                             squeeze=False)
    for i, n in enumerate(names):
        s = scenarios[n]
        ax = axes[0][i]
        for k, (m, curve) in enumerate(s["curves"].items()):
            if m.endswith("(kept)") and not m.startswith("ridge"):
                continue
            c = np.asarray(curve)
            smooth = np.array([c[max(0, j - 4) : j + 1].mean() for j in range(len(c))])
            style = "-" if m.startswith("lmtwin") else "--"
            ax.plot(smooth, style, color=f"C{k % 10}", lw=1.2, label=m)
        ax.axvline(s["n_pre"] - 0.5, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(s["title"], fontsize=9)
        ax.set_xlabel("prediction (change at the line)")
        if i == 0:
            ax.set_ylabel("squared relative error of v")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
