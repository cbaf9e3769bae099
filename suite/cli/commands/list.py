"""``lrbench list estimators|tasks [--json]``."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list estimators or tasks", description="List estimators or tasks.")
    p.add_argument("what", choices=("estimators", "tasks"), help="what to list")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.what == "estimators":
        from lrbench.estimators import list_estimators

        items = list_estimators()
        if args.json:
            json.dump(items, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
            return 0
        for item in items:
            print(f"{item['name']:8s} {item['description']}")
            for opt, spec in item["options"].items():
                extra = f" (choices: {', '.join(map(str, spec['choices']))})" if "choices" in spec else ""
                print(f"    --{opt.replace('_', '-'):18s} default {spec['default']!s:10s} {spec['help']}{extra}")
        return 0
    from lrbench.tasks import list_tasks

    specs = list_tasks()
    if args.json:
        json.dump([s.to_json() for s in specs], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    for spec in specs:
        info = spec.to_json()
        print(f"{info['name']:22s} {info.get('family', ''):4s} {info.get('dataset', ''):12s} "
              f"{info.get('num_parameters', '')!s:>9s} params  {info.get('description', '')}")
    return 0
