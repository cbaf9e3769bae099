"""Report sections that compare variants at equal cost: the scoreboard and the figures against cost.

Forward passes and FLOPs are the axes of every comparison (they do not depend on the machine); wall
time appears only when :func:`reports.machine.wall_clock_verdict` says the runs shared a quiet machine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from . import plots
from .cost_plots import scatter_front_figure
from .document import Figure, Note, Section, Table
from .labels import reference_text
from .load import Results
from .machine import wall_clock_verdict
from .scoreboard import accuracy_column, best_rows, scoreboard_values
from .stats import performance_profile, performance_ratios, sig3

COST_AXES = {"forward_passes": "forward passes (forward only)", "flops": "FLOPs (FlopCounterMode)"}
CONVENTION = ("Forward passes count forward passes only, as each estimator declares them per step (BP: 1, "
              "its backward not counted; ULR/ALR: 1 clean + the noisy passes; ES: K + 1; SPSA: 2n + 1; FG: n); "
              "FLOPs count everything torch's FlopCounterMode measures in a training step (forward, backward, "
              "local VJPs, sketches). docs/RESULTS.md has the definitions.")
_MIB = 2.0**20


def _times(value: float) -> str:
    if value != value:
        return "—"
    return "not reached" if math.isinf(value) else f"{sig3(value)}×"


def _signed(value: float) -> str:
    if value != value:
        return "—"
    return ("+" if value > 0 else "") + sig3(value)


def scoreboard(results: Results, figures: Path) -> Section:
    """Per task one table: a row per variant, accuracy and costs relative to BP, best values in bold."""
    runs = results.runs
    verdict = wall_clock_verdict(runs)
    units = ("forward_passes", "flops", "wall_seconds") if verdict.comparable else ("forward_passes", "flops")
    values = scoreboard_values(runs, units)
    metric = accuracy_column(runs)
    what = "test" if metric.startswith("test") else "validation"
    seeds = sorted(set(values["n"]))
    blocks: list = [Note(_counts_text(results))]
    if seeds == [1]:
        blocks.append(Note("n=1: every variant ran one seed, so no intervals are shown."))
    elif len(seeds) == 1:
        blocks.append(Note(f"n={seeds[0]} seeds per variant; ± is the Student-t 95 % interval over seeds."))
    else:
        blocks.append(Note("± is the Student-t 95 % interval over seeds (the 'seeds' column; none for n=1)."))
    columns = {"label": "variant", "accuracy_text": f"{what} accuracy", "delta_text": "Δ vs BP",
               "forward_passes_text": "forward passes to target ×BP", "flops_text": "FLOPs to target ×BP",
               "wall_seconds_text": "wall s to target ×BP", "memory_text": "peak memory ×BP",
               "cosine_text": "gradient cosine to BP"}
    marks = {"accuracy_text": ("accuracy", True, False), "delta_text": ("delta_bp", True, True),
             "forward_passes_text": ("forward_passes_to_target_x_bp", False, False),
             "flops_text": ("flops_to_target_x_bp", False, False),
             "wall_seconds_text": ("wall_seconds_to_target_x_bp", False, False),
             "memory_text": ("memory_x_bp", False, False), "cosine_text": ("grad_cosine", True, True)}
    shown = values.assign(
        accuracy_text=[sig3(m) if h != h else f"{sig3(m)} ± {sig3(h)}" for m, h in zip(values["accuracy"],
                                                                                     values["accuracy_ci"], strict=True)],
        delta_text=[("reference" if ref else _signed(d)) for d, ref in zip(values["delta_bp"], values["is_reference"],
                                                                            strict=True)],
        memory_text=values["memory_x_bp"].map(_times),
        cosine_text=[("—" if c != c else sig3(c)) for c in values["grad_cosine"]],
        **{f"{u}_text": values[f"{u}_to_target_x_bp"].map(_times) for u in units})
    keep = ["label", "accuracy_text", "delta_text", *[f"{u}_text" for u in units], "memory_text", "cosine_text"]
    extra = {}
    if len(seeds) > 1:
        extra["n"] = "seeds"
    if values["not_completed"].any():
        extra["not_completed"] = "not completed"
    targets = runs.groupby("task")["ttt_target"].first()
    for task, group in shown.groupby("task", sort=False):
        frame = group[keep + list(extra)].rename(columns={**columns, **extra}).reset_index(drop=True)
        sub = values.loc[group.index].reset_index(drop=True)
        bold = {(i, columns[name]) for name, (col, higher, skip) in marks.items() if name in keep
                for i in best_rows(sub, col, higher, skip)}
        target = targets.get(task)
        caption = f"{task}" + (f" — target: validation accuracy ≥ {sig3(float(target))}" if target == target else "")
        blocks.append(Table(frame, caption, bold=bold, name="scoreboard"))
    if values["is_reference"].any():
        blocks.append(Note("×BP: the variant's cost or memory divided by BP's (the first row of each task). Cost to "
                           "target: median over seeds of the cumulative cost at the first evaluation reaching the "
                           "target ('not reached': the median seed missed it; — : not recorded). Bold: the best "
                           "value of the column on the task."))
    budget = _budget_text(runs)
    if budget:
        blocks.append(Note(budget))
    blocks += [Note(CONVENTION), Note(verdict.reason)]
    return Section("Scoreboard", blocks)


def _counts_text(results: Results) -> str:
    runs = results.runs
    status = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    text = f"{len(runs)} runs on {runs['task'].nunique()} task(s) read from {results.root}: {status}."
    if results.skipped_files:
        text += f" Skipped {len(results.skipped_files)} file(s) that are not run records: {', '.join(results.skipped_files)}."
    return text


def _budget_text(runs: pd.DataFrame) -> str:
    budgeted = runs.dropna(subset=["budget_amount"])
    if budgeted.empty:
        return ""
    parts = []
    for task, group in budgeted.groupby("task"):
        units = group["budget_unit"].dropna().unique()
        amounts = group["budget_amount"].unique()
        if len(units) == 1 and len(amounts) == 1:
            parts.append(f"{task}: {sig3(float(amounts[0]))} {units[0]}")
    share = f"{len(budgeted)} of {len(runs)} runs"
    reference = next((json.loads(c) for c in runs.get("cfg:budget", pd.Series(dtype=object)).dropna()
                      if isinstance(c, str) and "reference" in c), None)
    source = f" (the cost of the {reference_text(reference['reference'])} run)" if isinstance(reference, dict) else ""
    return f"Equal budget: {share} trained until a compute budget was spent{source}: " + "; ".join(parts) + "."


def accuracy_vs_cost(results: Results, figures: Path) -> Section | None:
    """Final accuracy against the run's total cost, one mark per seed, with the Pareto front per task."""
    done = results.completed
    metric = accuracy_column(done) if not done.empty else "test_accuracy_final"
    data = done.dropna(subset=[metric])
    xs = {"cost_forward_passes": "forward passes (whole run)", "cost_flops": "FLOPs (whole run)"}
    if data.empty:
        return None
    blocks: list = []
    if any(data[x].notna().any() for x in xs):
        path = scatter_front_figure(data, figures / "accuracy_vs_cost.png", xs=xs, y=metric, hue="label", col="task",
                                    ylabel="final test accuracy")
        blocks.append(Figure(_rel(path, figures), "Final accuracy against the compute the run spent, one mark per "
                             "seed; dashed: the Pareto front (no other run is both cheaper and more accurate)."))
    else:
        blocks.append(Note("The records carry no cumulative cost (written before cost was recorded): no "
                           "accuracy-against-cost figure."))
    data = data.assign(peak_mib=data["peak_memory_bytes"] / _MIB)
    if data["peak_mib"].notna().any():
        path = scatter_front_figure(data, figures / "accuracy_vs_memory.png", xs={"peak_mib": "peak memory (MiB)"},
                                    y=metric, hue="label", col="task", ylabel="final test accuracy")
        blocks.append(Figure(_rel(path, figures), "Final accuracy against peak training-step memory, one mark per "
                             "seed; dashed: the Pareto front."))
    return Section("Accuracy against cost and memory", blocks)


