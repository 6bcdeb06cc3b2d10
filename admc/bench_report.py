"""``results.md`` of ``admc bench``: the tables of the paper's experimental section, from results.json.

Tables 1/2 (WA/UA per missing condition, the mean over conditions and MMIN's pooled average),
Table 3 (random missing rates), completion error, Table 4 (generated features classified by the
frozen unimodal heads), Table 5 (full input) and Figure 3 (links).  The best value of each column
is bold (WA and UA each on their own; the lowest where lower is better), among the methods: the
reference rows (the heads on the real rows, zero fill, ridge) are not ranked.  Table 4 by start
step is the paper's layout, one row per generation and one column per n: there the best n of each
row is bold.
"""

from __future__ import annotations

from dataclasses import dataclass

from admc.data import missing_conditions


@dataclass(frozen=True)
class Num:
    value: float | None
    better: str | None = "max"   # "max", "min" or None (not ranked, e.g. a std)
    digits: int = 1

    def text(self, bold: bool) -> str:
        if self.value is None:
            return "-"
        s = f"{self.value:.{self.digits}f}"
        return f"**{s}**" if bold else s


@dataclass(frozen=True)
class Cell:
    template: str        # "{0}/{1} (±{2})"
    nums: tuple[Num, ...]


def wa_ua(d: dict | None, std: dict | None = None) -> Cell | None:
    if d is None:
        return None
    if std is None:
        return Cell("{0}/{1}", (Num(d["wa"]), Num(d["ua"])))
    return Cell("{0}/{1} (±{2})", (Num(d["wa"]), Num(d["ua"]), Num(std["ua"], None)))


def _bold(rows: list[list[Cell | None]], groups: list[list[tuple[int, int]]]) -> set[tuple[int, int, int]]:
    """(row, column, number) of the best number in each group of cells (ties all bold; a group with
    fewer than two ranked values marks nothing)."""
    marked = set()
    for group in groups:
        cells = [(r, c, rows[r][c]) for r, c in group if rows[r][c] is not None]
        for k in range(max((len(cell.nums) for *_, cell in cells), default=0)):
            vals = [(r, c, cell.nums[k]) for r, c, cell in cells
                    if k < len(cell.nums) and cell.nums[k].better and cell.nums[k].value is not None]
            if len(vals) < 2:
                continue
            shown = [(r, c, round(n.value, n.digits), n.better) for r, c, n in vals]
            pick = max if shown[0][3] == "max" else min
            best = pick(v for _, _, v, _ in shown)
            marked |= {(r, c, k) for r, c, v, _ in shown if v == best}
    return marked


def render(header: list[str], labels: list[str], rows: list[list[Cell | None]],
           groups: list[list[tuple[int, int]]]) -> list[str]:
    """A markdown table whose best number in each group of (row, column) cells is bold."""
    marked = _bold(rows, groups)
    out = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r, (label, row) in enumerate(zip(labels, rows)):
        texts = ["-" if cell is None else
                 cell.template.format(*(n.text((r, c, k) in marked) for k, n in enumerate(cell.nums)))
                 for c, cell in enumerate(row)]
        out.append(f"| {label} | " + " | ".join(texts) + " |")
    return out


def table(header: list[str], labels: list[str], rows: list[list[Cell | None]],
          ranked: list[bool] | None = None) -> list[str]:
    """A markdown table with the best number of each column bold among the rows whose ``ranked``
    entry is true (default: all)."""
    ranked = ranked if ranked is not None else [True] * len(rows)
    ranked_rows = [r for r in range(len(rows)) if ranked[r]]
    return render(header, labels, rows, [[(r, c) for r in ranked_rows] for c in range(len(header) - 1)])


# ---- the tables ------------------------------------------------------------------------------------

def _conditions_table(res: dict, conds: list[str]) -> list[str]:
    header = ["Method", *("{" + c + "}" for c in conds), "Average", "Pooled (MMIN)", "Full"]
    rows = []
    for r in res["methods"].values():
        s = r["std"]
        rows.append([*(wa_ua(r["conditions"][c], s["conditions"][c]) for c in conds), wa_ua(r["average"], s["average"]),
                     wa_ua(r.get("pooled"), s.get("pooled")), wa_ua(r["full"], s["full"])])
    return table(header, list(res["methods"]), rows)


