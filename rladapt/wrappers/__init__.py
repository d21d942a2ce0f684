"""The wrappers gymnasium lacks. AutoAdapt uses gymnasium's own wrappers wherever they do the job."""

from rladapt.wrappers.actions import ArgmaxAction, FlattenMultiDiscreteAction, UnitBoxAction, product_mask
from rladapt.wrappers.actions import FlattenBoxAction, FlattenCompositeAction, composite_grid
from rladapt.wrappers.checks import EnforceSpaces
from rladapt.wrappers.masks import ActionMask, detect_mask_source, mask_shape
from rladapt.wrappers.multiplayer import NextPlayerTurns, OpponentSeats, PettingZooTurns
from rladapt.wrappers.rewards import ClipReward
from rladapt.wrappers.statistics import EpisodeStatistics
from rladapt.wrappers.time import FrameStack
from rladapt.wrappers.observations import (
    ChannelFirstObservation,
    ChannelLastObservation,
    FlatIndexObservation,
    NestedObservation,
    VectorObservation,
)

__all__ = [
    "ActionMask",
    "ArgmaxAction",
    "ChannelFirstObservation",
    "ChannelLastObservation",
    "ClipReward",
    "EnforceSpaces",
    "EpisodeStatistics",
    "FlatIndexObservation",
    "FlattenBoxAction",
    "FlattenCompositeAction",
    "FlattenMultiDiscreteAction",
    "FrameStack",
    "NestedObservation",
    "NextPlayerTurns",
    "OpponentSeats",
    "PettingZooTurns",
    "UnitBoxAction",
    "VectorObservation",
    "composite_grid",
    "detect_mask_source",
    "mask_shape",
    "product_mask",
]
