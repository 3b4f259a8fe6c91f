"""Triage in the loop: CTP series -> triage jobs -> results back as DICOM -> stroke alerts.

- :mod:`.jobs` queues a triage job for every complete ``ctp`` series (its own Huey
  queue and worker thread; the compute runs in a separate worker process so the
  gateway's receiving and routing never stall) and raises the ``stroke.incoming``
  pre-alert for ``ncct_head``/``cta_head`` series.
- :mod:`.runner` runs one job: analysis, index rows, maps and PNGs in the store,
  the alert, then the SEG/SR/SC result objects through the normal indexed store
  path and the routing rules (:mod:`.results`).
- :mod:`.alerts` owns the alert lifecycle, :mod:`.channels` the channels (Standard
  Webhooks signing, SMTP e-mail), :mod:`.delivery` sending with retries and
  escalation, :mod:`.roster` the on-call roster and :mod:`.rules` the alert rules
  (data, see :mod:`.config`), messages and the alert body.

The main process never imports numpy-heavy code: :mod:`.compute` runs in the worker.
"""
