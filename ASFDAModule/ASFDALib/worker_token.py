"""The datastore's own worker token (DIR/worker-token), read the way the worker writes it.

The worker writes a random administrator token into its datastore on its first start (mode 0600, one
line; ``asfda/worker/tokens.py``), so even a worker on 127.0.0.1 answers no one who cannot read the
datastore. The module reads it to talk to a local worker; it never puts a token on a command line
(process listings and shell history show those): a token the user typed reaches the worker through its
environment (``TOKEN_ENV``). Standard library only: this runs before any dependency is installed.
"""

import os
import stat

DATASTORE_TOKEN_NAME = "worker-token"  # the worker's file name (asfda.worker.tokens.DATASTORE_TOKEN_NAME)
TOKEN_ENV = "ASFDA_WORKER_TOKEN"  # the worker's environment variable for an administrator token
MIN_TOKEN_CHARS = 16


class WorkerTokenError(RuntimeError):
    pass


def datastoreTokenPath(datastore):
    return os.path.join(str(datastore), DATASTORE_TOKEN_NAME)


def readDatastoreToken(datastore):
    """The token in DIR/worker-token; a missing, shared or malformed file is a one-line error."""
    path = datastoreTokenPath(datastore)
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise WorkerTokenError(f"No worker token in {path}: start the worker on this datastore once") from None
    except (OSError, UnicodeDecodeError) as error:
        raise WorkerTokenError(f"Cannot read the worker token {path} ({type(error).__name__})") from None
    # As ssh does with its keys: a token other users can read protects nothing.
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WorkerTokenError(f"The worker token {path} is readable by other users: run `chmod 600 {path}`")
    lines = text.splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise WorkerTokenError(f"The worker token {path} is not one line of at least {MIN_TOKEN_CHARS} characters")
    return token


def localWorkerToken(datastore):
    """The token a local worker on ``datastore`` accepts: its file's, or "" for a worker older than the file."""
    if not os.path.lexists(datastoreTokenPath(datastore)):
        return ""
    return readDatastoreToken(datastore)
