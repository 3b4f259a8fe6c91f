"""The DIMSE sender over telerad's own blocking-socket requestor (:mod:`pacs_gateway.ul.requestor`).

Same choices as :class:`~pacs_gateway.routing.dimse_sender.DimseSender` (wire
compression, as stored, re-encoded; permanent failure when nothing fits), but
each C-STORE goes out with ``sendmsg`` straight from the file's bytes and its
response is read at once: no reactor threads, no polling. Chosen with
``routing.sender = "ul"``; destinations with TLS always use pynetdicom.
"""

from __future__ import annotations

from pathlib import Path

from pynetdicom.dsutils import encode

from pacs_gateway.routing.dimse_sender import DimseSender
from pacs_gateway.routing.sender import DestinationUnavailable, Outgoing
from pacs_gateway.ul.requestor import AssociationError, StoreAssociation
from telerad.dicom_header import part10_layout


def _dataset_view(data: bytes) -> memoryview:
    """The data set after the Part-10 preamble and file meta group (the whole buffer when it has no preamble).

    Raises ``telerad.dicom_header.Unsupported`` for a Part-10 file whose file meta group is broken."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return memoryview(data)[part10_layout(data)[0]:]
    return memoryview(data)


class UlSender(DimseSender):
    ua: StoreAssociation | None = None

    def __enter__(self) -> "UlSender":
        cfg, o = self.dest.config, self.opts
        contexts = [(str(cx.abstract_syntax), [str(t) for t in cx.transfer_syntax]) for cx in self._contexts]
        ua = StoreAssociation(
            cfg.host, cfg.port, calling_ae=cfg.calling_ae or o.calling_ae, called_ae=cfg.ae_title, contexts=contexts,
            max_pdu=o.max_pdu, timeout=o.dimse_timeout_s, connect_timeout=o.connect_timeout_s,
        )  # fmt: skip
        try:
            ua.open()
        except AssociationError as exc:
            raise DestinationUnavailable(f"{self.where}: {exc}") from None
        self.ua = self.assoc = ua
        self.accepted = set(ua.accepted.values())
        if not self.accepted:
            self.none_accepted = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.ua is not None and self.ua.sock is not None:
            self.ua.release()

    def _alive(self) -> bool:
        return self.ua is not None and self.ua.sock is not None

    def _store(self, it: Outgoing, ts: str, dataset) -> int | None:
        assert self.ua is not None
        cid = self.ua.context_for(it.sop_class_uid, ts)
        if cid is None:
            raise ValueError(f"no accepted context for {it.sop_class_uid} in {ts}")
        try:
            status, _comment = self.ua.store(cid, it.sop_class_uid, it.sop_instance_uid, dataset)
        except AssociationError as exc:
            raise DestinationUnavailable(f"{self.where}: {exc}") from None
        return status

    def _store_file(self, it: Outgoing, path: Path, ts: str) -> int | None:
        return self._store(it, ts, _dataset_view(Path(path).read_bytes()))

    def _store_dataset(self, it: Outgoing, ds, ts: str) -> int | None:
        from pydicom.uid import UID

        uid = UID(ts)
        data = encode(ds, uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated)
        if data is None:
            raise ValueError(f"cannot encode the data set in {ts}")
        return self._store(it, ts, data)
