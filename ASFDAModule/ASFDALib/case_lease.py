"""The annotator's lease on the open case: who they are, which case they hold, the calls that take and return it.

A worker shared by several clinicians leases each case to one annotator at a time (docs/worker.md, "Several
annotators"), so two people never correct the same volume. ``CaseLease`` is GUI-thread state; its ``open*``,
``renew`` and ``release`` calls do worker I/O and run in background threads, never in the GUI refresh.
A worker older than leases answers their routes with 404 "Not Found": the module then works as before.
"""

import logging
import re
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from .client import WorkerError, routeUnknown

MAX_NAME_CHARS = 100  # the worker's limit
RENEW_INTERVAL_S = 300.0  # well inside the worker's default 30-minute lease
_HOLDER = re.compile(r"is leased to (.+?)(?: until |, not to |$)")


def cleanAnnotatorName(text):
    """The name as the worker keeps it (whitespace collapsed); ValueError with the reason when unusable."""
    name = " ".join(str(text or "").split())
    if not name:
        raise ValueError("Enter the annotator's name (connection section)")
    if len(name) > MAX_NAME_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"The annotator's name must be 1-{MAX_NAME_CHARS} printable characters")
    return name


def isLoopbackUrl(url):
    host = urllib.parse.urlsplit(url if "://" in url else "http://" + url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def checkToken(url, token):
    """Beyond this computer every annotator has their own token: say so before the worker answers 401."""
    if not isLoopbackUrl(url.strip()) and not (token or "").strip():
        raise ValueError(
            "A worker on another computer needs your own annotator token (from its administrator) in Token"
        )


def holderOf(error):
    """The annotator named by a 409 lease conflict, or None when the text names nobody."""
    match = _HOLDER.search(str(error))
    return match.group(1) if match else None


def lacksLeases(error):
    """True when the worker predates leases: its router does not know the route at all."""
    return routeUnknown(error)


def revisionOf(reply):
    """The label revision a lease reply says the case holds: its id, "" for none, None when the worker
    predates revisions (no such field) and a submit cannot name what it was opened from."""
    if not isinstance(reply, dict) or "revision" not in reply:
        return None
    return reply["revision"] or ""


def conflictMessage(caseId, error):
    """What the clinician reads when the worker refused a label because the case changed (HTTP 409)."""
    reason = str(error).split("HTTP 409: ", 1)[-1]
    return (
        f"The label of {caseId} was not submitted: {reason}. Your edits are still in the scene; "
        "save them if you need them, then open the case again to see the current label."
    )


def release(client, caseId):
    """Give a lease back (background thread). A failure is only logged: the lease expires on its own."""
    try:
        client.releaseCase(caseId)
    except WorkerError as error:
        if not lacksLeases(error):
            logging.warning("ASFDA: could not release case %s: %s", caseId, error)


@dataclass
class Opening:
    """What a background "open a case" call found: the case's files, or who holds it instead."""

    client: Any
    caseId: str
    files: Optional[dict] = None
    leased: bool = False
    heldBy: Optional[str] = None  # someone else holds the case: it is not opened
    detail: str = ""
    revision: Optional[str] = None  # the label revision opened ("" none, None unknown): sent with the submit


class CaseLease:
    """The one case this Slicer holds on the worker, and the calls that take it, renew it and give it back."""

    def __init__(self):
        self.client = None
        self.caseId = None
        self.workerHasLeases = True
        self._giveBack = []  # leases of a previous connection, returned by the next renew()
        self.openedLabel = (None, None)  # (case id, label revision it was opened from) of the loaded case
        self.labelChange = None  # "r0002 by Dr. Bea" when a renewal found the label changed since opening
        # The poller's renew() runs beside the GUI thread's left()/submitted(): a renewal that was in flight
        # when the case was left would hold it again for the worker's whole lease time.
        self._lock = threading.Lock()
        self._holding = 0  # counts each change of the held case

    # -- background thread ---------------------------------------------------------------------

    def open(self, client, caseId, fetch: Callable, leased=False, revision=None):
        """Lease ``caseId`` (renewing is harmless) and download it with ``fetch(client, caseId[, revision])``."""
        if not leased and self.workerHasLeases:
            try:
                revision = revisionOf(client.leaseCase(caseId))
                leased = True
            except WorkerError as error:
                if error.status == 409:
                    return Opening(client, caseId, heldBy=holderOf(error) or "another annotator", detail=str(error))
                if not lacksLeases(error):
                    raise
                self.workerHasLeases = False
        try:
            # A labelled case opens on its current label, so the submit's revision is the one corrected.
            files = fetch(client, caseId, revision) if revision else fetch(client, caseId)
        except Exception:
            if leased and caseId != self.caseId:
                release(client, caseId)  # nothing was opened: do not keep others from it
            raise
        return Opening(client, caseId, files=files, leased=leased, revision=revision)

    def openNext(self, client, candidates: List[str], currentCaseId, fetch: Callable):
        """The worker's "next case for me"; when that is the case already open, the next free one by rank.

        ``candidates`` are the unlabeled cases after the open one, in worklist order (the fallback and the
        only source on a worker without leases). None when nothing is left.
        """
        if self.workerHasLeases:
            try:
                reply = client.nextCase()
            except WorkerError as error:
                if not lacksLeases(error):
                    raise
                self.workerHasLeases = False
            else:
                if reply is None:
                    return None
                if reply["case_id"] != currentCaseId:
                    return self.open(client, reply["case_id"], fetch, leased=True, revision=revisionOf(reply))
                # The worker hands back the case this annotator holds; "Next" means moving on.
                for caseId in candidates:
                    try:
                        leaseReply = client.leaseCase(caseId)
                    except WorkerError as error:
                        if error.status != 409:
                            raise
                        continue  # taken since the last worklist poll
                    return self.open(client, caseId, fetch, leased=True, revision=revisionOf(leaseReply))
                return None
        return self.open(client, candidates[0], fetch) if candidates else None

    def renew(self):
        """Keep the open case's lease alive (a poller calls this); returns the new holder if it was lost."""
        giveBack, self._giveBack = self._giveBack, []
        for client, caseId in giveBack:
            release(client, caseId)
        with self._lock:
            client, caseId, holding = self.client, self.caseId, self._holding
        if client is None or caseId is None or not self.workerHasLeases:
            return None
        try:
            reply = client.leaseCase(caseId)
        except WorkerError as error:
            if error.status == 409:
                return holderOf(error) or "another annotator"
            raise
        with self._lock:
            leftMeanwhile = holding != self._holding
        if leftMeanwhile:
            release(client, caseId)  # the case was given back (or submitted) while this renewal was in flight
            return None
        openedCase, openedRevision = self.openedLabel
        now = revisionOf(reply)
        if openedCase == caseId and openedRevision is not None and now is not None and now != openedRevision:
            # Someone stored another label while this annotator held (or had lost) the case: Submit will
            # be refused, so say it now rather than after the clinician finished.
            self.labelChange = f"{now} by {reply.get('revision_author') or 'someone else'}"
        return None

    def submit(self, client, caseId, path, maskPath=None, noStructure=False, effort=None):
        """Upload the open case's label naming the revision it was opened from (background thread).

        A 409 (the case changed, or another annotator holds it) becomes a WorkerError whose message says
        who changed it and that nothing was overwritten."""
        openedCase, revision = self.openedLabel
        try:
            revision = revision if openedCase == caseId else None
            return client.uploadLabel(caseId, path, revision=revision, maskPath=maskPath,  # a sparse label's mask
                                      noStructure=noStructure, effort=effort)
        except WorkerError as error:
            if error.status == 409:
                raise WorkerError(conflictMessage(caseId, error), status=409) from None
            raise

    # -- GUI thread ----------------------------------------------------------------------------

    def opened(self, opening: Opening, loaded: bool) -> List[Tuple[Any, str]]:
        """Record a finished "open"; returns the leases to give back (the case left, or the one not loaded)."""
        if not loaded:
            keep = opening.caseId == self.caseId and opening.client is self.client
            return [(opening.client, opening.caseId)] if opening.leased and not keep else []
        previous = self.left()
        if previous == [(opening.client, opening.caseId)]:
            previous = []
        self.openedLabel, self.labelChange = (opening.caseId, opening.revision), None
        if opening.leased:
            self._hold(opening.client, opening.caseId)
        return previous

    def _hold(self, client, caseId):
        with self._lock:
            self.client, self.caseId = client, caseId
            self._holding += 1

    def left(self) -> List[Tuple[Any, str]]:
        """The clinician left the case (another case, scene closed, Slicer closing): the lease to give back."""
        held = [(self.client, self.caseId)] if self.client is not None and self.caseId else []
        self._hold(None, None)
        self.openedLabel, self.labelChange = (None, None), None
        return held

    def submitted(self, caseId):
        # The worker ends the lease itself when the label is accepted.
        if caseId == self.caseId:
            self._hold(None, None)
        if caseId == self.openedLabel[0]:
            self.openedLabel, self.labelChange = (None, None), None

    def reconnected(self, client):
        """A new connection: keep holding the open case through it (renew() re-leases it at once).

        When the worker, annotator or token changed, the old lease goes back first, or the new name would
        find the case held by the old one.
        """
        old = self.client
        self.workerHasLeases = True
        if old is None:
            return
        if (old.url, old.annotator, old.token) != (client.url, client.annotator, client.token):
            self._giveBack.append((old, self.caseId))
        self.client = client

    def forget(self):
        """The worker is gone (stopped): nothing to give back."""
        self._hold(None, None)
        self._giveBack = []
