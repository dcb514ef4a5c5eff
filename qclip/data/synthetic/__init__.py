"""The synthetic world of the embedded default, written in the real datasets' on-disk layouts (the generator
is :mod:`.world`; where it lives in the cache, :mod:`.location`). Kept apart from the real readers in
``qclip.data``: the readers never import it."""

from .world import (
           DATASETS,
           GENERATOR_VERSION,
           SIZES,
           WorldSize,
           generate_world,
           read_manifest,
           world_is_complete,
)

__all__ = ["GENERATOR_VERSION", "WorldSize", "SIZES", "DATASETS", "generate_world", "world_is_complete",
           "read_manifest"]
