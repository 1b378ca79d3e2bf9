"""Show the worklist in a QTableWidget by updating only the cells that changed.

The worklist is polled every few seconds. Rebuilding the table on every poll made column widths snap
back, dropped the selection and cost about ten PythonQt calls per cell (some 20k for 2,000 cases) even
when nothing had changed. ``WorklistTable`` remembers, in plain Python, what each row shows: an
unchanged row costs one comparison and no Qt call; a changed cell is updated in place on its item.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple


@dataclass(frozen=True)
class CellView:
    text: str
    toolTip: str = ""
    bold: bool = False


@dataclass(frozen=True)
class RowView:
    caseId: str
    cells: Tuple[CellView, ...]


class WorklistTable:
    """The table's cells as last rendered; ``render`` makes the table show new rows at the least cost."""

    def __init__(self, table, qt):
        self.table = table
        self.qt = qt
        self.shown: List[RowView] = []
        self.cellUpdates = 0  # cells created or changed, all renders together (the tests read it)

    def render(self, rows):
        """Show ``rows`` (RowView, top to bottom); returns how many cells were created or changed."""
        table, before = self.table, self.cellUpdates
        selected = self.selectedCaseId()
        wasEmpty = not self.shown
        if len(rows) != len(self.shown):
            table.setRowCount(len(rows))
            del self.shown[len(rows):]
        for r, row in enumerate(rows):
            old: Optional[RowView] = self.shown[r] if r < len(self.shown) else None
            if old == row:
                continue
            for c, cell in enumerate(row.cells):
                if old is None or old.cells[c] != cell or old.caseId != row.caseId:
                    self._showCell(r, c, row.caseId, cell, None if old is None else old.cells[c])
            if old is None:
                self.shown.append(row)
            else:
                self.shown[r] = row
        if wasEmpty and rows:
            table.resizeColumnsToContents()  # once, on the first fill: later the user's widths stay
        self._keepSelection(selected)
        return self.cellUpdates - before

    def _showCell(self, r, c, caseId, cell, old):
        item = self.table.item(r, c)
        if item is None:
            item = self.qt.QTableWidgetItem(cell.text)
            self.table.setItem(r, c, item)
            old = None
        elif old is None or old.text != cell.text:
            item.setText(cell.text)
        item.setData(self.qt.Qt.UserRole, caseId)
        if old is None or old.toolTip != cell.toolTip:
            item.setToolTip(cell.toolTip)
        if old is None or old.bold != cell.bold:
            font = item.font()
            font.setBold(cell.bold)
            item.setFont(font)
        self.cellUpdates += 1

    def selectedCaseId(self):
        items = self.table.selectedItems()
        return items[0].data(self.qt.Qt.UserRole) if items else None

    def _keepSelection(self, caseId):
        """After a re-sort the selection follows its case, not its row number."""
        if caseId is None:
            return
        row = next((r for r, view in enumerate(self.shown) if view.caseId == caseId), None)
        if row is None:
            self.table.clearSelection()
        elif self.selectedCaseId() != caseId:
            self.table.selectRow(row)
