"""``lrbench gradcheck``: compare an estimator's gradient with BP's on one batch of a task."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lrbench.suite.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradcheck", help="compare an estimator's gradient with BP's on one batch",
        description="Compare an estimator's gradient with the BP gradient on one batch. Any estimator option "
                    "can be given as --name value (e.g. --copies 64 --sigma 0.01 --baseline clean); "
                    "'lrbench list estimators' shows them.")
    p.add_argument("--task", default="digits-mlp", help="task name (default: digits-mlp)")
    p.add_argument("--estimator", default="ulr", help="estimator name (default: ulr)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed for the model, the batch and the estimator")
    p.add_argument("--repeats", type=int, default=1, help="independent estimates (R > 1 adds 'variance')")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="model option override (repeatable), e.g. --model widths=[64,64]")
    p.add_argument("--data-dir", default=None, help="data root (default: $LRBENCH_DATA or ~/.cache/lrbench/data)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=run, accepts_extra=True)


def parse_estimator_options(tokens: list[str]) -> dict[str, str]:
    """``--copies 64 --antithetic --sigma=0.1`` -> {'copies': '64', 'antithetic': 'true', 'sigma': '0.1'}."""
    options: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise UserError(f"unexpected argument '{token}'; estimator options are given as --name value")
        key, has_value, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not has_value:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"
        options[key] = value
        i += 1
    return options


def parse_key_values(pairs: list[str], what: str) -> dict[str, Any]:
    """KEY=VALUE strings -> dict with YAML-parsed values (``widths=[64,64]`` -> [64, 64])."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{what} '{pair}' must look like KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"{what} '{pair}': value is not valid YAML") from None
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from lrbench.estimators import estimator_class

    options = parse_estimator_options(args.extra)
    options.setdefault("seed", str(args.seed))
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    from lrbench.suite.training.gradient_check import gradient_check
    from lrbench.tasks import get_task

    estimator_class(args.estimator)  # unknown estimator: fail before anything else
    spec = get_task(args.task)
    # The task's tuned settings for this estimator, overridden by what the command line gives.
    options = {**spec.estimator_defaults.get(args.estimator, {}), **options}
    estimator_class(args.estimator).resolve_options(options)  # validate before any data is loaded
    model_options = parse_key_values(args.model, "--model")
    torch.manual_seed(args.seed)
    model = spec.build_model(**model_options)
    data = spec.load_data(data_dir=args.data_dir, device="cpu")
    x_train, y_train = data.train
    generator = torch.Generator().manual_seed(args.seed)
    index = torch.randperm(len(x_train), generator=generator)[: args.batch_size]
    result = gradient_check(model, spec.loss_fn, x_train[index], y_train[index], args.estimator, options,
                            repeats=args.repeats)
    result = {"task": args.task, "estimator": args.estimator, "batch_size": int(len(index)),
              "seed": args.seed, "options": options, **result}
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    print(f"{args.estimator} vs bp on {args.task} (batch {len(index)}, seed {args.seed}, "
          f"{result['num_parameters']} parameters, {args.repeats} repeat(s))")
    for key in ("cosine", "relative_error", "norm_ratio", "cosine_of_mean", "variance", "relative_variance"):
        if key in result:
            print(f"  {key:18s} {result[key]:.6g}")
    print("  per parameter:")
    for name, values in result["per_parameter"].items():
        print(f"    {name:30s} cosine {values['cosine']:+.4f}  relative_error {values['relative_error']:.4g}")
    return 0
