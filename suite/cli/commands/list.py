"""``lrbench list estimators|tasks|papers [--json]``: every registered entry and where it came from
(``built-in``, ``entry point DIST VERSION``, ``--plugin MODULE``, ``suite FILE (plugin MODULE)``)."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list estimators, tasks or paper specs (and where each comes from)",
                       description="List estimators, tasks or paper specs, each with its source: built-in, "
                                   "an installed plugin's entry point, or a --plugin module.")
    p.add_argument("what", choices=("estimators", "tasks", "papers"), help="what to list")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(handler=run)


def _dump(items: list) -> int:
    json.dump(items, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from lrbench import api

    if args.what == "estimators":
        items = api.list_estimators()
        if args.json:
            return _dump(items)
        for item in items:
            print(f"{item['name']:8s} {item['description']}  [{item['source']}]")
            for opt, spec in item["options"].items():
                extra = f" (choices: {', '.join(map(str, spec['choices']))})" if "choices" in spec else ""
                print(f"    --{opt.replace('_', '-'):18s} default {spec['default']!s:10s} {spec['help']}{extra}")
        return 0
    if args.what == "papers":
        from lrbench.reports.paper_spec import list_specs

        papers = [{"name": s.name, "title": s.title, "budgets": list(s.budgets), "source": api.origin("paper", s.name)}
                  for s in list_specs()]
        if args.json:
            return _dump(papers)
        for paper in papers:
            print(f"{paper['name']:24s} {paper['title']}  [{paper['source']}]")
        return 0
    specs = [{**s.to_json(), "source": api.origin("task", s.name)} for s in api.list_tasks()]
    if args.json:
        return _dump(specs)
    for info in specs:
        print(f"{info['name']:22s} {info.get('family', ''):4s} {info.get('dataset', ''):12s} "
              f"{info.get('num_parameters', '')!s:>9s} params  {info.get('description', '')}  [{info['source']}]")
    return 0
