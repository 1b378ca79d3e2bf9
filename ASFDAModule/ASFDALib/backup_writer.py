"""Writing the copy of unsubmitted edits that a scene close keeps, off the GUI thread.

A scene close cannot be refused, so the module copies the segments (``label_export.takeSnapshot``, on the
GUI thread: the nodes go with the scene) and tells where the copy goes; composing and writing the file took
about 0.3 s of the GUI thread for a 512x512x300 case and now runs in a thread while the message is read. A
write that fails is reported on the GUI thread as soon as it is known. Where the person still decides (the
question before another case opens) and at exit (nothing waits for a thread), the copy is written before
the message, as before.
"""

import logging


class BackupWriter:
    """Background writes of backups, delivered through the widget's ``TaskRunner``; ``wait`` before exit."""

    def __init__(self, tasks, onFailure):
        self.tasks = tasks
        self.onFailure = onFailure  # called on the GUI thread with (path, error)
        self._pending = []

    def start(self, pendingLabel):
        """Write ``pendingLabel`` (a ``label_export.PendingLabel``) in a thread; returns its path at once."""
        path = pendingLabel.path

        def failed(error):
            logging.error("ASFDA: the copy of unsubmitted edits %s could not be written: %s", path, error)
            self.onFailure(path, error)

        self._pending = [t for t in self._pending if not t.done.is_set()]
        self._pending.append(self.tasks.submit(pendingLabel.finish, None, failed))
        return path

    def wait(self, timeoutS=30.0):
        """Block until every started write has finished (cleanup: Slicer must not exit mid-write)."""
        pending, self._pending = self._pending, []
        return all(task.done.wait(timeoutS) for task in pending)
