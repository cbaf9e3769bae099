"""Report sections. Each builder takes the loaded :class:`Results` and the figure folder and returns a
:class:`Section`, or None when the results hold no data for it (sections are drawn only where data exist).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from . import plots
from .cost_sections import accuracy_vs_cost, cost_profile, scoreboard, training_against_cost
from .document import Figure, Note, Section, Table
from .labels import variant_labels
from .load import Results
from .machine import wall_clock_verdict
from .stats import performance_profile, performance_ratios, sort_naturally, summarize

SectionBuilder = Callable[[Results, Path], "Section | None"]

# Axes along which memory, throughput and gradient quality are compared, with their axis labels.
SCALE_AXES = {"copies": "copies K (total over blocks)", "probes": "probes r", "batch_size": "batch size B",
              "depth": "depth (blocks)"}
SAMPLE_AXES = ("copies", "probes")  # the Monte-Carlo sample counts of LR estimators and of XConv
_MIB = 2.0**20


def accuracy_metric(runs: pd.DataFrame) -> str:
    """The final-accuracy column reports use: test accuracy when recorded, else validation accuracy."""
    return "test_accuracy_final" if runs["test_accuracy_final"].notna().any() else "val_accuracy_final"


def overview(results: Results, figures: Path) -> Section:
    """Counts of runs per task, estimator and status; unreadable files named."""
    counts = (results.runs.groupby(["task", "estimator", "status"]).size().unstack("status", fill_value=0)
              .reset_index())
    blocks: list = [Note(f"{len(results.runs)} run(s) read from {results.root}: "
                         + ", ".join(f"{n} {s}" for s, n in results.runs["status"].value_counts().items())
                         + ".")]
    if results.skipped_files:
        blocks.append(Note(f"Skipped {len(results.skipped_files)} file(s) that are not run records: "
                           + ", ".join(results.skipped_files)))
    blocks.append(Table(counts, "Runs per task and estimator, by status."))
    return Section("Overview", blocks)


def unfinished_runs(results: Results, figures: Path) -> Section | None:
    """Every failed or diverged run with its message (never dropped silently)."""
    bad = results.unfinished
    if bad.empty:
        return None
    table = bad[["run_id", "task", "estimator", "label", "seed", "status", "message"]].copy()
    table["message"] = table["message"].fillna("").astype(str).str.slice(0, 300)
    counts = (results.runs.groupby(["task", "estimator", "status"]).size().unstack("status", fill_value=0)
              .reset_index())
    return Section("Failed and diverged runs", [
        Note(f"{len(bad)} run(s) did not complete. They are excluded from the means and counted in the "
             "'not completed' column of the scoreboard and the final-accuracy table."),
        Table(counts, "Runs per task and estimator, by status."),
        Table(table, "Runs that failed or diverged.")])


def accuracy_curves(results: Results, figures: Path) -> Section | None:
    """Validation accuracy against epoch (mean and 95% CI over seeds) and against wall time (per seed)."""
    history = results.history
    if history.empty or "val_accuracy" not in history or history["val_accuracy"].notna().sum() == 0:
        return None
    data = history.dropna(subset=["val_accuracy"])
    if data.groupby("run_id").size().max() < 2:
        return Section("Accuracy during training", [Note(
            "Every run was evaluated once (a single epoch), so there is no curve to draw; see the final "
            "accuracy below.")])
    blocks: list = []
    if "epoch" in data and data["epoch"].notna().any():
        path = plots.line_figure(data, figures / "accuracy_vs_epoch.png", x="epoch", y="val_accuracy",
                                 hue="label", col="task", xlabel="epoch", ylabel="validation accuracy",
                                 integer_x=True)
        blocks.append(Figure(_rel(path, figures), "Validation accuracy per epoch: mean over seeds, band = 95% CI."))
    verdict = wall_clock_verdict(results.runs)
    if "wall_time" in data and data["wall_time"].notna().any() and not verdict.comparable:
        blocks.append(Note(verdict.reason))
    elif "wall_time" in data and data["wall_time"].notna().any():
        path = plots.line_figure(data.dropna(subset=["wall_time"]), figures / "accuracy_vs_time.png",
                                 x="wall_time", y="val_accuracy", hue="label", col="task", per_seed=True,
                                 xlabel="training time (s, evaluation excluded)", ylabel="validation accuracy")
        blocks.append(Figure(_rel(path, figures), "Validation accuracy against cumulative training time, one "
                             "line per seed."))
    return Section("Accuracy during training", blocks) if blocks else None


def final_accuracy(results: Results, figures: Path) -> Section | None:
    """Mean ± 95% t-interval over seeds of the final accuracy, per task and variant."""
    metric = accuracy_metric(results.runs)
    done = results.completed.dropna(subset=[metric])
    if done.empty:
        return None
    table = summarize(done, ["task", "label"], metric)
    not_done = results.unfinished.groupby(["task", "label"]).size().rename("not completed").reset_index()
    table = table.merge(not_done, on=["task", "label"], how="outer").fillna({"not completed": 0, "n": 0})
    table["text"] = table["text"].fillna("—")
    table = sort_naturally(table.astype({"n": int, "not completed": int}), ["task", "label"])
    shown = table[["task", "label", "text", "n", "not completed"]].rename(
        columns={"label": "variant", "text": f"{metric} (mean ± 95% CI)", "n": "seeds"})
    notes = [Note("Intervals are Student-t 95% intervals over seeds (mean ± t·s/√n); a variant with one seed "
                  "(seeds = 1) shows its value alone.")]
    what = "test" if metric.startswith("test") else "validation"
    return Section("Final accuracy", [*notes, Table(shown, f"Final {what} accuracy per variant.")])


def time_to_target(results: Results, figures: Path) -> Section | None:
    """Targets per task; with comparable wall clocks, the AlgoPerf profile and the seconds to target."""
    runs = results.runs
    if runs["ttt_target"].isna().all():
        return None
    verdict = wall_clock_verdict(runs)
    blocks: list = []
    targets = runs.groupby("task")["ttt_target"].first().rename("target").reset_index()
    if not verdict.comparable:
        return Section("Time to target", [Note(verdict.reason + " The profiles in forward passes and FLOPs are "
                                               "under 'Cost to target'."),
                                          Table(targets, "Targets per task (metric as recorded in the runs).")])
    times = runs.assign(ttt_seconds=runs["ttt_seconds"].where(runs["status"] == "completed"))
    ratios = performance_ratios(times, problem="task", solver="label", time="ttt_seconds")
    reached = summarize(runs.dropna(subset=["ttt_seconds"]), ["task", "label"], "ttt_seconds")
    if not ratios.empty:
        profile = performance_profile(ratios)
        path = plots.line_figure(profile, figures / "performance_profile.png", x="tau", y="fraction",
                                 hue="solver", logx=bool(profile["tau"].max() > 4), drawstyle="steps-post",
                                 markers=False,
                                 xlabel="τ (time ÷ best time on the task)", ylabel="fraction of tasks")
        blocks.append(Figure(_rel(path, figures), "Performance profile: fraction of tasks on which a variant "
                             "reaches the task's target within τ times the fastest variant's time (median "
                             "over seeds; a target missed in most seeds counts as never reached)."))
    else:
        blocks.append(Note("No variant reached the target on any task, so no profile can be drawn."))
    blocks.append(Table(targets, "Targets per task (metric as recorded in the runs)."))
    if not reached.empty:
        blocks.append(Table(reached[["task", "label", "text", "n"]].rename(
            columns={"label": "variant", "text": "seconds to target (mean ± 95% CI)", "n": "seeds reaching"}),
            "Time to target among the seeds that reached it."))
    return Section("Time to target", blocks)


def memory_throughput(results: Results, figures: Path) -> Section | None:
    """Peak training-step memory and throughput against copies, probes, batch size and depth."""
    done = results.completed.copy()
    done["peak memory (MiB)"] = done["peak_memory_bytes"] / _MIB
    done["samples / s"] = done["samples_per_second"]
    verdict = wall_clock_verdict(results.runs)
    if not verdict.comparable:  # samples/s is wall-clock: only on a quiet machine
        done["samples / s"] = float("nan")
    metrics = [m for m in ("peak memory (MiB)", "samples / s") if done[m].notna().any()]
    if not metrics:
        return None
    blocks: list = []
    for axis, axis_label in SCALE_AXES.items():
        data = done.dropna(subset=[axis])
        if not _varies_within_variants(data, axis):
            continue
        data = data.assign(label=variant_labels(data, exclude=[axis]))
        long = data.melt(id_vars=["task", "label", "seed", axis], value_vars=metrics, var_name="metric",
                         value_name="value").dropna(subset=["value"])
        path = plots.line_figure(long, figures / f"memory_throughput_vs_{axis}.png", x=axis, y="value",
                                 hue="label", col="task", row="metric", logx=True, sharey=False,
                                 xlabel=axis_label, ylabel="")
        blocks.append(Figure(_rel(path, figures), f"Peak memory and training throughput against {axis_label}."))
    table = summarize(done.dropna(subset=["peak_memory_bytes"]), ["task", "label"], "peak memory (MiB)")
    if not table.empty:
        speed = summarize(done.dropna(subset=["samples / s"]), ["task", "label"], "samples / s")
        merged = table[["task", "label", "text"]].merge(speed[["task", "label", "text"]], on=["task", "label"],
                                                        how="outer", suffixes=(" MiB", " samples/s"))
        if not verdict.comparable:
            merged = merged.drop(columns=["text samples/s"])
        blocks.append(Table(merged.rename(columns={"label": "variant", "text MiB": "peak memory (MiB)",
                                                   "text samples/s": "samples / s"}).fillna("—"),
                            "Peak memory (and throughput on a quiet machine) per variant (mean ± 95% CI over seeds)."))
    if not verdict.comparable:
        blocks.append(Note(verdict.reason.replace("Wall-clock times", "Throughput (samples/s)")))
    return Section("Memory and throughput", blocks)


def gradient_quality(results: Results, figures: Path) -> Section | None:
    """Cosine and norm ratio vs BP against copies (LR) or probes (XConv), one line per technique."""
    done = results.completed.dropna(subset=["grad_cosine"])
    if done.empty:
        return None
    blocks: list = []
    for axis in SAMPLE_AXES:
        data = done.dropna(subset=[axis])
        if not _varies_within_variants(data, axis):
            continue
        data = data.assign(label=variant_labels(data, exclude=[axis]))
        long = data.melt(id_vars=["task", "label", "seed", axis], value_vars=["grad_cosine", "grad_norm_ratio"],
                         var_name="metric", value_name="value").dropna(subset=["value"])
        long["metric"] = long["metric"].map({"grad_cosine": "cosine to BP gradient",
                                             "grad_norm_ratio": "norm ratio ‖ĝ‖/‖g‖"})
        path = plots.line_figure(long, figures / f"gradient_quality_vs_{axis}.png", x=axis, y="value",
                                 hue="label", col="task", row="metric", logx=True, sharey=False,
                                 xlabel=SCALE_AXES[axis], ylabel="", logy_rows=("norm ratio ‖ĝ‖/‖g‖",))
        blocks.append(Figure(_rel(path, figures), f"Gradient quality against {SCALE_AXES[axis]}: one line per "
                             "variance-reduction technique (mean over seeds, band = 95% CI). Cosine 1 and norm "
                             "ratio 1 are the BP gradient."))
    table = summarize(done, ["task", "label"], "grad_cosine")
    blocks.append(Table(table[["task", "label", "text", "n"]].rename(
        columns={"label": "variant", "text": "mean cosine to BP (mean ± 95% CI)", "n": "seeds"}),
        "Mean cosine between the estimate and the BP gradient over the scheduled checks."))
    return Section("Gradient quality", blocks)


def robustness(results: Results, figures: Path) -> Section | None:
    """Accuracy against ε per attack (white-box and transfer) and a corruption heatmap."""
    rob = results.robustness[results.robustness["status"] == "completed"].dropna(subset=["accuracy"])
    if rob.empty:
        return None
    blocks: list = []
    attacks = rob[rob["family"].isin(["white-box", "transfer"])]
    if not attacks.empty:
        clean = rob[rob["family"] == "clean"]
        curves = [attacks]
        for (kind, family), group in attacks.groupby(["kind", "family"]):  # ε = 0: the clean accuracy
            curves.append(clean[clean["run_id"].isin(group["run_id"])].assign(kind=kind, family=family))
        data = pd.concat(curves, ignore_index=True)
        data["attack"] = data["kind"] + " (" + data["family"] + ")"
        path = plots.line_figure(data, figures / "robustness_attacks.png", x="level", y="accuracy", hue="label",
                                 col="attack", row="task" if data["task"].nunique() > 1 else None,
                                 xlabel="ε", ylabel="accuracy")
        blocks.append(Figure(_rel(path, figures), "Accuracy under attack against ε (ε = 0: clean accuracy). "
                             "White-box attacks target each model itself; transfer attacks are crafted on a "
                             "BP-trained surrogate."))
    corruptions = rob[rob["family"].isin(["corruption", "clean"])]
    if (corruptions["family"] == "corruption").any():
        matrices = {}
        for task, group in corruptions.groupby("task"):
            matrix = group.pivot_table(index="label", columns="kind", values="accuracy", aggfunc="mean")
            ordered = ["clean"] + sorted(c for c in matrix.columns if c != "clean")
            matrices[str(task)] = matrix[[c for c in ordered if c in matrix.columns]]
        path = plots.heatmap_figure(matrices, figures / "robustness_corruptions.png", xlabel="corruption",
                                    ylabel="", value_label="accuracy (mean over severities and seeds)")
        blocks.append(Figure(_rel(path, figures), "Accuracy under natural corruptions, averaged over the 5 "
                             "severities and over seeds; 'clean' for reference."))
    return Section("Robustness", blocks) if blocks else None


def run_metadata(results: Results, figures: Path) -> Section:
    """Commit, package versions, hardware, seeds and timing of every run."""
    runs = results.runs
    columns = ["run_id", "status", "seed", "git_commit"]
    columns += sorted(c for c in runs.columns if c.startswith("version."))
    columns += [c for c in ("hardware.device_type", "hardware.device_name", "hardware.world_size",
                            "started_at", "duration_s") if c in runs]
    table = runs[columns].copy()
    table["git_commit"] = table["git_commit"].fillna("").astype(str).str.slice(0, 10)
    table.columns = [c.removeprefix("version.").removeprefix("hardware.") for c in table.columns]
    commits = runs["git_commit"].dropna().unique()
    note = (f"Commits: {', '.join(str(c)[:10] for c in commits)}." if len(commits) else "No git commit recorded.")
    if len(commits) > 1:
        note += " Runs come from more than one commit: compare with care."
    return Section("Run metadata", [Note(note), Table(table, "Every run, its code version and hardware.")])


DEFAULT_SECTIONS: tuple[SectionBuilder, ...] = (scoreboard, unfinished_runs, accuracy_vs_cost, training_against_cost,
                                                cost_profile, accuracy_curves, final_accuracy, time_to_target,
                                                memory_throughput, gradient_quality, robustness, run_metadata)


def _varies_within_variants(data: pd.DataFrame, axis: str) -> bool:
    """True when some (task, variant without ``axis``) has at least two distinct values of ``axis``."""
    if data.empty or data[axis].nunique() < 2:
        return False
    labels = variant_labels(data, exclude=[axis])
    return bool(data.assign(_l=labels).groupby(["task", "_l"])[axis].nunique().max() >= 2)


def _rel(path: Path, figures: Path) -> str:
    return f"{figures.name}/{path.name}"
