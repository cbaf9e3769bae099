"""``lrbench paper list`` and ``lrbench paper NAME [--budget quick|full] [--out DIR]``.

Runs the suite a paper spec (reports/paper/NAME.yaml) names for the budget through the runner, then
builds the report with the paper's figure/table first, the published numbers beside ours.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "paper", help="regenerate a paper figure/table (runs its suite, then draws it beside the published one)",
        description="'lrbench paper list' lists the specs in reports/paper/. 'lrbench paper NAME' runs the "
                    "spec's suite for the budget into OUT (completed runs are kept and skipped on a re-run) "
                    "and writes OUT/report/index.html with the paper's table or figure first. Extra "
                    "KEY=VALUE arguments override every run's config (e.g. accelerator=gpu seeds=[0,1]).")
    p.add_argument("name", metavar="NAME", help="paper spec name, or 'list'")
    p.add_argument("--budget", choices=("quick", "full"), default="quick",
                   help="quick: 2 CPU cores, minutes; full: the paper's settings (default: quick)")
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default: results/paper-NAME-BUDGET)")
    p.add_argument("--data-dir", default=None, help="data root (default: $LRBENCH_DATA or ~/.cache/lrbench/data)")
    p.add_argument("--report-only", action="store_true", help="draw from the runs already in DIR; run nothing")
    p.add_argument("--dry-run", action="store_true", help="print the runs the budget would make and stop")
    from lrbench.suite.cli.launch import add_launch_arguments

    add_launch_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per finished run)")
    p.set_defaults(handler=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    from lrbench.reports.paper_spec import list_specs, load_spec

    if args.name == "list":
        for spec in list_specs():
            print(f"{spec.name:24s} {spec.title}")
            for budget in spec.budgets:
                note = " ".join(spec.note(budget).split())
                print(f"    {budget:6s} {note if len(note) <= 110 else note[:109] + '…'}")
        return 0
    spec = load_spec(args.name)
    out = Path(args.out) if args.out else Path("results") / f"paper-{spec.name}-{args.budget}"
    status = 0
    if not args.report_only:
        status = _run_suite(spec, args, out)
        if args.dry_run:
            return 0
    from lrbench.reports import build_report
    from lrbench.reports.paper_draw import paper_section_builder
    from lrbench.reports.sections import DEFAULT_SECTIONS

    index = build_report(out, out / "report", title=f"lrbench paper: {spec.title}",
                         builders=(paper_section_builder(spec, args.budget), *DEFAULT_SECTIONS))
    print(f"report: {index}")
    return status


def _run_suite(spec, args: argparse.Namespace, out: Path) -> int:
    from lrbench.suite.cli.launch import launch
    from lrbench.suite.cli.plan import finish, plan_configs
    from lrbench.suite.cli.suite_files import expand_suite
    from lrbench.suite.cli.tokens import parse_assignments
    from lrbench.suite.errors import UserError

    overrides = parse_assignments(args.extra, "override")
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.no_progress:
        overrides["progress"] = False
    configs = expand_suite(spec.suite(args.budget), overrides)
    if spec.pretrained_from:
        configs = attach_pretrained(configs, spec.pretrained_from)
    if spec.transfer_surrogate:
        configs = attach_transfer_source(configs, spec.transfer_surrogate)
    if args.dry_run:
        for config in configs:
            options = ", ".join(f"{k}={v}" for k, v in config["estimator_options"].items())
            print(f"{config['task']} {config['estimator']} B={config['batch_size']} epochs={config['max_epochs']} "
                  f"seed={config['seed']} {options}")
        print(f"{len(configs)} runs")
        return 0
    plan = plan_configs(configs, out)  # the same preflight checks as lrbench run, before anything is written
    print(f"paper {spec.name}, budget {args.budget}: {len(configs)} runs into {out}")
    result = launch(plan, args)  # here, --jobs workers, or a SLURM array (suite/cli/launch.py)
    if result is None:  # submitted, not waited for
        return 0
    for record in result.records:
        accuracy = record["metrics"].get("test_accuracy_final")
        print(f"  {record['run_id']}: {record['status']}"
              + (f", test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else "")
              + (f" — {record['message']}" if record.get("message") else ""))
    status = finish(plan, result, "paper")
    if not (out / "runs").is_dir():
        raise UserError(f"no results were written to {out}")
    return status


PRETRAINED = "pretrained"  # the init_from value that names the spec's pretraining run


def attach_pretrained(configs: list[dict], source: dict) -> list[dict]:
    """Fine-tuning: every run with ``init_from: pretrained`` starts from the final weights of the run that
    matches ``source`` (e.g. ``{task: mnist-mlp, estimator: bp}``) and has the same seed; the source runs
    go first so their checkpoints exist. A run asking for a source the suite lacks is a UserError."""
    from lrbench.schema import run_id
    from lrbench.suite.errors import UserError

    def is_source(config: dict) -> bool:
        return all(config.get(k) == v for k, v in source.items())

    sources = {c["seed"]: run_id(c) for c in configs if is_source(c)}
    out = []
    for config in configs:
        if config.get("init_from") == PRETRAINED:
            if config["seed"] not in sources:
                raise UserError(f"init_from: {PRETRAINED} needs a run matching {source} with seed {config['seed']} "
                                "in the suite")
            config = {**config, "init_from": sources[config["seed"]]}
        out.append(config)
    return [c for c in out if is_source(c)] + [c for c in out if not is_source(c)]


def attach_transfer_source(configs: list[dict], surrogate: dict) -> list[dict]:
    """Transfer attacks: per task and seed, the run matching ``surrogate`` (e.g. ``{estimator: bp}``) crafts
    them. Every other run with robustness enabled gets ``robustness.transfer_source`` = that run's id, and
    the surrogate runs are moved first so their checkpoints exist when the others are evaluated.

    ``seed_offset: n`` in ``surrogate`` makes the surrogate an *independently seeded* twin instead: a copy
    of the matching run with seed + n (other initialisation, data order and noise) and no robustness
    evaluation of its own; then every run with robustness enabled, the matching ones included, is attacked
    by transfer from it — never from the attacked model's own twin (same seed, same initialisation)."""
    from lrbench.schema import run_id

    offset = surrogate.get("seed_offset")
    match = {k: v for k, v in surrogate.items() if k != "seed_offset"}

    def is_surrogate(config: dict) -> bool:
        return all(config.get(k) == v for k, v in match.items())

    matches = [(c["task"], c["seed"]) for c in configs if is_surrogate(c)]
    if len(matches) != len(set(matches)):
        from lrbench.suite.errors import UserError

        raise UserError(f"transfer_surrogate {match} matches several runs of one task and seed; add keys that "
                        "single out the surrogate (e.g. max_steps: null)")
    if offset is not None:
        twins = {(c["task"], c["seed"]): {**c, "seed": int(c["seed"]) + int(offset), "robustness": None}
                 for c in configs if is_surrogate(c)}
        sources = {key: run_id(twin) for key, twin in twins.items()}
        attacked = [{**c, "robustness": {**c["robustness"], "transfer_source": sources[(c["task"], c["seed"])]}}
                    if c.get("robustness") is not None and (c["task"], c["seed"]) in sources else c
                    for c in configs]
        return [*twins.values(), *attacked]
    sources = {(c["task"], c["seed"]): run_id(c) for c in configs if is_surrogate(c)}
    first = [c for c in configs if is_surrogate(c)]
    rest = []
    for config in configs:
        if is_surrogate(config):
            continue
        source = sources.get((config["task"], config["seed"]))
        if source and config.get("robustness") is not None:
            config = {**config, "robustness": {**config["robustness"], "transfer_source": source}}
        rest.append(config)
    return first + rest
