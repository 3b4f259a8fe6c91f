"""DCMTK peers: ``echoscu``, ``storescu`` (one or several associations) and ``storescp``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.peers._common import (
    LOOPBACK,
    PathLike,
    PeerError,
    _port_open,
    _stop_process,
    _tail,
    dcmtk_env,
    free_port,
    start_retrying_busy_port,
)


def have_dcmtk() -> bool:
    return all(shutil.which(tool) for tool in ("storescu", "storescp", "echoscu"))


def run_echoscu(
    host: str,
    port: int,
    *,
    calling_ae: str = "ECHOSCU",
    called_ae: str = "ANY-SCP",
    timeout: float = 10.0,
) -> subprocess.CompletedProcess[str]:
    """One C-ECHO with DCMTK ``echoscu``; never raises on a failed echo (check ``returncode``)."""
    secs = str(max(1, int(timeout)))
    cmd = ["echoscu", "-aet", calling_ae, "-aec", called_ae, "-to", secs, "-ta", secs, "-td", secs, host, str(port)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=dcmtk_env(), timeout=timeout + 5, check=False)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, 124, exc.stdout or "", f"echoscu timed out after {timeout}s")


def storescu_command(
    files_or_dir: PathLike | Iterable[PathLike],
    host: str,
    port: int,
    calling_ae: str = "STORESCU",
    called_ae: str = "ANY-SCP",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``storescu`` argv for a directory (scanned recursively) or a list of files."""
    cmd = ["storescu", "-v", "-aet", calling_ae, "-aec", called_ae, "-to", "30", "-ta", "30", "-td", "60", *extra_args]
    if isinstance(files_or_dir, (str, os.PathLike)) and Path(files_or_dir).is_dir():
        cmd += ["+sd", "+r", host, str(port), str(files_or_dir)]
    elif isinstance(files_or_dir, (str, os.PathLike)):
        cmd += [host, str(port), str(files_or_dir)]
    else:
        files = [str(f) for f in files_or_dir]
        if not files:
            raise ValueError("Argument 'files_or_dir' should name at least one file.")
        cmd += [host, str(port), *files]
    return cmd


#: ``storescu`` option that proposes a transfer syntax (plus the uncompressed ones).
#: Send already-compressed files with the flag for their syntax, one syntax per run,
#: or DCMTK tries to decompress them (and fails for most codecs).
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
}


def propose_args(transfer_syntax_uid: str) -> list[str]:
    """``storescu`` arguments to send files encoded in ``transfer_syntax_uid`` as they are."""
    try:
        return [STORESCU_PROPOSE[str(transfer_syntax_uid)]]
    except KeyError:
        raise ValueError(f"storescu cannot propose transfer syntax {transfer_syntax_uid!r}") from None


def run_storescu(
    files_or_dir: PathLike | Iterable[PathLike],
    host: str,
    port: int,
    calling_ae: str = "STORESCU",
    called_ae: str = "ANY-SCP",
    *,
    extra_args: Sequence[str] = (),
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    """Send with DCMTK ``storescu`` over one association (``TCP_NODELAY=1``).

    Never raises on a failed send: check ``returncode`` and ``stderr``. A run
    past ``timeout`` seconds is killed and reported with returncode 124.
    ``-v`` is always on so that :func:`store_results` can read every status.
    Useful ``extra_args``: :func:`propose_args` (needed for compressed files),
    ``-nh`` (carry on after a failed store), ``-xf cfg profile``.
    """
    cmd = storescu_command(files_or_dir, host, port, calling_ae, called_ae, extra_args)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=dcmtk_env(), timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return subprocess.CompletedProcess(cmd, 124, out, err + f"\nstorescu timed out after {timeout}s")


def run_storescu_concurrently(
    batches: Sequence[Sequence[PathLike]],
    host: str,
    port: int,
    calling_ae: str = "STORESCU",
    called_ae: str = "ANY-SCP",
    *,
    extra_args: Sequence[str] = (),
    timeout: float = 300.0,
) -> list[subprocess.CompletedProcess[str]]:
    """Start one ``storescu`` (one association) per batch, all at once; wait for all.

    Returns one CompletedProcess per batch, in order; a process still running
    after ``timeout`` seconds is killed and reported with returncode 124.
    """
    procs = []
    for batch in batches:
        cmd = storescu_command(batch, host, port, calling_ae, called_ae, extra_args)
        procs.append(
            (cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dcmtk_env()))
        )
    deadline = time.monotonic() + timeout
    results = []
    for cmd, proc in procs:
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            results.append(subprocess.CompletedProcess(cmd, 124, out, err + f"\nstorescu timed out after {timeout}s"))
    return results


