"""How the fusion classifiers are laid out (``fusion_mode``), each a class chosen once that owns its
networks: which it builds, which one classifies a given availability pattern, whether the full
input is enhanced (MMER), and which training sets each network learns from.

* :class:`PerConditionFusion` (``per-condition``, the paper's MMCR and the default with up to three
  modalities): one :class:`~admc.models.fusion.FusionNet` per availability pattern, the full-input
  one on cat(F, F') when MMER is on;
* :class:`SharedFusion` (``shared``): one mask-aware network for every pattern;
* :class:`LateFusion` (``late``, method ``late_fusion``): no network, the mean of the unimodal heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from admc.masks import all_masks, fusion_masks, mask_key


@dataclass(frozen=True)
class FusionTask:
    """One network to train: run.json's ``train.fusion`` key, the network, the availability patterns
    it learns from, the seed offsets of its training set, validation set and fit, and whether its
    patterns are reported (a shared network's are a draw)."""

    key: str
    network: object
    masks: list
    seeds: tuple[int, int, int]
    report_patterns: bool = False


class FusionLayout:
    name: ClassVar[str]
    trains: ClassVar[bool] = True          # has networks to train
    # one network per pattern, so the full-input one can be set apart: it reads cat(F, F') with
    # MMER, or is the one trained end to end with joint encoders
    full_input_network: ClassVar[bool] = False

    def build(self, model, cfg) -> None:
        """Add this layout's networks to ``model.fusion`` (``cfg``: the FusionConfig)."""

    def network(self, model, pattern):
        """The network that classifies samples with availability ``pattern`` (a list of bools)."""
        raise NotImplementedError

    def training_tasks(self, model, cfg, rng) -> list[FusionTask]:
        """The networks to train (``cfg``: the FusionConfig; ``rng``: a numpy Generator)."""
        return []


class PerConditionFusion(FusionLayout):
    name = "per-condition"
    full_input_network = True

    def build(self, model, cfg) -> None:
        from admc.models.fusion import FusionNet

        for mask in all_masks(model.M):
            in_dim = 2 * model.E if (all(mask) and model.mmer) else model.E
            model.fusion[mask_key(mask)] = FusionNet(model.M, in_dim, model.C, cfg.d_model, cfg.layers, cfg.heads,
                                                     cfg.ff, cfg.dropout, cfg.hidden)

    def network(self, model, pattern):
        return model.fusion[mask_key(pattern)]

    def training_tasks(self, model, cfg, rng):
        return [FusionTask(model.condition_name(mask), model.fusion[mask_key(mask)], [mask], (k, 1000 + k, 11 + k))
                for k, mask in enumerate(all_masks(model.M))
                if not (model.joint_full and all(mask))]  # joint: trained end to end with the encoders


class SharedFusion(FusionLayout):
    name = "shared"

    def build(self, model, cfg) -> None:
        from admc.models.fusion import FusionNet

        model.fusion["shared"] = FusionNet(model.M, model.E, model.C, cfg.d_model, cfg.layers, cfg.heads, cfg.ff,
                                           cfg.dropout, cfg.hidden, mask_aware=True)

    def network(self, model, pattern):
        return model.fusion["shared"]

    def training_tasks(self, model, cfg, rng):
        masks = fusion_masks(model.M, rng) if cfg.shared_patterns == "all" else [tuple(True for _ in range(model.M))]
        return [FusionTask("shared", model.fusion["shared"], masks, (0, 1, 11), report_patterns=True)]


class LateFusion(FusionLayout):
    name = "late"
    trains = False


FUSION_LAYOUTS: dict[str, FusionLayout] = {f.name: f for f in (PerConditionFusion(), SharedFusion(), LateFusion())}
