"""The widget's unsubmitted-edits half: a copy of edits not yet submitted, written before they could be lost.

A mixin of ``ASFDAWidget`` (which provides ``session``, ``edits``, ``effort``, ``ui`` and ``_parameterNode``),
kept apart so ASFDA.py stays a thin module file. Leaving a case asks first (or, when nothing can stop it, as
a scene close, says where the copy is); Slicer's exit writes the copy without asking and the next session
names it. The copies are written by the session's files (case_files.py ``backupUnsubmittedLabel``).
"""

import logging

EXIT_BACKUP_KEY = "ASFDA/exitBackup"  # "case\npath" of edits kept when Slicer last closed


def _tr(text):
    try:
        from slicer.i18n import tr
    except ImportError:  # Slicer < 5.4
        return text
    return tr(text)


class UnsubmittedEditsMixin:
    def _backUp(self, writer=None):
        p = self._parameterNode
        return self.session.files.backupUnsubmittedLabel(p.currentSegmentation, p.currentVolume, p.currentCaseId,
                                                         effort=self.effort, writer=writer)

    def keepEditsAtExit(self):
        """Write unsubmitted edits without asking (nothing can stop an exit); the next session names the file."""
        import qt

        if not self.edits.mustConfirmLeaving():
            return None
        caseId = self._parameterNode.currentCaseId
        try:
            backup = self._backUp()
        except Exception:
            logging.exception("ASFDA: could not keep the unsubmitted edits of case %s at exit", caseId)
            return None
        logging.warning("ASFDA: unsubmitted edits of case %s kept in %s", caseId, backup)
        qt.QSettings().setValue(EXIT_BACKUP_KEY, f"{caseId}\n{backup}")
        self.edits.keptCopy()
        return backup

    def showExitBackupOfLastSession(self):
        import qt

        settings = qt.QSettings()
        if not settings.contains(EXIT_BACKUP_KEY):
            return
        caseId, _sep, backup = str(settings.value(EXIT_BACKUP_KEY) or "").partition("\n")
        settings.remove(EXIT_BACKUP_KEY)
        if backup:
            self.ui.caseStatusLabel.text = _tr("Slicer closed with unsubmitted edits of case {case}; they were kept "
                                               "in {path}.").format(case=caseId, path=backup)

    def keepUnsubmittedEdits(self, nextCaseId=None, askToContinue=True, writer=None):
        """Write a copy of unsubmitted edits before they go; ask (or, when nothing can stop it, tell).

        ``writer``: a ``backup_writer.BackupWriter`` that writes the copy in a thread (a scene close, where
        the warning is read meanwhile)."""
        import slicer

        if not self.edits.mustConfirmLeaving(nextCaseId):
            return True
        caseId = self._parameterNode.currentCaseId
        try:
            where = _tr("A copy of the edits is kept in {path}.").format(path=self._backUp(writer))
        except Exception as error:  # an invalid segmentation cannot be exported: say so
            where = _tr("No copy could be written ({error}).").format(error=error)
        if not askToContinue:
            slicer.util.warningDisplay(_tr("Case {case} had edits that were not submitted. {where}").format(
                case=caseId, where=where))
            return True
        return slicer.util.confirmOkCancelDisplay(
            _tr("Case {case} has edits that were not submitted. {where} Continue without submitting?").format(
                case=caseId, where=where))
