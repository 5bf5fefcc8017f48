"""Stage `environment`: record what this pipeline runs on (results/environment.json)."""

from __future__ import annotations

import argparse
import json

from dcpclip.atomic import write_text
from dcpclip.environment import environment_stamp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/environment.json")
    args = parser.parse_args(argv)
    stamp = environment_stamp()
    stamp.pop("git_commit")  # the commit changes every commit; records carry it, this file must not churn
    write_text(args.out, json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    print(f"environment: {stamp['device']}, torch {stamp['packages']['torch']} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
