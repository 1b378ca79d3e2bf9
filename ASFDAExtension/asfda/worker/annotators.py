"""Who is asking: the annotator of a request, from their own token or (on loopback) from a header.

Beyond loopback every annotator has their own bearer token, listed in a JSON file {"name": "token", ...}
(`asfda serve --annotators FILE` or env ASFDA_ANNOTATORS_FILE); the token then fixes the name, so one
annotator cannot act as another. On a loopback worker the client names its annotator in the
`X-Annotator` header (percent-encoded UTF-8) or the `annotator` query parameter.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Dict, Optional

from fastapi import HTTPException, Request

from asfda.core.errors import ConfigError

ANNOTATOR_HEADER = "x-annotator"
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


def clean_name(raw: Optional[str]) -> Optional[str]:
    """A printable, whitespace-normalised name of at most 100 characters, or None when empty."""
    if raw is None:
        return None
    name = " ".join(urllib.parse.unquote(raw).split())
    if not name:
        return None
    if not _NAME.match(name):
        raise HTTPException(400, "annotator name must be 1-100 printable characters")
    return name


def load_annotator_tokens(path: Path) -> Dict[str, str]:
    """token -> annotator name, from a JSON object {"name": "token"}; a clear error for a bad file."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"annotators file {path}: cannot read JSON ({type(exc).__name__})") from None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f'annotators file {path}: expected a JSON object {{"name": "token", ...}}')
    tokens: Dict[str, str] = {}
    for name, token in entries.items():
        if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_CHARS:
            raise ConfigError(f"annotators file {path}: the token of {name!r} must be at least {MIN_TOKEN_CHARS} chars")
        if not _NAME.match(name) or not name.strip():
            raise ConfigError(f"annotators file {path}: {name!r} is not a usable annotator name")
        if token.strip() in tokens:
            raise ConfigError(f"annotators file {path}: {name!r} and {tokens[token.strip()]!r} share a token")
        tokens[token.strip()] = " ".join(name.split())
    return tokens


def token_annotator(request: Request) -> Optional[str]:
    """The annotator whose own token authenticated this request (set by BearerTokenMiddleware)."""
    return request.scope.get("state", {}).get("annotator")


def request_annotator(request: Request, fallback: Optional[str] = None) -> Optional[str]:
    """The annotator of a request: their token's name; else (loopback, or the administrator token) the
    header, the query parameter or `fallback` (e.g. a form field). A header naming someone else than the
    token's owner is refused."""
    by_token = token_annotator(request)
    named = clean_name(request.headers.get(ANNOTATOR_HEADER) or request.query_params.get("annotator"))
    if by_token:
        if named and named != by_token:
            raise HTTPException(403, f"this token belongs to {by_token}, not to {named}")
        return by_token
    return named or clean_name(fallback)


def require_annotator(request: Request, loopback: bool, annotators_configured: bool) -> str:
    name = request_annotator(request)
    if not loopback and annotators_configured and not token_annotator(request):
        raise HTTPException(403, "beyond loopback each annotator uses their own token (asfda serve --annotators)")
    if not name:
        raise HTTPException(
            400, "name the annotator: header 'X-Annotator: <name>' or query '?annotator=<name>' (or use your token)"
        )
    return name
