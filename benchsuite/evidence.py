"""Theory against evidence: what the catalog proves about each problem, and what a run saw.

Each problem carries three verdicts from the literature (:class:`benchsuite.problem.Theory`,
stored as strings in the run manifest's ``problems`` entry): bounded trajectories (Josz & Li,
Definition 7), spurious local minima, and spurious local minima at infinity (Definition 3).
This module confronts them with the trajectory table, on one principle: **no confident claim
without evidence**. Evidence comes only from the four landscape labels
(:data:`benchsuite.vocabulary.CONFIDENT`); each property is read as the existence of an event:
an escape (escape_global or escape_spurious) is an unbounded trajectory, converged_spurious a
spurious local minimum (non-minimising critical points attract a null set), escape_spurious a
spurious minimum at infinity. ``diverged`` and ``step_limited`` describe the discretisation,
not the flow: they are counted as artefacts and are never evidence.

Status of a row: ``contradicts`` (the event is seen although theory proves it impossible:
an escape where trajectories are bounded, a spurious limit where there is none),
``consistent`` (seen and possible, or unseen and impossible), ``observed`` (seen, theory
unknown or open), ``not observed`` (unseen although possible or unknown: sampling may miss a
set of small measure, so the 95% upper bound on its rate is reported), ``no evidence`` (no
confident label) and ``n/a`` (negative controls, f not bounded below). One exception, from
Theorem 1 itself: converged_spurious where trajectories are bounded and there is no spurious
local minimum but a spurious minimum at infinity (Remark 2) is ``consistent``.

Per-integrator rows count trajectories. The pooled ``all integrators`` row counts *initial
points* (the ``traj`` index: every integrator starts from the same points): a point shows the
event if any integrator saw it there, so one point is never counted twice and the Wilson
interval is not narrowed by correlated repeats.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from benchsuite.stats import percent, wilson

PROPERTIES = ("bounded_trajectories", "spurious_local_minima", "spurious_minima_at_infinity")
VERDICTS = ("yes", "no", "unknown", "open", "n/a")
#: The flag column (see :func:`_flags`) that is the event of each property, and its name.
EVENT = {"bounded_trajectories": "escape", "spurious_local_minima": "converged_spurious",
         "spurious_minima_at_infinity": "escape_spurious"}
EVENT_LABEL = {"escape": "escapes", "converged_spurious": "converged_spurious",
               "escape_spurious": "escape_spurious"}
POOLED = "all integrators"
#: Theorem 1 "supports" needs this many initial points with a confident label: with none of
#: them spurious, the 95% Wilson upper bound on the spurious rate is then 0.28; fewer points
#: give bounds (0.43 at 5) too wide to support anything.
MIN_CONFIDENT = 10
#: ... and at least this share of all points confidently labelled: slow escapes (log t) are
#: exactly what stays undetermined, so a minority of labelled points may be a biased sample.
MIN_CONFIDENT_SHARE = 0.5
_COUNTS = ["n", "confident", "artefacts", "escape", "converged_spurious", "escape_spurious",
           "spurious"]
COLUMNS = ["problem", "property", "integrator", "theory", "source", "evidence", "observed",
           "confident", "n", "artefacts", "rate", "ci_low", "ci_high", "status", "note"]
T1_COLUMNS = ["problem", "verdict", "theory", "points", "confident", "spurious", "escapes",
              "artefacts", "unlabelled", "spurious_upper", "spurious_integrators",
              "explanation"]


def _theory(problems: Mapping[str, Mapping[str, Any]], name: str) -> dict[str, Any]:
    """The verdicts of one problem, tolerant of old or partial manifests."""
    meta = problems.get(name)
    if meta is None:
        return {**dict.fromkeys(PROPERTIES, "unknown"), "source": "", "theory_kind": "unknown",
                "note": "not in the run's manifest (older run): theory unknown",
                "remark2": False}
    out = {p: str(meta.get(p, "unknown")).strip().lower() for p in PROPERTIES}
    out = {p: v if v in VERDICTS else "unknown" for p, v in out.items()}
    f_star = meta.get("f_star", 0.0)
    control = meta.get("role") == "negative control" or (
        isinstance(f_star, int | float) and math.isinf(f_star) and f_star < 0)
    if control:  # f not bounded below: "spurious" and Theorem 1 have no meaning
        out.update(dict.fromkeys(PROPERTIES, "n/a"))
    # Bounded trajectories and no spurious local minimum, yet a spurious minimum at infinity:
    # Theorem 1 says another of its assumptions fails (Remark 2: infinitely many critical
    # values), and trajectories then stop at non-minimising critical points from sets of
    # positive measure, so converged_spurious is no evidence of a spurious local minimum.
    remark2 = (out["bounded_trajectories"], out["spurious_local_minima"],
               out["spurious_minima_at_infinity"]) == ("yes", "no", "yes")
    if control:
        kind = "n/a"
    elif "yes" in (out["spurious_local_minima"], out["spurious_minima_at_infinity"]):
        kind = "spurious setwise minima exist"
    elif out["spurious_local_minima"] == out["spurious_minima_at_infinity"] == "no":
        kind = "no spurious setwise minima"
    else:
        kind = "unknown"
    note = "negative control: f is not bounded below" if control else ""
    return {**out, "source": str(meta.get("source", "")), "theory_kind": kind, "note": note,
            "remark2": remark2}


def _flags(trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per trajectory: problem, integrator, initial point and boolean outcome flags."""
    outcome = trajectories["outcome"].astype(str)
    unit = (trajectories["traj"] if "traj" in trajectories
            else pd.Series(np.arange(len(trajectories)), index=trajectories.index))
    escape = outcome.isin(["escape_global", "escape_spurious"])
    spurious = outcome.isin(["converged_spurious", "escape_spurious"])
    return pd.DataFrame({
        "problem": trajectories["problem"].astype(str),
        "integrator": trajectories["integrator"].astype(str), "unit": unit, "n": True,
        "confident": escape | outcome.isin(["converged_global", "converged_spurious"]),
        "artefacts": outcome.isin(["diverged", "step_limited"]), "escape": escape,
        "converged_spurious": outcome == "converged_spurious",
        "escape_spurious": outcome == "escape_spurious", "spurious": spurious})


