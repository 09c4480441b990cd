"""Command line: `python -m alllib compare` runs the cross-entropy baseline comparison.

Every flag has a default that finishes in a few minutes on 2 CPU cores, offline (digits).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not a usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def main(argv=None):
    from alllib import configs  # no framework yet: --help and flag errors answer at once

    # allow_abbrev=False: `--seed 2` is an error, not a silent `--seeds 2`.
    parser = _Parser(prog="python -m alllib", description=__doc__.splitlines()[0],
                     allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    compare = commands.add_parser(
        "compare",
        help="train every method with several seeds and print the summary table",
        description="Train the same predictor under each method (cross-entropy, label "
        "smoothing, adversarial label learning and its variants) with several seeds; write "
        "runs.csv, runs.json, summary.md and plots to --out; resume where a previous run stopped.",
        allow_abbrev=False,
    )
    compare.add_argument(
        "--datasets", type=_names, default=["digits"],
        help=f"comma-separated, from {', '.join(configs.COMPARE_DATASETS)} (default: digits; "
        "fashion_mnist reads Debian's dataset-fashion-mnist package offline; mnist and cifar10 "
        "need tensorflow-datasets to download them)",
    )
    compare.add_argument(
        "--methods", type=_names, default=list(configs.METHODS),
        help=f"comma-separated, from {', '.join(configs.METHODS)} (default: all)",
    )
    compare.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default: 3)")
    compare.add_argument("--epochs", type=int, default=30, help="epochs per run (default: 30)")
    compare.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    compare.add_argument(
        "--out", default=os.path.join("results", "compare"),
        help="output directory; runs already there are skipped (default: results/compare)",
    )
    compare.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)

    for flag in ("seeds", "epochs", "batch_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be a positive integer")
    for flag, valid in (("datasets", configs.COMPARE_DATASETS), ("methods", configs.METHODS)):
        unknown = [name for name in getattr(args, flag) if name not in valid]
        if unknown or not getattr(args, flag):
            parser.error(
                f"unknown {flag[:-1]} {unknown[0]!r} for --{flag}; choose from: {', '.join(valid)}"
                if unknown else f"--{flag} is empty; choose from: {', '.join(valid)}"
            )
    from alllib import data, experiments

    try:
        summary = experiments.compare(
            datasets=args.datasets, methods=args.methods, seeds=list(range(args.seeds)),
            epochs=args.epochs, batch_size=args.batch_size, out=args.out, plots=not args.no_plots,
        )
    except (data.DatasetUnavailable, experiments.ResultsError) as error:
        parser.error(str(error).splitlines()[0])
    print(experiments.markdown_table(summary, experiments.SUMMARY_COLUMNS))
    print("\n" + experiments.compare_legend(args.methods, range(args.seeds), args.datasets))
    figures = [] if args.no_plots else ["comparison.png", *(f"reliability_{d}.png" for d in args.datasets)]
    print(f"\nWritten to {args.out}: " + ", ".join(
        ["runs.csv", "runs.json", "summary.md", "step_times.json", "probs/", *figures]))


if __name__ == "__main__":
    sys.exit(main())
