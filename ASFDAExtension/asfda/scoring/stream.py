"""Cases flow from disk to the device through a MONAI Dataset and a DataLoader with worker processes, so
reading and resampling the next volumes overlap the network pass and memory does not grow with the pool."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from monai.data import DataLoader, Dataset

from asfda.models.config import ModelConfig

PREFETCH_PER_WORKER = 2


@dataclass
class StreamedCase:
    case_id: str
    image: Optional[Any]  # (1, X, Y, Z) MetaTensor in network space; None when the case could not be read
    error: Optional[str] = None
    geometry: Optional[Any] = None  # asfda.io.volumes.Geometry of the image as stored


class PreparedCases(Dataset):
    """Case i of the list, read and brought into the network's space in whichever process asks.

    A case that cannot be read yields its one-line error instead of ending the stream: the rest of the
    pool goes on. The datastore is opened again in each worker process (it holds locks and connections).
    """

    def __init__(self, root: Path, case_ids: List[str], config: ModelConfig):
        super().__init__(data=list(case_ids))
        self.root, self.config = Path(root), config
        self._store = None

    def _transform(self, index: int) -> Dict[str, Any]:
        from asfda.data.datastore import Datastore
        from asfda.io.volumes import Geometry, load_volume
        from asfda.models.preprocess import prepare_image

        case_id = self.data[index]
        if self._store is None:
            self._store = Datastore(self.root, create=False)
        try:
            volume = load_volume(self._store.image_path(case_id))
            image = prepare_image(volume, self.config)
            return {"case_id": case_id, "image": image, "error": None, "geometry": Geometry.of(volume)}
        except Exception as exc:  # one bad case must not end the stream; its message reaches the result
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return {"case_id": case_id, "image": None, "error": message, "geometry": None}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_store"] = None
        return state


def _single(batch: List[Dict[str, Any]]) -> Dict[str, Any]:
    return batch[0]  # one volume at a time: volumes differ in size and the network pass is per volume anyway


def stream_cases(root: Path, case_ids: List[str], config: ModelConfig, workers: int) -> Iterator[StreamedCase]:
    """Prepared cases in the given order; with `workers` > 0 they are read ahead in other processes."""
    if not case_ids:
        return
    loader = DataLoader(
        PreparedCases(root, case_ids, config),
        batch_size=1,
        shuffle=False,
        num_workers=workers,
        collate_fn=_single,
        prefetch_factor=PREFETCH_PER_WORKER if workers > 0 else None,
        persistent_workers=False,
    )
    for item in loader:
        yield StreamedCase(item["case_id"], item["image"], item["error"], item["geometry"])