def _counts(trajectories: pd.DataFrame) -> pd.DataFrame:
    """Counts per (problem, integrator), trajectories as units, plus a pooled row per problem
    whose units are the initial points (a point has a flag if any integrator's row has it)."""
    flags = _flags(trajectories)
    per = flags.groupby(["problem", "integrator"])[_COUNTS].sum().reset_index()
    points = flags.groupby(["problem", "unit"])[_COUNTS].max()
    pooled = points.groupby("problem")[_COUNTS].sum().reset_index().assign(integrator=POOLED)
    both = pd.concat([pooled, per], ignore_index=True)
    both[_COUNTS] = both[_COUNTS].astype(int)
    both["pooled"] = both["integrator"] == POOLED
    return both.sort_values(["problem", "pooled", "integrator"], ascending=[True, False, True],
                            kind="stable").reset_index(drop=True)


def evidence_table(trajectories: pd.DataFrame,
                   problems: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Theory against evidence, one row per problem x property x integrator (and pooled).

    Parameters
    ----------
    trajectories : DataFrame
        A run's trajectory table (needs ``problem``, ``integrator``, ``outcome``; ``traj``
        identifies the initial point for the pooled rows).
    problems : mapping
        ``manifest["problems"]``: per problem name, :meth:`Problem.details` (verdicts as
        strings). Missing problems get theory "unknown" and a note.

    Returns
    -------
    DataFrame
        Columns :data:`COLUMNS`: the theory verdict and source, the event counted
        (``evidence``), ``observed`` events among ``confident`` labels out of ``n``,
        ``artefacts`` (diverged, step_limited), the rate with its 95% Wilson interval, the
        ``status`` (see the module docstring) and a ``note``.
    """
    if trajectories is None or len(trajectories) == 0:
        return pd.DataFrame(columns=COLUMNS)
    counts = _counts(trajectories)
    theory = {name: _theory(problems, name) for name in counts["problem"].unique()}
    frames = []
    for prop in PROPERTIES:
        event = EVENT[prop]
        verdict = counts["problem"].map(lambda p, prop=prop: theory[p][prop])
        # Read every property as "the event can happen": bounded trajectories = no escape.
        exists = verdict.replace({"yes": "no", "no": "yes"}) if prop == PROPERTIES[0] else verdict
        k, c = counts[event], counts["confident"]
        low, high = wilson(k, c)
        explained = (k > 0) & (exists == "no") & (prop == "spurious_local_minima") & counts[
            "problem"].map(lambda p: theory[p]["remark2"])
        status = np.select(
            [verdict == "n/a", c == 0, (exists == "no") & (k > 0) & ~explained,
             exists == "no", (exists == "yes") & (k > 0), k > 0],
            ["n/a", "no evidence", "contradicts", "consistent", "consistent", "observed"],
            default="not observed")
        note = counts["problem"].map(lambda p: theory[p]["note"]).where(
            ~explained, "limits at non-minimising critical points: with bounded trajectories "
            "and a spurious minimum at infinity, an assumption of Theorem 1 fails (Remark 2)")
        frames.append(pd.DataFrame({
            "problem": counts["problem"], "property": prop, "integrator": counts["integrator"],
            "theory": verdict, "source": counts["problem"].map(lambda p: theory[p]["source"]),
            "evidence": EVENT_LABEL[event], "observed": k, "confident": c, "n": counts["n"],
            "artefacts": counts["artefacts"], "rate": np.where(c > 0, k / c.clip(lower=1), np.nan),
            "ci_low": low, "ci_high": high, "status": status, "note": note}))
    # the counts come pooled row first: a stable sort keeps that order within a property
    table = pd.concat(frames, ignore_index=True)
    order = table["property"].map({p: i for i, p in enumerate(PROPERTIES)})
    return table.iloc[np.lexsort((order, table["problem"]))].reset_index(drop=True)[COLUMNS]


def contradictions(trajectories: pd.DataFrame,
                   problems: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The rows of :func:`evidence_table` whose status is ``contradicts`` (pooled included)."""
    table = evidence_table(trajectories, problems)
    return table[table["status"] == "contradicts"].reset_index(drop=True)


