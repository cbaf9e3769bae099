"""``lrbench check-estimator NAME [--budget S] [--families mlp,cnn] [--n N] [--json] [--OPTION VALUE ...]``:
the conformance check of an estimator (lrbench.conformance): contract and Monte-Carlo statistics on one
small float64 model per family, as a pass/fail table. Exit code 0 when every check passes, 1 otherwise."""

from __future__ import annotations

import argparse
import json
import sys

from lrbench.suite.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-estimator", help="conformance check of an estimator (contract + Monte-Carlo statistics)",
        description="Check an estimator against the contract every lrbench estimator keeps (.grad replaced, "
                    "clean loss returned, seeded, resumable, nothing left behind, unsupported models refused in "
                    "one line) and check that its Monte-Carlo mean converges to autograd's gradient at the "
                    "1/sqrt(n) rate (errors at n and 16n calls in ratio about 4), on one small float64 model "
                    "of each family. Estimator options (--name value) override its conformance_options.")
    p.add_argument("name", metavar="NAME", help="estimator name ('lrbench list estimators')")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="time budget of the check (default 30); the Monte-Carlo sizes are chosen to fit it")
    p.add_argument("--families", default=None, metavar="LIST", help="model families, e.g. mlp,cnn (default: all)")
    p.add_argument("--n", type=int, default=None, help="calls per Monte-Carlo block (default: from the budget)")
    p.add_argument("--seed", type=int, default=0, help="seed of the models, batches and estimator")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(handler=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    from lrbench import api

    from .gradcheck import parse_estimator_options

    options = parse_estimator_options(list(args.extra))
    if args.budget is not None and args.budget <= 0:
        raise UserError(f"--budget must be a positive number of seconds, got {args.budget}")
    families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    log = None if args.json else (lambda line: print(line, flush=True))
    report = api.check_estimator(args.name, options, families=families, budget_s=args.budget, seed=args.seed,
                                 n=args.n, raise_on_failure=False, log=log)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(report.table())
    return 0 if report.passed else 1
