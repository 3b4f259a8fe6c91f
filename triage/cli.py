"""``telerad analyze DIR``: CT-perfusion stroke triage of a folder of DICOM files.

Exit codes: 0 analysed; 2 not a usable CTP (the message names the problem);
3 a real CTP whose analysis failed (no usable AIF, uncorrectable motion).
With ``--json`` exactly one JSON object goes to stdout in every one of these
cases: the result (``"status": "ok"`` or ``"failed"``, reasons in
``quality``), or ``{"status": "rejected", "error": ...}`` for exit 2
(``"status": "error"`` for other errors, such as an unusable --device).
Messages and logs go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from telerad.cliutil import ArgumentParser, add_common_args, configure_logging, run_cli
from telerad.errors import TeleradError, UsageError
from triage.errors import AnalysisFailed, NotCTPError

PROG = "telerad analyze"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Find the CT-perfusion series in a folder of DICOM files (searched recursively), compute "
        "core and hypoperfusion volumes and print them. An automated result, not a diagnosis.",
    )
    parser.add_argument("dir", metavar="DIR", help="folder of DICOM files (any layout, any file names)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--backend", choices=["numpy", "torch"], default="numpy",
                        help="compute backend (torch needs the telerad[torch] extra)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device for the torch backend")
    parser.add_argument("--out", metavar="DIR", help="also write maps (npz, NIfTI) and PNG summaries here")
    add_common_args(parser)
    return parser


def _print_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    state = {"json": False}

    def body() -> int:
        args = build_parser().parse_args(argv)
        state["json"] = args.json
        configure_logging(args.log_level or "WARNING")
        if args.device == "cuda" and args.backend != "torch":
            raise UsageError("--device cuda needs --backend torch (the numpy backend runs on the CPU).")
        return _analyze(args)

    def guarded() -> int:
        try:
            return body()
        except AnalysisFailed as exc:  # the API returns failed results; this is a safety net
            if state["json"]:
                _print_json({"status": "failed", "error": str(exc),
                             "quality": {"reliable": False, "warnings": [
                                 {"code": "analysis_failed", "severity": "fatal", "message": str(exc)}]}})
            raise
        except TeleradError as exc:
            if state["json"]:
                status = "rejected" if isinstance(exc, NotCTPError) else "error"
                _print_json({"status": status, "error": str(exc), "exit_code": exc.exit_code})
            raise

    return run_cli(PROG, guarded)


def _analyze(args) -> int:
    from triage.api import analyze
    from triage.dicom_adapter import load_ctp

    t0 = time.perf_counter()
    series = load_ctp(args.dir)
    t1 = time.perf_counter()
    result = analyze(series, backend=args.backend, device=args.device)
    t2 = time.perf_counter()
    timings = {"read_dicom": round(t1 - t0, 3), **dict(result.timings_s or {})}
    result = dataclasses.replace(result, timings_s={**timings, "total": round(t2 - t0, 3)})
    written = []
    if args.out:
        from triage.outputs import write_outputs

        written = write_outputs(result, series, args.out)
        timings["outputs"] = round(time.perf_counter() - t2, 3)
    timings["total"] = round(time.perf_counter() - t0, 3)
    result = dataclasses.replace(result, timings_s=timings)
    doc = result.to_json_dict()
    if args.json:
        _print_json(doc)
    else:
        from triage.report import summary_text

        print(summary_text(doc))
        if written:
            print(f"\nWrote {len(written)} files to {args.out}")
    return 0 if result.status == "ok" else AnalysisFailed.exit_code
