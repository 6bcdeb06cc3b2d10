"""Training and inference configuration: plain dataclasses saved as JSON in every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class ITFNConfig:
    """Independently trained unimodal encoders (paper 3.1)."""

    emb_dim: int = 256
    epochs: int = 60
    patience: int = 10          # early stopping on validation UA
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    max_len: int | None = None  # truncate longer sequences (frames/words); None keeps all


@dataclass
class ADNConfig:
    """Attention-based diffusion network (paper 3.2) and how it completes missing rows."""

    variant: str = "conditional"   # "paper": unconditional eps model + Eq. 3-4 re-injection; "conditional"
    # conditional variant: diffuse around "linear" (the ridge conditional mean of the missing rows given
    # the available ones, CARD-style; admc/models/linear_prior.py) or around zero ("none")
    prior: str = "linear"
    prior_shrinkage: float | None = None  # the linear prior's lambda; None = chosen on validation from prior_grid
    prior_grid: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    prediction: str = "sample"     # "epsilon" | "sample" (x0) | "v_prediction"
    schedule: str = "linear"       # diffusers beta_schedule: "linear" | "squaredcos_cap_v2" | "scaled_linear"
    beta_start: float = 3e-4
    beta_end: float = 0.06
    num_train_timesteps: int = 1000
    d_model: int = 256
    layers: int = 4
    heads: int = 8
    ff: int = 1024
    dropout: float = 0.1
    epochs: int = 120
    patience: int = 20
    batch_size: int = 128
    lr: float = 1e-3               # paper: 1e-4; measured too slow to converge within a CPU budget (docs/completion.md)
    weight_decay: float = 0.0      # AdamW decoupled weight decay
    ema_decay: float | None = None  # evaluate and keep an exponential moving average of the weights
    # sampling
    sampler: str = "mean"          # "ddpm" | "ddim" | "mean" (one x0 prediction from the prior mean)
    sample_steps: int = 10         # reverse steps for the conditional variant
    num_samples: int = 1           # average of K stochastic completions
    start_step: int | None = None  # paper variant: reverse chain start n; None = choose on validation
    start_grid: list[int] = field(default_factory=lambda: [30, 50, 80, 1000])
    clip_quantile: float | None = 0.999  # clip predicted x0 to this quantile of |train embeddings|; None: no clip


@dataclass
class FusionConfig:
    """Multimodal fusion classifier MF (paper Eq. 6)."""

    mode: str = "auto"             # "per-condition" | "shared" | "auto" (per-condition when M <= 3)
    mmer: bool = True              # full input: cat(F, F') enhancement (paper Eq. 5); admc only
    shared_patterns: str = "all"   # shared mode trains on "all" availability patterns or on "full" input only
    d_model: int = 256
    layers: int = 2
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.3
    hidden: int = 128
    epochs: int = 40
    patience: int = 8
    batch_size: int = 64
    lr: float = 1e-4


@dataclass
class TrainConfig:
    method: str = "admc"           # "admc" | "zero_fill"
    seed: int = 0
    itfn: ITFNConfig = field(default_factory=ITFNConfig)
    adn: ADNConfig = field(default_factory=ADNConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "TrainConfig":
        def build(klass, d):
            known = {f.name for f in fields(klass)}
            unknown = set(d) - known
            if unknown:
                raise ValueError(f"{klass.__name__}: unknown keys {sorted(unknown)}")
            return klass(**d)

        obj = dict(obj)
        return cls(
            method=obj.get("method", "admc"),
            seed=obj.get("seed", 0),
            itfn=build(ITFNConfig, obj.get("itfn", {})),
            adn=build(ADNConfig, obj.get("adn", {})),
            fusion=build(FusionConfig, obj.get("fusion", {})),
        )


def resolve_fusion_mode(mode: str, n_modalities: int) -> str:
    if mode == "auto":
        return "per-condition" if n_modalities <= 3 else "shared"
    if mode not in ("per-condition", "shared"):
        raise ValueError(f"--fusion must be per-condition, shared or auto, got {mode!r}")
    return mode
