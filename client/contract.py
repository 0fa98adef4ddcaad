"""The wire contract between the served ensembles and their clients: names, types and limits.

Defined once, here, so the client needs no server-side package: model_repository/configs.py renders
every config from these values, and the client sends and reads exactly them. Changing one breaks
deployed clients (README "Wire contract"). Standard library only.
"""

from __future__ import annotations

# Inputs of the three entry points: encoded files, decoded RGB frames, client-side crops.
IMAGE_INPUT = "IMAGE"  # TYPE_STRING, one encoded image per batch row
PIXELS_INPUT = "PIXELS"  # TYPE_UINT8, H x W x 3 RGB
CROPS_INPUT = "CROPS"  # TYPE_UINT8, S x S x 3 crops as the preprocess package cuts them

# Every entry point answers with the TOP_K best classes of each image, in these outputs and types.
TOP_K_OUTPUTS = {"LABELS": "TYPE_STRING", "SCORES": "TYPE_FP32", "CLASS_IDS": "TYPE_INT64"}
OUTPUTS = tuple(TOP_K_OUTPUTS)
TOP_K = 5
MAX_BATCH_SIZE = 8  # images one request may carry

# A request that must hear within 2 s is sent to `<model>_interactive` (INTERACTIVE_SUFFIX), whose
# preprocess instance no flood can occupy, with this priority level, which the network queues apart
# and serves first (docs/reliability.md, "How load is shed"). Requests without a priority get the
# default level, behind it.
INTERACTIVE_PRIORITY = 1

# Model names: `<model>` takes IMAGE; these suffixes name the other entry points and the network.
INTERACTIVE_SUFFIX = "_interactive"  # IMAGE too, small requests only, on a reserved preprocess instance
PIXELS_SUFFIX = "_pixels"
CROP_SUFFIX = "_crop"
NETWORK_SUFFIX = "_network"  # the smoke check reads the served precision from its config

# Config parameters the client reads through the open model-config API.
# The smoke photograph's reference answer, recorded by the export and published by every ensemble:
REFERENCE_PHOTO_PARAMETER = "reference_photo_sha256"
REFERENCE_IDS_PARAMETER = "reference_class_ids"
REFERENCE_SCORES_PARAMETER = "reference_scores"
# The network's precision (absent: fp32), which picks the smoke check's tolerance:
PRECISION_PARAMETER = "precision"