def theorem1_verdicts(trajectories: pd.DataFrame,
                      problems: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per problem, what the run says about Josz & Li's Theorem 1 conclusion.

    Under Assumption 1, no spurious local minima is equivalent to no spurious *setwise* local
    minima (including those at infinity). Empirically, with initial points as units:

    * ``counterexample``: some point's trajectory has a spurious limit (converged_spurious or
      escape_spurious), a spurious setwise local minimum unless it is a bug;
    * ``supports``: every confidently labelled point converges to a global minimum (bounded,
      no spurious limit), with at least :data:`MIN_CONFIDENT` such points making up at least
      :data:`MIN_CONFIDENT_SHARE` of all points; ``spurious_upper`` bounds the spurious rate;
    * ``inconclusive``: no confident label (or only artefacts), too few, too many
      undetermined, or escapes to the global infimum (assumption (e) fails: the theorem
      cannot certify);
    * ``n/a``: negative controls (f not bounded below).

    Returns
    -------
    DataFrame
        Columns :data:`T1_COLUMNS`, one row per problem of the trajectory table: counts of
        points (``unlabelled``: without a confident label), the 95% upper bound on the
        spurious rate, the integrators that saw spurious limits, and a one-line reason.
    """
    if trajectories is None or len(trajectories) == 0:
        return pd.DataFrame(columns=T1_COLUMNS)
    counts = _counts(trajectories)
    per = counts[~counts["pooled"]]
    seen = per[per["spurious"] > 0]
    who = (seen["integrator"] + " (" + seen["spurious"].astype(str) + ")").groupby(
        seen["problem"]).agg(", ".join)
    rows = []
    for row in counts[counts["pooled"]].itertuples(index=False):  # one row per problem
        theory = _theory(problems, row.problem)
        n, c, s, e, a = row.n, row.confident, row.spurious, row.escape, row.artefacts
        upper = float(wilson(s, c)[1])
        if theory["theory_kind"] == "n/a":
            verdict, why = "n/a", "f is not bounded below: Theorem 1 does not apply."
        elif s > 0:
            verdict = "counterexample"
            why = (f"{s} of {c} confidently labelled points have a spurious limit "
                   f"({who.get(row.problem, '')}): a spurious setwise local minimum, "
                   + {"no spurious setwise minima": "contradicting the catalog, or a bug.",
                      "spurious setwise minima exist": "as the catalog says."}.get(
                          theory["theory_kind"], "unless it is a bug."))
        elif c == 0:
            verdict = "inconclusive"
            why = (f"no confident label: all {n} points end in discretisation artefacts."
                   if a == n else f"no confident label among {n} points.")
        elif e > 0:
            verdict = "inconclusive"
            why = (f"{e} of {c} points escape to the global infimum: trajectories are not "
                   "bounded (assumption (e)), so Theorem 1 cannot certify; no spurious "
                   "limit was seen.")
        elif c < MIN_CONFIDENT or c < MIN_CONFIDENT_SHARE * n:
            verdict = "inconclusive"
            why = (f"no spurious limit, but only {c} of {n} points are confidently labelled "
                   f"(needs at least {MIN_CONFIDENT}, and {MIN_CONFIDENT_SHARE:.0%} of all).")
        else:
            verdict = "supports"
            why = (f"all {c} confidently labelled points converge to a global minimum: "
                   f"bounded, and a spurious rate below {percent(upper)} (95%).")
            if theory["theory_kind"] == "spurious setwise minima exist":
                why += " The catalog proves spurious minima exist: the sample missed them."
        rows.append({"problem": row.problem, "verdict": verdict,
                     "theory": theory["theory_kind"], "points": n, "confident": c,
                     "spurious": s, "escapes": e, "artefacts": a, "unlabelled": n - c,
                     "spurious_upper": upper, "spurious_integrators": who.get(row.problem, ""),
                     "explanation": why})
    return pd.DataFrame(rows, columns=T1_COLUMNS)


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _cell(row: Any) -> str:
    """One evidence entry as escaped HTML: status, count, interval or upper bound."""
    if row.status == "n/a":
        return "n/a"
    if row.status == "no evidence":
        text = f"no evidence (0 confident of {row.n})"
    elif row.observed > 0:
        text = (f"{row.status}: {row.observed}/{row.confident} {row.evidence} "
                f"({percent(row.rate)}, CI {percent(row.ci_low)}-{percent(row.ci_high)})")
    else:
        text = (f"{row.status}: 0/{row.confident} {row.evidence} "
                f"(rate \u2264 {percent(row.ci_high)})")
    if row.artefacts:
        text += f", {row.artefacts} artefact{'s' if row.artefacts > 1 else ''}"
    text = _esc(text)
    return f"<b>{text}</b>" if row.status == "contradicts" else text


_LABEL = {"bounded_trajectories": "bounded trajectories",
          "spurious_local_minima": "spurious local minima",
          "spurious_minima_at_infinity": "spurious minima at infinity"}
_STYLE = ("<style>table.evidence td { vertical-align: top; overflow-wrap: anywhere; "
          "max-width: 30em; } table.evidence td.nw { white-space: nowrap; } "
          "table.evidence small { color: #555; }</style>")


def contradiction_banner_html(trajectories: pd.DataFrame,
                              problems: Mapping[str, Mapping[str, Any]],
                              limit: int = 8) -> str:
    """A warning for the top of the report naming every contradiction ("" when none).

    Each (problem, property) is named with the proved verdict and, per integrator, the
    events among its confidently labelled trajectories.
    """
    found = contradictions(trajectories, problems)
    found = found[found["integrator"] != POOLED]
    if found.empty:
        return ""
    items = []
    for (problem, prop), group in found.groupby(["problem", "property"], sort=False):
        where = "; ".join(f"{r.integrator}: {r.observed} of {r.confident}"
                          for r in group.itertuples(index=False))
        items.append(f"{_esc(problem)}: {_LABEL[prop]} = {_esc(group['theory'].iloc[0])} "
                     f"(proved), yet {_esc(group['evidence'].iloc[0])} in "
                     f"{_esc(where)} confident trajectories")
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return ('<p class="warn"><b>Theory contradicted.</b> ' + "; ".join(items[:limit]) + more
            + ". Each is a bug (classifier, integrator, plugin) or a counterexample to the "
            "catalog: see &quot;Theory against evidence&quot;.</p>")


def _evidence_rows(table: pd.DataFrame) -> str:
    """The compact table: per problem and property, theory | pooled | per integrator."""
    rows = []
    for problem, block in table.groupby("problem", sort=False):
        first = True
        for prop, group in block.groupby("property", sort=False):
            pooled = group[group["integrator"] == POOLED].iloc[0]
            per = "<br>".join(f"{_esc(r.integrator)}: {_cell(r)}"
                              for r in group[group["integrator"] != POOLED].itertuples())
            head = ""
            if first:
                source = f"<br><small>{_esc(pooled.source)}</small>" if pooled.source else ""
                note = f"<br><small>{_esc(pooled.note)}</small>" if pooled.note else ""
                head = (f'<td rowspan="{block["property"].nunique()}">{_esc(problem)}'
                        f"{source}{note}</td>")
                first = False
            own = (f"<br><small>{_esc(pooled.note)}</small>"
                   if pooled.note and pooled.note != block["note"].iloc[0] else "")
            rows.append(f"<tr>{head}<td>{_LABEL[prop]}</td><td>{_esc(pooled.theory)}</td>"
                        f"<td>{_cell(pooled)}{own}</td><td>{per}</td></tr>")
    return ('<table class="board evidence"><thead><tr><th>problem</th><th>property</th>'
            "<th>theory</th><th>all integrators (initial points)</th>"
            "<th>per integrator (trajectories)</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _theorem1_rows(verdicts: pd.DataFrame) -> str:
    rows = []
    for r in verdicts.itertuples(index=False):
        verdict = f"<b>{r.verdict}</b>" if r.verdict == "counterexample" else _esc(r.verdict)
        upper = "" if math.isnan(r.spurious_upper) else percent(r.spurious_upper)
        rows.append(f'<tr><td>{_esc(r.problem)}</td><td class="nw">{verdict}</td>'
                    f"<td>{_esc(r.theory)}</td><td>{r.confident}/{r.points}</td>"
                    f"<td>{r.spurious}</td><td>{r.escapes}</td><td>{r.artefacts}</td>"
                    f"<td>{upper}</td><td>{_esc(r.explanation)}</td></tr>")
    return ('<table class="board evidence"><thead><tr><th>problem</th><th>verdict</th>'
            "<th>theory</th><th>confident / points</th><th>spurious</th><th>escapes</th>"
            "<th>artefacts</th><th>spurious rate &le; (95%)</th><th>why</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def evidence_html(trajectories: pd.DataFrame,
                  problems: Mapping[str, Mapping[str, Any]]) -> str:
    """The report section "Theory against evidence" ("" for an empty table).

    Flags first (contradictions, then evidence on open questions), then the per-problem
    table (theory | all integrators | per integrator) and the Theorem 1 table. Every text
    from the run or the manifest is escaped.
    """
    table = evidence_table(trajectories, problems)
    if table.empty:
        return ""
    parts = [_STYLE, "<h2>Theory against evidence</h2>",
             "<p>Only the four landscape labels count as evidence; diverged and step_limited "
             "trajectories are discretisation artefacts and never count. Rates come with 95% "
             "Wilson intervals; &quot;not observed&quot; gives the upper bound on the rate of "
             "an event the sample may have missed. The pooled column counts initial points "
             "(an event from any integrator).</p>"]
    banner = contradiction_banner_html(trajectories, problems)
    parts.append(banner or "<p>No confident label contradicts a proved property.</p>")
    pooled = table[table["integrator"] == POOLED]
    open_ = pooled[pooled["theory"].isin(["unknown", "open"]) & (pooled["status"] == "observed")]
    if len(open_):
        parts.append("<p>Evidence on questions the theory leaves open: " + "; ".join(
            f"{_esc(r.problem)}, {_LABEL[r.property]} ({_esc(r.theory)}): {_cell(r)}"
            for r in open_.itertuples(index=False)) + ".</p>")
    parts.append(_evidence_rows(table))
    parts.append("<h3>Theorem 1 (Josz &amp; Li): no spurious setwise local minima?</h3>"
                 f"<p>Per problem, with initial points as units; &quot;supports&quot; needs "
                 f"at least {MIN_CONFIDENT} confidently labelled points, at least "
                 f"{MIN_CONFIDENT_SHARE:.0%} of all, none escaping or spurious.</p>")
    parts.append(_theorem1_rows(theorem1_verdicts(trajectories, problems)))
    return "\n".join(parts)
