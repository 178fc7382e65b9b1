"""The tables of benchmarks/compare_commits.py: each benchmark's JSON as named times, old against new.

No timing happens here: these functions read the benchmarks' ``--json`` records and callgrind's
output files, and write markdown. A row is ``name: (seconds, note)``; the note says which backend
AUTO ran on (empty elsewhere), so a row whose AUTO changed its pick shows it.

>>> rows = compare_rows({"step": 0.002}, {"step": 0.0025}, limit=1.05)
>>> rows[0]["ratio"], rows[0]["verdict"]
(1.25, 'SLOWER')
"""

from __future__ import annotations

import math
import re

# Rows that time torch alone (no puredl code): their new/old ratio shows the run's noise, not a change.
CONTROL = " (control: torch alone)"

ACCEL_MODES = {
    "pure": "pure",
    "torch": "torch",
    "auto_default": "auto (default)",
    "auto_calibrated": "auto (calibrated)",
    "auto_static": "auto (thresholds only)",
}


Rows = dict[str, tuple[float, str]]


def train_step_rows(record: dict) -> Rows:
    """Seconds per step of benchmarks/train_step.py --json: each case's pure step, and torch's."""
    rows = {}
    for case in record["cases"]:
        rows[f"{case['name']}: puredl pure"] = (case["pure_s"], "")
        if case.get("torch_s") is not None:
            rows[f"{case['name']}: torch eager{CONTROL}"] = (case["torch_s"], "")
    return rows


def torch_training_rows(record: dict) -> Rows:
    """Seconds per step of benchmarks/torch_training.py --json: puredl in TORCH mode, and torch."""
    return {
        "digits 64-256-10 step: puredl TORCH mode": (record["ms_puredl"] / 1e3, ""),
        f"digits 64-256-10 step: torch directly{CONTROL}": (record["ms_torch"] / 1e3, ""),
    }


def accel_rows(record: dict) -> Rows:
    """Seconds per op of benchmarks/accel.py --json, one row per op, size and mode.

    Pure times that the benchmark extrapolated instead of measuring ("est.") are left out.
    """
    rows = {}
    for op, sizes in record["results"].items():
        for r in sizes:
            for key, mode in ACCEL_MODES.items():
                if key not in r or (key == "pure" and r.get("pure_est")):
                    continue
                rows[f"{op} {r['label']}: {mode}"] = (r[key], r.get(key + "_on", ""))
    return rows


ROWS_OF = {"train_step": train_step_rows, "accel": accel_rows, "torch_training": torch_training_rows}


def best_of(rounds: list[Rows]) -> Rows:
    """Each row's fastest round (load only ever adds time), with that round's note."""
    best: Rows = {}
    for rows in rounds:
        for name, (t, note) in rows.items():
            if name not in best or t < best[name][0]:
                best[name] = (t, note)
    return best


def paired_ratios(old_rounds: list[Rows], new_rounds: list[Rows]) -> dict[str, list[float]]:
    """new/old of each row within each round: ``old_rounds[k]`` and ``new_rounds[k]`` ran back to
    back (``None`` where that side's run failed), so a slow phase of the machine hits both sides
    of one ratio, where the best of each side's rounds may come from different phases."""
    ratios: dict[str, list[float]] = {}
    for old, new in zip(old_rounds, new_rounds):
        if old is None or new is None:
            continue
        for name, (t_old, _) in old.items():
            if name in new and t_old > 0:
                ratios.setdefault(name, []).append(new[name][0] / t_old)
    return ratios