def training_against_cost(results: Results, figures: Path) -> Section | None:
    """Accuracy curves against cumulative forward passes / FLOPs, and gradient cosine over training."""
    blocks: list = []
    history = results.history[results.history["status"] == "completed"].dropna(subset=["test_accuracy"])
    for unit, label in COST_AXES.items():
        data = history.dropna(subset=[unit])
        if data.empty or data.groupby("run_id").size().max() < 2:
            continue
        path = plots.line_figure(data, figures / f"accuracy_vs_{unit}.png", x=unit, y="test_accuracy", hue="label",
                                 col="task", per_seed=True, logx=True, markers=False, xlabel=f"cumulative {label}",
                                 ylabel="test accuracy")
        blocks.append(Figure(_rel(path, figures), f"Test accuracy during training against cumulative {label}, one "
                             "line per seed."))
    points = results.grad_points[results.grad_points["status"] == "completed"].dropna(subset=["cosine"])
    if not points.empty and points.groupby("run_id").size().max() >= 2:
        path = plots.line_figure(points, figures / "gradient_cosine_over_training.png", x="step", y="cosine",
                                 hue="label", col="task", xlabel="optimizer step", ylabel="cosine to BP gradient")
        blocks.append(Figure(_rel(path, figures), "Cosine between the estimate and the BP gradient on the same batch "
                             "during training (mean over seeds, band = 95% CI)."))
    return Section("Training against cost", blocks) if blocks else None


def cost_profile(results: Results, figures: Path) -> Section | None:
    """Performance profiles on forward passes and FLOPs to target (the hardware-independent axes)."""
    runs = results.runs
    if runs["ttt_target"].isna().all():
        return None
    blocks: list = []
    for unit, column in (("forward_passes", "ttt_forward_passes"), ("flops", "ttt_flops")):
        recorded = runs[(runs["status"] == "completed") & runs["ttt_steps"].notna()]
        if recorded.empty or recorded[column].isna().any():
            continue
        times = runs.assign(_t=runs[column].where(runs["status"] == "completed"))
        ratios = performance_ratios(times, problem="task", solver="label", time="_t")
        if ratios.empty:
            continue
        profile = performance_profile(ratios)
        path = plots.line_figure(profile, figures / f"performance_profile_{unit}.png", x="tau", y="fraction",
                                 hue="solver", logx=bool(profile["tau"].max() > 4), drawstyle="steps-post",
                                 markers=False, xlabel=f"τ ({COST_AXES[unit]} to target ÷ best on the task)",
                                 ylabel="fraction of tasks")
        blocks.append(Figure(_rel(path, figures), f"Performance profile in {COST_AXES[unit]}: fraction of tasks on "
                             "which a variant reaches the target within τ times the cheapest variant's cost (median "
                             "over seeds; a target missed in most seeds counts as never reached)."))
    if not blocks:
        blocks.append(Note("No record has the cost at the target (older records), or no variant reached a target: "
                           "no hardware-independent profile."))
    return Section("Cost to target", blocks)


def _rel(path: Path, figures: Path) -> str:
    return f"{figures.name}/{path.name}"