def store_results(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """``[(file, status), ...]`` from a verbose ``storescu`` run, in sending order.

    ``status`` is DCMTK's word for the C-STORE response ("Success",
    "Warning", "Failed: ..."), or "no presentation context" / "not sent"
    when the file got no answer. Check this rather than the exit code: DCMTK
    3.6.7 ``storescu`` exits 0 even when stores fail.
    """
    results: list[tuple[str, str]] = []
    current: str | None = None
    for line in (result.stderr or "").splitlines() + (result.stdout or "").splitlines():
        text = line.split(": ", 1)[1] if line[:3] in ("I: ", "E: ", "W: ") else line
        if text.startswith("Sending file: "):
            if current is not None:
                results.append((current, "not sent"))
            current = text[len("Sending file: ") :]
        elif text.startswith("Received Store Response") and current is not None:
            status = text[len("Received Store Response") :].strip()
            results.append((current, status[1:-1] if status.startswith("(") else status))
            current = None
        elif text.startswith("No presentation context for"):
            if current is not None:
                results.append((current, "no presentation context"))
                current = None
    if current is not None:
        results.append((current, "not sent"))
    return results


def stored_ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Files of a verbose ``storescu`` run that got a Success response."""
    return [path for path, status in store_results(result) if status == "Success"]


def wait_for_echo(
    host: str,
    port: int,
    *,
    timeout: float = 30.0,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "ECHOSCU",
    proc: subprocess.Popen[Any] | None = None,
    log: PathLike | None = None,
) -> None:
    """Poll with ``echoscu`` until the SCP answers; raise :class:`PeerError` after ``timeout`` s.

    If ``proc`` is given and exits meanwhile, fail at once (with the tail of ``log``).
    """
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"process exited with {proc.returncode} before answering C-ECHO on {port}{_tail(log)}")
        if _port_open(host, port):
            result = run_echoscu(host, port, called_ae=called_ae, calling_ae=calling_ae, timeout=5)
            if result.returncode == 0:
                return
            last = (result.stderr or result.stdout).strip()
        time.sleep(0.1)
    raise PeerError(f"no C-ECHO answer from {host}:{port} within {timeout}s ({last}){_tail(log)}")


# --------------------------------------------------------------------------- storescp
#: Transfer syntaxes a restricted ``storescp`` accepts (all that DCMTK can receive).
_STORESCP_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1.99",  # deflated
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
)
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"


def storescp_profile(accepted_sop_classes: Iterable[str]) -> str:
    """A DCMTK association-negotiation config (profile ``Accept``) for only these SOP classes.

    Verification is always accepted. Any other SOP class is refused during
    association negotiation (abstract syntax not supported), so a sender has no
    presentation context for it.
    """
    classes = [VERIFICATION_SOP_CLASS, *[c for c in accepted_sop_classes if c != VERIFICATION_SOP_CLASS]]
    lines = ["[[TransferSyntaxes]]", "[AnyTS]"]
    lines += [f"TransferSyntax{i} = {uid}" for i, uid in enumerate(_STORESCP_SYNTAXES, 1)]
    lines += ["", "[[PresentationContexts]]", "[Accepted]"]
    lines += [f"PresentationContext{i} = {uid}\\AnyTS" for i, uid in enumerate(classes, 1)]
    lines += ["", "[[Profiles]]", "[Accept]", "PresentationContexts = Accepted", ""]
    return "\n".join(lines)


class StorescpPeer:
    """DCMTK ``storescp`` writing every received instance into ``directory``.

    Use as a context manager; it accepts all supported transfer syntaxes and
    any calling AE. ``fork=True`` serves each association in its own process.
    ``accepted_sop_classes`` restricts the storage SOP classes it negotiates
    (the others are refused at association negotiation); this is the real-peer
    way to test "destination does not accept this SOP class".
    """

    def __init__(
        self,
        directory: PathLike,
        port: int | None = None,
        *,
        fork: bool = False,
        aet: str = "STORESCP",
        extra_args: Sequence[str] = (),
        accepted_sop_classes: Iterable[str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.directory = Path(directory)
        self.accepted_sop_classes = None if accepted_sop_classes is None else list(accepted_sop_classes)
        self.port = port or free_port()
        self._own_port = port is None  # chosen here: another free port may be taken if it is lost
        self.host = LOOPBACK
        self.aet = aet
        self.fork = fork
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.log_path = self.directory.parent / f"storescp-{self.port}.log"
        self.profile_path = self.directory.parent / f"storescp-{self.port}.cfg"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.accepted_sop_classes is None:
            negotiation = ["+xa"]
        else:
            negotiation = ["-xf", str(self.profile_path), "Accept"]
        cmd = ["storescp", "-aet", self.aet, *negotiation, "-dhl", "-od", str(self.directory), *self.extra_args]
        if self.fork:
            cmd.append("--fork")
        return [*cmd, str(self.port)]

    def start(self) -> StorescpPeer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.accepted_sop_classes is not None:
            self.profile_path.write_text(storescp_profile(self.accepted_sop_classes))
        # Between free_port() and storescp's bind, another process (a test's outgoing connection) may
        # take the port; storescp then exits with "Address already in use".
        start_retrying_busy_port(self._launch, self._wait_echo, self.stop, self.log_path, self._repick, pause_s=0.5)
        return self

    def _launch(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=dcmtk_env(), start_new_session=True
            )

    def _wait_echo(self) -> None:
        wait_for_echo(self.host, self.port, timeout=self.start_timeout, proc=self.proc, log=self.log_path)

    def _repick(self) -> None:
        if self._own_port:
            self.port = free_port()

    def stop(self) -> None:
        _stop_process(self.proc)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PeerError("storescp is not running")
        return self.proc.pid

    def files(self) -> list[Path]:
        """Received files (storescp names them ``<modality>.<SOP Instance UID>``)."""
        return sorted(p for p in self.directory.rglob("*") if p.is_file())

    def __enter__(self) -> StorescpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


