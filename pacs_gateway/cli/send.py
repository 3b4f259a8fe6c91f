"""``telerad send PATH... --host --port --called-ae``: a C-STORE SCU for technicians and scripts."""

from __future__ import annotations

import sys
import time

from telerad.cliutil import ArgumentParser, run_cli


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="telerad send", description="Send DICOM files (or folders of them) with C-STORE.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--called-ae", required=True, help="the receiver's AE title")
    p.add_argument("--calling-ae", default="TELERAD", help="our AE title (default TELERAD)")
    p.add_argument("--timeout", type=float, default=30.0, help="network and DIMSE timeout in seconds (default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="one line per file, not only for failures")
    return p


class Progress:
    def __init__(self, total: int, enabled: bool, stream=sys.stderr):
        self.total, self.enabled, self.stream = total, enabled, stream
        self.done = self.failed = 0
        self.t0 = time.monotonic()

    def __call__(self, result) -> None:
        self.done += 1
        self.failed += 0 if result.ok else 1
        if self.enabled and (self.done == self.total or self.done % 10 == 0):
            rate = self.done / max(time.monotonic() - self.t0, 1e-6)
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} files, "
                f"{self.failed} failed, {rate:.0f} files/s"
            )
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        from pacs_gateway.scu import SendResult, expand_paths, inspect_file, send_files

        files = expand_paths(args.paths)
        infos, results = [], []
        for f in files:
            try:
                infos.append(inspect_file(f))
            except ValueError as exc:
                results.append(SendResult(f, None, f"skipped: {exc}"))
        if not infos:
            print("telerad send: error: no DICOM files to send", file=sys.stderr)
            for r in results:
                print(f"  {r.path}: {r.message}", file=sys.stderr)
            return 2
        progress = Progress(len(infos), enabled=not args.quiet)
        results += send_files(
            infos, args.host, args.port, args.called_ae, args.calling_ae, timeout_s=args.timeout, on_result=progress
        )
        sent = sum(1 for r in results if r.ok)
        for r in results:
            if args.verbose or not r.ok:
                code = f"0x{r.status:04X}" if r.status is not None else "-"
                print(f"{'ok    ' if r.ok else 'FAILED'} {code} {r.path}: {r.message}")
        print(f"sent {sent} of {len(results)} file(s) to {args.called_ae}@{args.host}:{args.port}; {len(results) - sent} failed")
        return 0 if sent == len(results) else 1

    return run_cli("telerad send", body)
