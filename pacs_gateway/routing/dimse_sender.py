"""The DIMSE sender: pynetdicom C-STORE SCU, one association for a batch of one series.

Per instance, in this order of preference:

1. compressed for the wire (``compression`` set, the file stored uncompressed and
   the destination accepted that syntax), from a scratch copy;
2. as stored (raw bytes from the store, never decoded) when the stored syntax
   was accepted;
3. re-encoded into an accepted uncompressed syntax (decompressed if needed);
4. otherwise a permanent failure: the destination accepts no presentation
   context for this SOP class.

Two things MEASURED.md asks for:

- ``TCP_NODELAY`` on the socket (3.5x faster on loopback);
- robustness against "no reply": pynetdicom 3.0's association reactor can take a
  C-STORE response off the DIMSE queue while ``send_c_store`` briefly believes
  the reactor is paused (its ``_is_paused`` handshake races under the GIL) and
  drops it as an "unexpected C-STORE service message"; the sender then waits
  for the DIMSE timeout. We hand such responses back to the queue
  (:func:`_keep_responses`). Any remaining silence still ends at
  ``dimse_timeout_s`` with :class:`DestinationUnavailable`, and the engine
  resumes on a new association.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, build_context

from pacs_gateway.routing.destinations import DestinationInfo
from pacs_gateway.routing.retry import classify_status
from pacs_gateway.routing.sender import DestinationUnavailable, Outcome, Outgoing, SenderOptions
from pacs_gateway.routing.wire import WIRE_SYNTAXES, WireCopy, WireEncodingError, can_compress, compress_copy
from pacs_gateway.scu import association_failure

log = logging.getLogger(__name__)

# Send stored files as they are (chunked from disk, never decoded) when the syntax is accepted.
_config.STORE_SEND_CHUNKED_DATASET = True
MAX_CONTEXTS = 128
_PLAIN = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))


def _keep_responses(assoc) -> None:
    """Put DIMSE responses that the association reactor took back on the queue (see module doc)."""
    serve = assoc._serve_request

    def serve_or_return(msg, context_id):
        if not msg.is_valid_request:
            assoc.dimse.msg_queue.put((context_id, msg))
            return
        serve(msg, context_id)

    assoc._serve_request = serve_or_return


def _tls_args(dest: DestinationInfo):
    tls = dest.config.tls
    if tls is None or not tls.enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx, tls.server_hostname or dest.config.host


class DimseSender:
    def __init__(self, destination: DestinationInfo, items: Sequence[Outgoing], options: SenderOptions):
        self.dest, self.opts = destination, options
        cfg = destination.config
        self.where = f"{cfg.ae_title}@{cfg.host}:{cfg.port}"
        self.compression = cfg.compression
        self.wire_syntax = WIRE_SYNTAXES.get(self.compression)
        self.assoc = None
        self.accepted: set[tuple[str, str]] = set()
        self._contexts = self._plan_contexts(items)
        self._pool: ThreadPoolExecutor | None = None
        self.none_accepted = False

    def _plan_contexts(self, items: Sequence[Outgoing]):
        wanted: dict[str, list[str]] = {}
        for it in items:
            lst = wanted.setdefault(it.sop_class_uid, [])
            if self.wire_syntax and can_compress(it.transfer_syntax, self.compression) and self.wire_syntax not in lst:
                lst.append(self.wire_syntax)
            if it.transfer_syntax not in lst:
                lst.append(it.transfer_syntax)
        contexts = []
        for sop, syntaxes in wanted.items():
            contexts.extend(build_context(sop, [ts]) for ts in syntaxes)
            if not set(_PLAIN) <= set(syntaxes):
                contexts.append(build_context(sop, list(_PLAIN)))
        return contexts[:MAX_CONTEXTS]

    # connection ---------------------------------------------------------------
    def __enter__(self) -> "DimseSender":
        cfg, o = self.dest.config, self.opts
        ae = AE(ae_title=cfg.calling_ae or o.calling_ae)
        ae.acse_timeout = o.connect_timeout_s
        ae.connection_timeout = o.connect_timeout_s
        ae.dimse_timeout = o.dimse_timeout_s
        ae.network_timeout = max(o.dimse_timeout_s, o.connect_timeout_s)
        ae.maximum_pdu_size = o.max_pdu
        ae.requested_contexts = self._contexts
        try:
            tls = _tls_args(self.dest)
        except (OSError, ssl.SSLError) as exc:
            raise DestinationUnavailable(f"TLS settings of destination '{self.dest.name}' cannot be used: {exc}") from None
        kwargs = {"tls_args": tls} if tls else {}
        assoc = ae.associate(cfg.host, cfg.port, ae_title=cfg.ae_title, **kwargs)
        if not assoc.is_established and assoc.rejected_contexts and not assoc.accepted_contexts:
            # the peer accepted the association but none of our presentation contexts: every
            # item fails for good (send() reports each one); pynetdicom has aborted already
            self.none_accepted = True
            return self
        if not assoc.is_established:
            raise DestinationUnavailable(association_failure(assoc, cfg.host, cfg.port, cfg.ae_title))
        try:
            assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):
            pass
        _keep_responses(assoc)
        self.assoc = assoc
        self.accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.assoc is not None:
            if self.assoc.is_established:
                self.assoc.release()
            else:
                self.assoc.abort()

    # sending ------------------------------------------------------------------
    def _choice(self, it: Outgoing) -> tuple[str, str] | None:
        """``(how, syntax)``: how in {"compress", "stored", "convert"}; None if nothing fits."""
        if self.wire_syntax and can_compress(it.transfer_syntax, self.compression) and (it.sop_class_uid, self.wire_syntax) in self.accepted:
            return "compress", self.wire_syntax
        if (it.sop_class_uid, it.transfer_syntax) in self.accepted:
            return "stored", it.transfer_syntax
        for ts in _PLAIN:
            if (it.sop_class_uid, ts) in self.accepted:
                return "convert", ts
        return None

    def _prepare(self, it: Outgoing) -> WireCopy:
        assert self.opts.scratch_dir is not None
        return compress_copy(it.path, self.compression, self.opts.scratch_dir)

    def send(self, items: Sequence[Outgoing]) -> Iterator[Outcome]:
        if self.none_accepted:
            for it in items:
                yield self._send_one(it, None, None)
            return
        if self.assoc is None:
            raise RuntimeError("use the sender as a context manager")
        choices = [self._choice(it) for it in items]
        futures: dict[int, Future] = {}
        if any(c and c[0] == "compress" for c in choices) and self.opts.scratch_dir is not None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wire-encode")
        lookahead = 3
        for i, (it, choice) in enumerate(zip(items, choices)):
            if self.opts.stop.is_set():
                return
            if self._pool is not None:  # encode the next few while this one is on the wire
                for j in range(i, min(i + lookahead, len(items))):
                    if j not in futures and choices[j] and choices[j][0] == "compress":
                        futures[j] = self._pool.submit(self._prepare, items[j])
            yield self._send_one(it, choice, futures.pop(i, None))
            if not self._alive():
                raise DestinationUnavailable(f"association with {self.where} was lost")

    def _send_one(self, it: Outgoing, choice, pending: Future | None) -> Outcome:
        if choice is None:
            return Outcome(
                it.key, False, True,
                f"destination accepts no presentation context for SOP class {UID(it.sop_class_uid).name} "
                f"({it.sop_class_uid}) in any syntax we can send",
            )  # fmt: skip
        how, ts = choice
        t0 = time.monotonic()
        copy: WireCopy | None = None
        note = ""
        try:
            if how == "compress":
                try:
                    copy = pending.result() if pending is not None else self._prepare(it)
                except WireEncodingError as exc:
                    note = f"; sent uncompressed ({exc})"
                    how, ts = ("stored", it.transfer_syntax) if (it.sop_class_uid, it.transfer_syntax) in self.accepted else self._choice_plain(it)
            if copy is not None:
                status = self._store_file(it, copy.path, ts)
                sent = copy.size
            elif how == "stored":
                status = self._store_file(it, it.path, ts)
                sent = it.size
            else:
                ds = dcmread(it.path)
                if ds.file_meta.TransferSyntaxUID.is_compressed:
                    ds.decompress()
                ds.file_meta.TransferSyntaxUID = UID(ts)
                status = self._store_dataset(it, ds, ts)
                sent = it.size
        except FileNotFoundError:
            return Outcome(it.key, False, True, f"the stored file {it.path} is missing")
        except (InvalidDicomError, ValueError, AttributeError, RuntimeError) as exc:
            if not self._alive():
                raise DestinationUnavailable(f"association with {self.where} was lost: {exc}") from None
            return Outcome(it.key, False, True, f"cannot send the stored file: {exc}")
        finally:
            if copy is not None:
                copy.discard()
        if status is None:
            if time.monotonic() - t0 < self.opts.dimse_timeout_s * 0.9:
                raise DestinationUnavailable(f"the connection to {self.where} was lost during a C-STORE")
            raise DestinationUnavailable(
                f"no C-STORE response from {self.where} within {self.opts.dimse_timeout_s:g} s (association aborted)"
            )
        verdict = classify_status(status)
        saved = max(0, it.size - sent) if copy is not None else 0
        return Outcome(
            it.key, verdict.delivered, verdict.permanent, verdict.message + note, status=status,
            wire_syntax=ts, bytes_sent=sent, bytes_saved=saved,
        )  # fmt: skip

    # transport (pynetdicom); UlSender overrides these three ---------------------------
    def _alive(self) -> bool:
        return self.assoc is not None and self.assoc.is_established

    def _store_file(self, it: Outgoing, path, ts: str) -> int | None:
        rsp = self.assoc.send_c_store(path)
        return int(rsp.Status) if rsp is not None and "Status" in rsp else None

    def _store_dataset(self, it: Outgoing, ds, ts: str) -> int | None:
        rsp = self.assoc.send_c_store(ds)
        return int(rsp.Status) if rsp is not None and "Status" in rsp else None

    def _choice_plain(self, it: Outgoing) -> tuple[str, str]:
        for ts in _PLAIN:
            if (it.sop_class_uid, ts) in self.accepted:
                return "convert", ts
        raise ValueError("the destination accepts only the compressed syntax, and compression failed")