def median_interval(xs: list[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """The median of ``xs`` and a distribution-free interval for the median they are drawn from:
    the order statistics x_(k) and x_(n+1-k), k the largest with P(Binomial(n, 1/2) < k) <=
    (1 - confidence) / 2, so the interval covers the median with at least ``confidence`` whatever
    the distribution (the sign test's interval). ``(median, None, None)`` when there are too few
    values for it (fewer than 6 at 95%).

    >>> median_interval([1.0, 1.1, 0.9, 1.05, 1.02, 0.98, 1.01, 0.97])
    (1.005, 0.9, 1.1)
    """
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ValueError("median_interval: no values")
    mid = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    tail, k, below = (1.0 - confidence) / 2, 0, 0.0  # below: P(Binomial(n, 1/2) < k)
    while k < n // 2:
        nxt = below + math.comb(n, k) / 2**n
        if nxt > tail:
            break
        below, k = nxt, k + 1
    if k == 0:
        return mid, None, None
    return mid, s[k - 1], s[n - k]


def compare_rows(old: dict, new: dict, limit: float) -> list[dict]:
    """Rows in order (old's first, then any that only new has) with new/old and a verdict.

    ``old`` and ``new`` map names to a number or to ``(number, note)``. Verdict: "ok" (new <=
    limit x old), "SLOWER", "control" for torch-alone rows, or "missing on old/new" where one side
    has no such row. Where the notes differ (AUTO picked another backend) the row says so.
    """
    old, new = _with_notes(old), _with_notes(new)
    names = list(old) + [n for n in new if n not in old]
    out = []
    for name in names:
        (o, o_note), (n, n_note) = old.get(name, (None, "")), new.get(name, (None, ""))
        if o is None or n is None:
            ratio, verdict = None, "missing on " + ("old" if o is None else "new")
        else:
            ratio = n / o
            if name.endswith(CONTROL):
                verdict = "control"
            else:
                verdict = "ok" if ratio <= limit else "SLOWER"
        note = f"ran on {o_note}, now on {n_note}" if o_note and n_note and o_note != n_note else ""
        out.append({"name": name, "old": o, "new": n, "ratio": ratio, "verdict": verdict, "note": note})
    return out


def _with_notes(rows: dict) -> Rows:
    return {name: v if isinstance(v, tuple) else (v, "") for name, v in rows.items()}


def fmt_time(s: float | None) -> str:
    """Seconds, in the unit that keeps three or four digits: 3.2 us, 41.20 ms, 1.5 s."""
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_count(n: float | None) -> str:
    return "-" if n is None else f"{n:,.0f}"


def summary(rows: list[dict], limit: float) -> str:
    """One line: how many rows are over the limit, the worst, the geometric mean, the controls."""
    judged = [r for r in rows if r["verdict"] in ("ok", "SLOWER")]
    controls = [r for r in rows if r["verdict"] == "control"]
    if not judged:
        return "no rows measured on both sides."
    over = [r for r in judged if r["verdict"] == "SLOWER"]
    worst = max(judged, key=lambda r: r["ratio"])
    text = (
        f"{len(over)} of {len(judged)} rows slower than {limit:g}x old"
        f"; worst {worst['ratio']:.3f}, at {worst['name']}; geometric mean new/old {geomean(judged):.3f}"
    )
    kinds = {}  # by what follows the last ": " (accel.py's modes)
    for r in judged:
        kinds.setdefault(r["name"].rsplit(": ", 1)[-1], []).append(r)
    if 1 < len(kinds) < len(judged):  # a kind per row (or one kind) would only repeat the table
        text += " (" + ", ".join(f"{kind} {geomean(rs):.3f}" for kind, rs in kinds.items()) + ")"
    if controls:
        text += "; torch-alone controls (noise of this run): " + ", ".join(
            f"{r['ratio']:.3f}" for r in controls
        )
    return text + "."


def geomean(rows: list[dict]) -> float:
    return math.exp(sum(math.log(r["ratio"]) for r in rows) / len(rows))


def markdown_table(rows: list[dict], unit: str = "time", paired: dict | None = None) -> str:
    """| row | old | new | new/old | verdict | in markdown; unit "time" (seconds) or "count".
    With ``paired`` (:func:`paired_ratios`), a column of each row's paired median and interval."""
    show = fmt_time if unit == "time" else fmt_count
    head, rule = "| row | old | new | new/old | verdict |", "|:---|---:|---:|---:|:---|"
    if paired is not None:
        head, rule = head + " paired new/old: median [95% interval] (rounds) |", rule + "---:|"
    lines = [head, rule]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        verdict = "**SLOWER**" if r["verdict"] == "SLOWER" else r["verdict"]
        if r.get("note"):
            verdict += f" ({r['note']})"
        line = f"| {r['name']} | {show(r['old'])} | {show(r['new'])} | {ratio} | {verdict} |"
        if paired is not None:
            line += f" {fmt_paired(paired.get(r['name'], []))} |"
        lines.append(line)
    return "\n".join(lines)


def fmt_paired(ratios: list[float]) -> str:
    """``1.012 [0.981, 1.047] (16)``; without an interval (too few rounds) ``1.012 (4)``."""
    if not ratios:
        return "-"
    mid, lo, hi = median_interval(ratios)
    interval = "" if lo is None else f" [{lo:.3f}, {hi:.3f}]"
    return f"{mid:.3f}{interval} ({len(ratios)})"


def paired_summary(rows: list[dict], paired: dict, limit: float) -> str:
    """What the paired intervals decide about the rows the limit judges: over it (the whole interval
    above), within (the whole interval at or below), or not decided by this run."""
    above, within, open_ = [], [], []
    for r in rows:
        if r["verdict"] not in ("ok", "SLOWER"):
            continue
        ratios = paired.get(r["name"], [])
        lo, hi = median_interval(ratios)[1:] if ratios else (None, None)
        if lo is None:
            open_.append(r["name"])
        elif lo > limit:
            above.append(r["name"])
        elif hi <= limit:
            within.append(r["name"])
        else:
            open_.append(r["name"])
    text = (
        f"Paired (each round's new/old, old and new back to back; 95% sign-test interval of the "
        f"median): {len(above)} row(s) above {limit:g} ({', '.join(above) or 'none'}), {len(within)} "
        f"within, {len(open_)} not decided by this run"
    )
    return text + (f" ({', '.join(open_)})." if open_ and len(open_) <= 5 else ".")


def callgrind_total(text: str) -> int:
    """The instruction count of one callgrind output file (its ``totals:`` or ``summary:`` line)."""
    for key in ("totals", "summary"):
        match = re.search(rf"^{key}:\s+(\d+)", text, re.MULTILINE)
        if match:
            return int(match.group(1))
    raise ValueError("no 'totals:' or 'summary:' line: not a callgrind output file")


# What --simulate adds (callgrind's --cache-sim=yes --branch-sim=yes): a label, the events it sums
SIMULATED = {
    "L1 misses": ("I1mr", "D1mr", "D1mw"),
    "last-level misses": ("ILmr", "DLmr", "DLmw"),
    "mispredicted branches": ("Bcm", "Bim"),
}


def callgrind_events(text: str) -> dict[str, int]:
    """Every event of one callgrind output file by name, from its ``events:`` and ``totals:`` (or
    ``summary:``) lines: ``{"Ir": ..., "D1mr": ...}``."""
    names = re.search(r"^events:\s+(.+)$", text, re.MULTILINE)
    if names is None:
        raise ValueError("no 'events:' line: not a callgrind output file")
    for key in ("totals", "summary"):
        match = re.search(rf"^{key}:\s+([\d ]+)$", text, re.MULTILINE)
        if match:
            return dict(zip(names.group(1).split(), map(int, match.group(1).split())))
    raise ValueError("no 'totals:' or 'summary:' line: not a callgrind output file")


def simulated_per_step(segments: list, dumps: list[str]) -> dict[str, float]:
    """``{"case: L1 misses": per call, ...}`` for each counted segment whose dump has the simulated
    events (cache misses of callgrind's model of this machine's caches, mispredicted branches of its
    simple predictor: how the code uses the hardware, the same whatever the load)."""
    out = {}
    for (name, calls), text in zip(segments, dumps):
        if not calls:
            continue
        events = callgrind_events(text)
        for label, parts in SIMULATED.items():
            if all(p in events for p in parts):
                out[f"{name}: {label}"] = sum(events[p] for p in parts) / calls
    return out


def instructions_per_step(segments: list, dumps: list[str]) -> dict[str, float]:
    """Instructions per call of each counted segment.

    ``dumps[k]`` is the text of callgrind's (k+1)th dump, made at the (k+1)th marker call, and holds
    what ran since the previous marker; ``segments[k]`` is ``[name, calls]`` for that stretch
    (``["setup", 0]`` is not kept).
    """
    if len(dumps) != len(segments):
        raise ValueError(f"{len(dumps)} callgrind dumps for {len(segments)} marked segments")
    return {name: callgrind_total(text) / calls for (name, calls), text in zip(segments, dumps) if calls}
