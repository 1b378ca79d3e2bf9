"""The Slicer worklist shows the minutes recorded with a case's current label in its status cell."""

from ASFDALib.worklist import COLUMNS, Worklist


def test_status_cell_shows_recorded_minutes_only_when_known():
    worklist = Worklist()
    worklist.updateFromWorklistReply(
        {
            "items": [
                {"case_id": "a", "rank": 1, "status": "final", "effort_minutes": 2.5},
                {"case_id": "b", "rank": 2, "status": "final"},
                {"case_id": "c", "rank": 3, "status": "unlabeled", "effort_minutes": None},
            ]
        }
    )
    status = COLUMNS.index("Status")
    assert [row.cells()[status] for row in worklist.rows] == ["final, 2.5 min", "final", "unlabeled"]
    assert worklist.rows[0].effortMinutes == 2.5 and worklist.rows[0].labeled
