"""Human-readable text of a triage result, shared by the CLI summary and the PNG overlays.

Everything here works on the JSON dict (``TriageResult.to_json_dict()``), so
alerting and the viewer can reuse it on stored results without the maps.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DISCLAIMER", "eligibility_line", "fmt_ml", "headline", "summary_text", "warning_lines"]

DISCLAIMER = "Automated result \u2014 not a diagnosis. Review the images before any treatment decision."

_TRIALS = (("defuse3", "DEFUSE 3"), ("extend_ia", "EXTEND-IA"))


def fmt_ml(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} mL"


def _fmt_ratio(value: float | None, core_ml: float | None) -> str:
    if value is None:
        return "n/a (core 0 mL)" if core_ml == 0 else "n/a"
    return f"{value:.2f}"


def headline(d: dict[str, Any]) -> str:
    """One line: core, Tmax>6 s, mismatch (the numbers a stroke team reads first)."""
    if d.get("status") != "ok":
        return "ANALYSIS FAILED \u2014 no volumes"
    return (f"Core {fmt_ml(d.get('core_ml'))} | Tmax>6s {fmt_ml(d.get('tmax6_ml'))} | "
            f"Mismatch {fmt_ml(d.get('mismatch_ml'))} (ratio {_fmt_ratio(d.get('mismatch_ratio'), d.get('core_ml'))})")


def eligibility_line(key: str, label: str, verdict: dict[str, Any]) -> str:
    """'DEFUSE 3: eligible (core 12.0 < 70 mL, mismatch 40.0 >= 15 mL, ratio 4.3 >= 1.8)'."""
    eligible = verdict.get("eligible")
    c = verdict.get("criteria") or {}
    if eligible is None:
        return f"{label}: not assessed"
    word = "meets target mismatch" if eligible else "does not meet target mismatch"
    parts = []
    if "core_ml" in c:
        parts.append(f"core {c['core_ml']:.1f} {'<' if c.get('core_ok') else '>='} {c.get('core_max_ml', 70):g} mL")
    if "mismatch_ml" in c:
        parts.append(f"{c.get('mismatch_rule', 'mismatch')}: {c['mismatch_ml']:.1f} "
                     f"({'met' if c.get('mismatch_ok') else 'not met'})")
    if "ratio_rule" in c:
        ratio = c.get("mismatch_ratio")
        shown = "inf (core 0)" if ratio is None else f"{ratio:.2f}"
        parts.append(f"{c['ratio_rule']}: {shown} ({'met' if c.get('ratio_ok') else 'not met'})")
    return f"{label}: {word}" + (f" ({'; '.join(parts)})" if parts else "")


def warning_lines(d: dict[str, Any]) -> list[str]:
    quality = d.get("quality") or {}
    return [f"[{w.get('severity', '?')}] {w.get('code', '?')}: {w.get('message', '')}"
            for w in quality.get("warnings") or []]


def _range_line(quality: dict[str, Any]) -> list[str]:
    """The Tmax > 6 s volume if every Tmax were the engine's accuracy earlier / later (absent from older results)."""
    rng, shift = quality.get("tmax6_range_ml"), quality.get("tmax6_range_shift_s")
    if not rng or shift is None:
        return []
    return [f"    if Tmax were {float(shift):g} s earlier / later {float(rng[0]):.1f}-{float(rng[1]):.1f} mL"]


def summary_text(d: dict[str, Any]) -> str:
    """A readable multi-line summary for the terminal."""
    algo = d.get("algorithm") or {}
    quality = d.get("quality") or {}
    lines = [
        f"telerad CT-perfusion triage \u2014 {algo.get('name', '?')} {algo.get('version', '?')}"
        + (f" ({algo['backend']}/{algo.get('device', 'cpu')})" if algo.get("backend") else ""),
        f"Study  {d.get('study_instance_uid') or '-'}",
        f"Series {d.get('series_instance_uid') or '-'}",
        "",
    ]
    if d.get("status") == "ok":
        lines += [
            "Result: " + ("reliable" if quality.get("reliable") else "NOT RELIABLE \u2014 see warnings"),
            f"  Core (rCBF < 30%)              {fmt_ml(d.get('core_ml')):>10}",
            f"  Hypoperfusion (Tmax > 6 s)     {fmt_ml(d.get('tmax6_ml')):>10}",
            *_range_line(quality),
            f"  Severe (Tmax > 10 s)           {fmt_ml(d.get('tmax10_ml')):>10}",
            f"  Mismatch volume                {fmt_ml(d.get('mismatch_ml')):>10}",
            f"  Mismatch ratio                 {_fmt_ratio(d.get('mismatch_ratio'), d.get('core_ml')):>10}",
            f"  Hypoperfusion intensity ratio  {_fmt_ratio(d.get('hypoperfusion_intensity_ratio'), None):>10}",
            f"  Affected side                  {d.get('affected_side') or 'none found':>10}",
            "",
            "Eligibility (imaging criteria only):",
        ]
        elig = d.get("eligibility") or {}
        lines += [f"  {eligibility_line(k, label, elig.get(k) or {})}" for k, label in _TRIALS]
    else:
        lines.append("Result: ANALYSIS FAILED \u2014 no volumes were computed.")
    warnings = warning_lines(d)
    lines += ["", "Quality warnings:" if warnings else "Quality warnings: none"]
    lines += [f"  {w}" for w in warnings]
    if quality.get("max_displacement_mm") is not None:
        lines.append(f"  max displacement {float(quality['max_displacement_mm']):.1f} mm")
    timings = d.get("timings_s") or {}
    if timings:
        lines += ["", "Timings: " + ", ".join(f"{k} {float(v):.2f} s" for k, v in timings.items()
                                             if isinstance(v, (int, float)))]
    lines += ["", DISCLAIMER]
    return "\n".join(lines)
