"""How a rank's scoring runs on a Ray cluster: the address from `--ray`, the rest from ASFDA_RAY_* variables.

The command line carries one option (`--ray ADDRESS`); the settings that belong to a cluster rather than
to one rank (how data reaches the nodes, actor sizes) are environment variables, so an operator sets them
once next to the cluster's own configuration (docs/worker.md, "Scoring on a Ray cluster").
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Mapping, Optional

from asfda.core.errors import AsfdaError

ADDRESS_ENV = "ASFDA_RAY_ADDRESS"  # how `asfda serve --ray` hands the address to its job processes


class DataAccess(str, enum.Enum):
    SHARED = "shared"  # actors read images and the model version from the datastore path on every node
    OBJECT_STORE = "object-store"  # the coordinator reads the bytes and ships them through Ray's object store


@dataclass
class RayOptions:
    address: str  # "auto" (a running cluster), "local" (start one here, CPUs only), "ray://host:port", "host:port"
    data: DataAccess = DataAccess.SHARED
    root_on_nodes: Optional[str] = None  # the datastore as the nodes mount it; None: the same path as here
    actors: Optional[int] = None  # None: one per GPU of the cluster, else one per `cpus_per_actor` CPUs
    cpus_per_actor: float = 1.0
    # One scoring, one read meanwhile; more when reading a volume takes longer than its device pass.
    in_flight_per_actor: int = 2
    max_retries: int = 2  # tries of one case after the actor scoring it died, before it is reported as an error
    start_timeout_s: float = 180.0  # actors not running by then (no free resources) are dropped

    def __post_init__(self) -> None:
        self.address = (self.address or "").strip()
        if not self.address:
            raise AsfdaError("--ray needs an address: auto, local, ray://HOST:PORT or HOST:PORT")
        self.data = DataAccess(self.data)
        if self.actors is not None and self.actors < 1:
            raise AsfdaError(f"ASFDA_RAY_ACTORS must be at least 1, not {self.actors}")
        if self.cpus_per_actor <= 0:
            raise AsfdaError(f"ASFDA_RAY_CPUS_PER_ACTOR must be positive, not {self.cpus_per_actor}")
        if self.in_flight_per_actor < 1:
            raise AsfdaError(f"ASFDA_RAY_IN_FLIGHT must be at least 1, not {self.in_flight_per_actor}")
        if self.max_retries < 0:
            raise AsfdaError(f"ASFDA_RAY_MAX_RETRIES must not be negative, not {self.max_retries}")

    def check_installed(self) -> RayOptions:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise AsfdaError("--ray needs the ray package: pip install 'asfda[cluster]' (or pip install ray)")
        return self

    @property
    def local(self) -> bool:
        return self.address == "local"

    @classmethod
    def from_env(cls, address: str, env: Optional[Mapping[str, str]] = None) -> RayOptions:
        env = os.environ if env is None else env

        def read(name: str, convert, default):
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                return convert(text)
            except ValueError:
                raise AsfdaError(f"{name}={text!r} is not a valid value") from None

        data = read("ASFDA_RAY_DATA", str, DataAccess.SHARED.value)
        if data not in {d.value for d in DataAccess}:
            raise AsfdaError(f"ASFDA_RAY_DATA={data!r}: use shared or object-store")
        return cls(
            address=address,
            data=DataAccess(data),
            root_on_nodes=read("ASFDA_RAY_ROOT", str, None),
            actors=read("ASFDA_RAY_ACTORS", int, None),
            cpus_per_actor=read("ASFDA_RAY_CPUS_PER_ACTOR", float, 1.0),
            max_retries=read("ASFDA_RAY_MAX_RETRIES", int, 2),
            in_flight_per_actor=read("ASFDA_RAY_IN_FLIGHT", int, 2),
        )