def _missing_rate_table(res: dict) -> list[str]:
    first = next(iter(res["methods"].values()))
    rates = list(first["missing_rate"])
    rows = [[Cell("{0}/{1}", (Num(r["missing_rate"][k]["f1"]), Num(r["missing_rate"][k]["acc"]))) for k in rates]
            for r in res["methods"].values()]
    return table(["Method", *rates], list(res["methods"]), rows)


def _completion_table(res: dict, conds: list[str]) -> list[str]:
    """MSE / cosine of the generated rows per condition, with zero fill and ridge as references."""
    comp = {m: r["completion"] for m, r in res["methods"].items() if "completion" in r}
    if not comp:
        return []
    labels, rows, ranked = [], [], []
    for m, c in comp.items():
        labels.append(m)
        rows.append([Cell("{0} / {1}", (Num(c[k]["mse"], "min", 3), Num(c[k]["cos"], "max", 3))) for k in conds])
        ranked.append(True)
    ref = next(iter(comp.values()))
    labels.append("zero fill (train mean): MSE")
    rows.append([Cell("{0}", (Num(ref[k]["mse_zero"], None, 3),)) for k in conds])
    ranked.append(False)
    ridge = next((c for c in comp.values() if "mse_ridge" in next(iter(c.values()))), None)
    if ridge is not None:
        labels.append("ridge regression: MSE")
        rows.append([Cell("{0}", (Num(ridge[k]["mse_ridge"], None, 3),)) for k in conds])
        ranked.append(False)
    return table(["Method", *("{" + c + "}" for c in conds)], labels, rows, ranked)


def generations(names: list[str], conds: list[str]) -> list[tuple[str, str]]:
    """(condition, generated modality) pairs in condition order: ``("A+B", "C")``."""
    return [(c, m) for c in conds for m in names if m not in c.split("+")]


def _label(cond: str, mod: str) -> str:
    return f"{cond} → {mod}"


def _generated_table(res: dict, names: list[str], conds: list[str]) -> list[str]:
    """Table 4 across methods, each at its own n: rows methods (+ the heads on the real rows)."""
    gen = res.get("generated", {})
    if not gen:
        return []
    pairs = generations(names, conds)
    labels, rows, ranked = [], [], []
    for m, g in gen.items():
        labels.append(m)
        rows.append([wa_ua(g["own"][c][mod]) for c, mod in pairs])
        ranked.append(True)
    first, real = next((m, g["real"]) for m, g in gen.items())
    labels.append(f"real rows ({first}'s encoders; reference)")
    rows.append([wa_ua(real[mod]) for _, mod in pairs])
    ranked.append(False)
    return table(["Method", *(_label(c, mod) for c, mod in pairs)], labels, rows, ranked)


def _start_step_table(g: dict, names: list[str], conds: list[str]) -> list[str]:
    """The paper's Table 4 for one method: a row per generation, WA/UA, MSE and cosine per n; the
    best n of each row is bold, measure by measure."""
    steps = list(g["by_start_step"])
    header = ["Generation", *(f"n={n} {what}" for n in steps for what in ("WA/UA", "MSE", "cos")), "real WA/UA"]
    labels, rows, groups = [], [], []
    for r, (c, mod) in enumerate(generations(names, conds)):
        labels.append(_label(c, mod))
        row: list[Cell | None] = []
        for n in steps:
            d = g["by_start_step"][n][c][mod]
            row += [wa_ua(d), Cell("{0}", (Num(d["mse"], "min", 3),)), Cell("{0}", (Num(d["cos"], "max", 3),))]
        real = g["real"][mod]
        row.append(Cell("{0}/{1}", (Num(real["wa"], None), Num(real["ua"], None))))
        rows.append(row)
        groups += [[(r, 3 * j + k) for j in range(len(steps))] for k in range(3)]
    return render(header, labels, rows, groups)


