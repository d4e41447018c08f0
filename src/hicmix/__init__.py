"""hicmix: multimodal 3D-genome learning from Hi-C and epigenomic tracks."""

__version__ = "0.1.0"

#: Version of the on-disk tile format (shards + index + manifest). Bump on any layout change.
TILE_FORMAT_VERSION = 1
