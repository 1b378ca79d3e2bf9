"""Conditional label submits: which revision a client opened (If-Match / If-None-Match) and which client it is.

A submit names the label revision it was opened from the way HTTP names a representation: its ETag.
`If-Match: "r0002"` (the revision the lease or the revisions list reported), `If-None-Match: *` when the
case had no final label when it was opened. Neither header: the submit is accepted only while the case has
no label or its current revision is the submitter's own. `?overwrite=true` replaces whatever is current.
"""

from __future__ import annotations

import re
from typing import Optional

from fastapi import HTTPException

from asfda.data.label_submit import NO_LABEL

_REVISION = re.compile(r'^(?:W/)?"?(r\d{4,})"?$')


def etag(revision: Optional[str]) -> str:
    return f'"{revision}"' if revision else ""


def base_revision(if_match: Optional[str], if_none: Optional[str]) -> Optional[str]:
    """The revision named by If-Match, NO_LABEL for `If-None-Match: *`, None when the request names none."""
    if if_match is not None and if_none is not None:
        raise HTTPException(400, "send either If-Match (the revision you opened) or If-None-Match: * (no label)")
    if if_none is not None:
        if if_none.strip() != "*":
            raise HTTPException(400, "If-None-Match on a label submit must be '*' (the case had no label)")
        return NO_LABEL
    if if_match is None:
        return None
    match = _REVISION.match(if_match.strip())
    if not match:
        raise HTTPException(400, f'If-Match must name one label revision, e.g. "r0001" (got {if_match[:40]!r})')
    return match.group(1)


def client_source(client: Optional[str]) -> str:
    """The label's source for its revision: `slicer` when the Slicer module says so, else `upload`."""
    return "slicer" if (client or "").strip().lower().startswith("slicer") else "upload"