ROLES = {"joint": "Jointly_training (encoders trained with the fusion)",
         "itfn": "Use_ITFN (frozen ITFN, no MMER)",
         "mmer": "MMER (frozen ITFN + MMER)",
         "late": "late fusion of the ITFN heads",
         "other": "a model of its own (no ITFN)"}


def _full_table(res: dict) -> list[str]:
    fm = res.get("full_modality")
    if not fm:
        return []
    labels, rows = [], []
    for m, r in fm["methods"].items():
        labels.append(f"{m}: {ROLES.get(r['role'], r['role'])}")
        rows.append([Cell("{0} (±{1})", (Num(r["wa"]), Num(r["std"]["wa"], None))),
                     Cell("{0} (±{1})", (Num(r["ua"]), Num(r["std"]["ua"], None)))])
    return table(["Method (paper's row)", "WA", "UA"], labels, rows)


def _per_fold_table(res: dict) -> list[str]:
    folds = res.get("folds", [])
    if len(folds) < 2:
        return []
    rows = [[Cell("{0}/{1}", (Num(p["average"]["ua"]), Num(p["pooled"]["ua"]))) for p in r["per_fold"]]
            for r in res["methods"].values()]
    return table(["Method", *(f["name"] for f in folds)], list(res["methods"]), rows)


def results_markdown(res: dict, names: list[str]) -> str:
    conds = [c for c, _ in missing_conditions(names)]
    seeds = res.get("seeds", [])
    folds = res.get("folds", [])
    nf = max(1, len(folds))
    over = f"{nf} fold(s) × {len(seeds)} seed(s)"
    lines = [f"# {res['dataset']} ({res['split']} split, {len(seeds)} seed(s): {seeds}"
             + (f", {nf} folds" if nf > 1 else "") + ")", ""]
    if "train_data" in res:
        td = res["train_data"]
        said = ([f"{td['train_missing_rate']:g} of its modality entries missing"] if td["train_missing_rate"] else []) \
            + ([f"labels on {td['label_fraction']:g} of its samples"] if td["label_fraction"] < 1 else [])
        lines += [f"Train split reduced: {', '.join(said)}.", ""]
    lines += [f"Best value per column in bold. Mean over {over}; ± the standard deviation over them.", ""]
    lines += ["## Missing-modality conditions: WA/UA (%), mean over seeds (std of UA)", "",
              "Average: the mean over the conditions; Pooled (MMIN): every condition's test samples pooled, "
              "then WA/UA once (MMIN's reported average).", ""]
    lines += _conditions_table(res, conds)
    first = next(iter(res["methods"].values()))
    if "missing_rate" in first:
        lines += ["", "## Random missing rate: F1/ACC (%)", ""] + _missing_rate_table(res)
    per_fold = _per_fold_table(res)
    if per_fold:
        lines += ["", "## Per fold: UA average / UA pooled (%), mean over seeds", ""] + per_fold
    comp = _completion_table(res, conds)
    if comp:
        lines += ["", f"## Completion error ({res['split']} split, standardized embeddings): MSE / cosine", ""] + comp
    gen = _generated_table(res, names, conds)
    if gen:
        lines += ["", "## Generated features (paper Table 4): WA/UA (%) of the frozen unimodal head of the generated "
                      "modality, each method at its own n", ""] + gen
        for m, g in res["generated"].items():
            if g["by_start_step"]:
                lines += ["", f"## Generated features of {m} by start step n (paper Table 4; bold: the best n of "
                              f"each row)", ""] + _start_step_table(g, names, conds)
    full = _full_table(res)
    if full:
        lines += ["", "## Full input (paper Table 5): WA/UA (%)", ""] + full
        lines += [f"- {note}" for note in res["full_modality"].get("notes", [])]
    for m, path in res.get("figures", {}).items():
        lines += ["", f"## Figure 3 ({m}): t-SNE of real (dots) and generated (crosses) embeddings", "",
                  f"![Figure 3, {m}]({path})"]
    return "\n".join(lines) + "\n"
