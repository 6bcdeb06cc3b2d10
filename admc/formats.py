"""The format tags of what admc writes, in one place (each file or directory names its own)."""

DATASET_FORMAT = "admc-features/1"   # a feature dataset's meta.json (docs/feature-dataset.md)
RUN_FORMAT = "admc-run/1"            # a run directory's run.json and model.safetensors
BENCH_FORMAT = "admc-bench/1"        # results.json of admc bench
CELL_FORMAT = "admc-bench-cell/1"    # one finished cell of admc bench (admc/cells.py)
EVAL_FORMAT = "admc-eval/1"          # the --json file of admc eval
