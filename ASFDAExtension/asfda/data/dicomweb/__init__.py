"""A PACS as the datastore's image source: QIDO-RS listing, lazy WADO-RS fetch into a bounded cache,
clinician labels written back as DICOM SEG (docs/worker.md, "A PACS as the datastore")."""
