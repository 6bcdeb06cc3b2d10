"""Training and inference configuration: plain dataclasses saved as JSON in every run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields


class ConfigError(ValueError):
    """A setting that cannot be applied: one line naming the key (and the allowed values)."""


def one_of(key: str, value, allowed: Iterable[str], null: bool = False) -> None:
    """Refuse ``value`` for the enumerated setting ``key`` unless it is in ``allowed`` (or None
    with ``null``): ``adn.sampler must be one of ddpm, ddim, mean, prior, neighbours, got 'dim'``."""
    allowed = tuple(allowed)
    if value in allowed or (null and value is None):
        return
    raise ConfigError(f"{key} must be one of {', '.join(allowed)}{' or null' if null else ''}, got {value!r}")


def _heads_divide(section: str, d_model, heads) -> None:
    """Multi-head attention splits d_model into equal heads: refused here, not by an assertion later."""
    if isinstance(d_model, int) and isinstance(heads, int) and heads >= 1 and d_model % heads:
        raise ConfigError(f"{section}.heads={heads} must divide {section}.d_model={d_model} "
                          f"(try {section}.heads={max(h for h in range(1, heads + 1) if d_model % h == 0)})")


@dataclass
class ITFNConfig:
    """Independently trained unimodal encoders (paper 3.1)."""

    emb_dim: int = 256
    epochs: int = 60
    patience: int = 10          # early stopping on validation UA
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    # keep the first max_len rows of a longer sequence (frames/words; None keeps all): a bound on the
    # memory one padded batch takes (a 2,000,000-row sequence padded a batch to 22 GB)
    max_len: int | None = 4096
    # regularisation (docs/baselines.md, "ITFN against a linear model"): dropout inside the encoder
    # (None: each encoder's own, MLP 0.2, LSTM and TextCNN none) and the classifier head's width and dropout
    dropout: float | None = None
    head_hidden: int = 128
    head_dropout: float = 0.3


@dataclass
class ADNConfig:
    """Attention-based diffusion network (paper 3.2) and how it completes missing rows."""

    variant: str = "conditional"   # "paper": unconditional model + a reading of Eq. 3-4; "conditional"
    # conditional variant: diffuse around "linear" (the ridge conditional mean of the missing rows given
    # the available ones, CARD-style; admc/models/linear_prior.py) or around zero ("none")
    prior: str = "linear"
    prior_shrinkage: float | None = None  # the linear prior's lambda; None = chosen on validation from prior_grid
    prior_grid: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    # "epsilon" | "sample" (x0) | "v_prediction"; None = the variant's own: epsilon for the paper
    # variant (its Eq. 2 loss), sample for the conditional one
    prediction: str | None = None
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
    # "ddpm" | "ddim" | "mean" (one x0 prediction from the prior mean) | "prior" (the prior's estimate
    # alone, no denoiser call: what `admc calibrate --sampler auto` keeps when the denoiser's step does
    # not beat its prior on validation) | "neighbours" (hot-deck: the mean of the missing rows of the
    # `neighbours` training samples nearest in the available rows, admc/models/neighbour_bank.py; set on
    # a trained run by `admc calibrate --sampler`, which stores the bank of its training samples)
    sampler: str = "mean"
    sample_steps: int = 10         # reverse steps for the conditional variant
    num_samples: int = 1           # average of K stochastic completions
    neighbours: int = 8            # k of the neighbours sampler (the value the paired study measured)
    neighbour_bank: int = 0        # training samples stored with the run for it (0: none)
    # neighbours sampler: classify each of the k completions and average the probabilities (the
    # marginal over p(missing | available), admc.marginal) instead of classifying their mean
    marginal: bool = False
    start_step: int | None = None  # paper variant: reverse chain start n; None = choose on validation
    start_grid: list[int] = field(default_factory=lambda: [10, 30, 50, 80, 200, 500, 1000])
    start_select: str = "mse"      # paper variant: n chosen by validation completion "mse" or by "ua"
    # paper variant: what the missing rows are at step n (admc/diffusion/readings.py); None = PAPER_READING
    reading: str | None = None
    resample: int = 1              # RePaint (Lugmayr et al. 2022): U passes over every jump; 1 = off
    jump: int = 10                 # RePaint jump length r (steps re-noised before each resampling)
    # paper variant: reverse steps every `stride` timesteps (respaced DDPM); 1 = the paper's chain;
    # None = the method's (admc_paper: 10, measured in docs/completion.md) or 1
    stride: int | None = None
    clip_quantile: float | None = 0.999  # clip predicted x0 to this quantile of |train embeddings|; None: no clip


    def __post_init__(self):
        one_of("adn.variant", self.variant, VARIANTS)
        one_of("adn.prediction", self.prediction, PREDICTIONS, null=True)
        one_of("adn.sampler", self.sampler, SAMPLERS)
        one_of("adn.schedule", self.schedule, SCHEDULES)
        one_of("adn.prior", self.prior, PRIORS)
        one_of("adn.reading", self.reading, READINGS, null=True)
        one_of("adn.start_select", self.start_select, START_SELECTS)
        _heads_divide("adn", self.d_model, self.heads)
        rules = VARIANT_RULES[self.variant]
        if self.prediction not in (None, *rules.predictions):
            raise ConfigError(f"adn.prediction={self.prediction!r} contradicts adn.variant={self.variant!r} "
                              f"({rules.why}): leave adn.prediction unset or use {' or '.join(rules.predictions)}")
        if self.sampler == "prior" and (self.prior != "linear" or self.variant == "paper"):
            raise ConfigError("adn.sampler=prior completes with the linear prior's estimate alone: it needs "
                              f"adn.prior=linear and the conditional or regress variant (got adn.prior={self.prior!r}, "
                              f"adn.variant={self.variant!r})")
        for key in ("neighbours", "neighbour_bank"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "neighbours" else 0):
                raise ConfigError(f"adn.{key} must be an integer >= {1 if key == 'neighbours' else 0}, got {value!r}")
        if self.neighbour_bank > 0 and self.sampler != "neighbours":
            raise ConfigError(f"adn.neighbour_bank={self.neighbour_bank}: a bank of training samples is kept only "
                              f"for adn.sampler=neighbours (got adn.sampler={self.sampler!r})")
        if self.sampler == "neighbours" and self.neighbours > self.neighbour_bank > 0:
            raise ConfigError(f"adn.neighbours={self.neighbours} is more than the {self.neighbour_bank} training "
                              "samples of the bank (adn.neighbour_bank)")
        if self.sampler == "neighbours" and (self.neighbour_bank < 1 or self.variant == "paper"):
            raise ConfigError("adn.sampler=neighbours completes from the training samples stored with a trained run: "
                              "set it with `admc calibrate --sampler neighbours` (conditional or regress variant; "
                              f"got adn.variant={self.variant!r}, adn.neighbour_bank={self.neighbour_bank})")
        if self.marginal is not False and (self.marginal is not True or self.sampler != "neighbours"):
            raise ConfigError(f"adn.marginal={self.marginal!r}: true or false, and true only with "
                              f"adn.sampler=neighbours (got adn.sampler={self.sampler!r})")
        if not (isinstance(self.resample, int) and self.resample >= 1):
            raise ConfigError(f"adn.resample must be an integer >= 1, got {self.resample!r}")
        for key in ("jump", "stride"):
            value = getattr(self, key)
            if not (isinstance(value, int) and value >= 1) and not (key == "stride" and value is None):
                raise ConfigError(f"adn.{key} must be an integer >= 1, got {value!r}")
        if self.resample > 1 and (self.reading or PAPER_READING) in ("official", "official_clamp"):
            raise ConfigError("adn.resample (RePaint) works on top of Eq. 4 re-injection: readings noise, "
                              f"sdedit_mean, sdedit_ridge; not {self.reading_or_default()!r}")

    def check_variant(self, method: str) -> None:
        """Settings of the paper variant given to a method that uses the conditional one are refused
        (checked once the method's own settings are applied: ``admc.methods.config_for_method``)."""
        if not VARIANT_RULES[self.variant].paper_settings:
            for key, value, default in (("reading", self.reading, None), ("resample", self.resample, 1),
                                        ("stride", self.stride, None)):
                if value != default:
                    raise ConfigError(f"adn.{key} applies to the paper variant (method admc_paper, or "
                                      f"adn.variant=paper); method {method} uses the conditional variant")

    def prediction_or_default(self) -> str:
        return self.prediction or VARIANT_RULES[self.variant].prediction

    def reading_or_default(self) -> str | None:
        default = VARIANT_RULES[self.variant].reading
        return None if default is None else (self.reading or default)


PREDICTIONS = ("epsilon", "sample", "v_prediction")
SAMPLERS = ("ddpm", "ddim", "mean", "prior", "neighbours")
SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # diffusers' DDPM and DDIM both have these
PRIORS = ("linear", "none")
START_SELECTS = ("mse", "ua")
# The paper variant's readings of Eq. 3-4 (what the missing rows are at the start step n):
#   noise          missing rows N(0, I) at step n, available rows forward-noised, Eq. 4 re-injection
#   sdedit_mean    all rows = the input with missing rows at the train mean (0), forward-noised to n, Eq. 4
#   sdedit_ridge   the same with missing rows at the ridge estimate from the available ones
#   official       the authors' code: missing rows = an unconditional sample, available rows noised to n,
#                  n reverse steps without re-injection, clean available rows restored at the end
#   official_clamp the authors' other path: all N steps, available rows clamped to their clean values
READINGS = ("noise", "sdedit_mean", "sdedit_ridge", "official", "official_clamp")
# the paper variant's default reading: the lowest validation completion MSE on mfeat3 (0.280 at n = 10,
# against 1.006 for sdedit_mean and 1.18 for noise; docs/completion.md)
PAPER_READING = "sdedit_ridge"


@dataclass(frozen=True)
class VariantRules:
    """What a configuration of one ADN variant defaults to and refuses (the variant's behaviour, its
    loss, sampling and selection, is :mod:`admc.diffusion.variants`)."""

    prediction: str                 # adn.prediction when unset
    reading: str | None             # adn.reading when unset; None: the variant has no readings
    predictions: tuple[str, ...]    # the adn.prediction values it accepts ...
    why: str                        # ... and why only those
    paper_settings: bool            # adn.reading, adn.resample and adn.stride apply to it


VARIANT_RULES = {
    "conditional": VariantRules("sample", None, PREDICTIONS, "", paper_settings=False),
    "paper": VariantRules("epsilon", PAPER_READING, ("epsilon",),
                          "the paper's denoiser predicts the noise, Eq. 2", paper_settings=True),
    "regress": VariantRules("sample", None, ("sample",), "the regressor predicts the residual itself",
                            paper_settings=False),
}
VARIANTS = tuple(VARIANT_RULES)


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
    # fusion and MMER train on out-of-fold completions of the training set: the completer is refitted
    # on K-1 folds and completes the K-th (0 = off: in-sample completions)
    cross_fit: int = 0
    # a training sample that lacks some of a pattern's modalities: "fill" it with the method's completer
    # (the train mean for zero_fill) and train that pattern's classifier on it too, or "drop" it
    incomplete: str = "fill"

    def __post_init__(self):
        one_of("fusion.mode", self.mode, FUSION_MODES)
        one_of("fusion.shared_patterns", self.shared_patterns, SHARED_PATTERNS)
        one_of("fusion.incomplete", self.incomplete, INCOMPLETE)
        _heads_divide("fusion", self.d_model, self.heads)


FUSION_MODES = ("per-condition", "shared", "auto")
SHARED_PATTERNS = ("all", "full")
INCOMPLETE = ("fill", "drop")


@dataclass
class ImputerConfig:
    """The autoencoder completers of the ``ae``, ``cra`` and ``mmin`` methods (admc/baselines/imputers.py).

    The defaults are MMIN's (AIM3-RUC/MMIN, scripts/CAP_mmin.sh: AE_layers 256,128,64, 5 blocks, Adam
    lr 2e-4 with beta1 0.5, batch 128, 30 + 30 epochs with the learning rate decayed linearly over the
    second half, gradients clipped to norm 1, loss weights CE 1, MSE 4, cycle 2, classifier 128,128 with
    dropout 0.5); ``ae`` takes its own where these keep the default (admc.methods.METHODS)."""

    layers: list[int] = field(default_factory=lambda: [256, 128, 64])
    blocks: int = 5                # cascaded autoencoders (cra, mmin)
    epochs: int = 60
    patience: int = 15             # early stopping on validation completion MSE
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5             # Adam's first moment decay (MMIN's)
    weight_decay: float = 0.0      # MMIN's scripts pass 1e-5 but its optimizer does not use it
    grad_clip: float = 1.0
    mse_weight: float = 4.0        # mmin: forward imputation (missing rows and available ones)
    cycle_weight: float = 2.0      # mmin: backward imputation back to the masked input
    ce_weight: float = 1.0         # mmin: classification of the latent (labelled training samples)
    cls_layers: list[int] = field(default_factory=lambda: [128, 128])
    cls_dropout: float = 0.5


@dataclass
class LinearConfig:
    """The ``linear`` method: per availability condition a class-balanced logistic regression
    (scikit-learn, lbfgs) on the standardized mean/std-pooled raw features (admc/baselines/linear.py)."""

    c_grid: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0])  # C chosen on validation UA
    max_iter: int = 1000


@dataclass
class DataConfig:
    """What of the training split a run may use (docs/completion.md, "Where completion can pay").

    Both are drawn from the run's seed and apply to the train split only; validation and test stay
    as they are in the dataset."""

    # CPM-Nets protocol (Zhang et al. 2019): this fraction of the (sample, modality) entries of the
    # train split is missing, every sample keeping at least one modality
    train_missing_rate: float = 0.0
    # labels are kept on this fraction of the train split (stratified by class); the encoders and the
    # fusion learn from the labelled samples, the completer from every sample
    label_fraction: float = 1.0

    def __post_init__(self):
        if not 0 <= self.train_missing_rate < 1:
            raise ConfigError(f"data.train_missing_rate must be in [0, 1), got {self.train_missing_rate!r}")
        if not 0 < self.label_fraction <= 1:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {self.label_fraction!r}")


@dataclass
class CalibrationConfig:
    """Calibrated output and abstention, fitted at the end of training on the validation split
    (admc/calibration.py, admc/ood.py; docs/calibration.md)."""

    # one temperature per availability condition, fitted by minimising the validation NLL; false: T = 1
    temperature: bool = True
    # a present modality whose Mahalanobis score (ITFN embedding space) is above this quantile of the
    # validation scores is out of distribution and treated as missing; null: no OOD model
    ood_quantile: float | None = 0.99
    # and a second score on the window's input features (admc.ood.InputOOD): the pooled, standardized
    # input against the top k principal axes of the training samples (whitened distance inside them,
    # error outside them), thresholded at the same quantile; 0: no input score
    ood_input_components: int = 32
    # a window is uncertain when its calibrated max probability is below this; null: chosen on
    # validation with abstain_keep; 0: never
    abstain_below: float | None = None
    # the chosen abstain_below keeps this fraction of the correctly classified validation windows
    # (every condition) confident: the highest threshold that abstains on at most 1 - keep of them
    abstain_keep: float = 0.9

    def __post_init__(self):
        if not isinstance(self.temperature, bool):
            raise ConfigError(f"calibration.temperature must be true or false, got {self.temperature!r}")
        if self.ood_quantile is not None and not 0 < self.ood_quantile <= 1:
            raise ConfigError(f"calibration.ood_quantile must be null or in (0, 1], got {self.ood_quantile!r}")
        if isinstance(self.ood_input_components, bool) or not isinstance(self.ood_input_components, int) \
                or self.ood_input_components < 0:
            raise ConfigError(f"calibration.ood_input_components must be an integer >= 0, got {self.ood_input_components!r}")
        if self.abstain_below is not None and not 0 <= self.abstain_below <= 1:
            raise ConfigError(f"calibration.abstain_below must be null or in [0, 1], got {self.abstain_below!r}")
        if not 0 < self.abstain_keep <= 1:
            raise ConfigError(f"calibration.abstain_keep must be in (0, 1], got {self.abstain_keep!r}")


@dataclass
class TrainConfig:
    method: str = "admc"           # one of admc.methods.METHODS
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    itfn: ITFNConfig = field(default_factory=ITFNConfig)
    adn: ADNConfig = field(default_factory=ADNConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    imputer: ImputerConfig = field(default_factory=ImputerConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "TrainConfig":
        def build(klass, d):
            known = {f.name for f in fields(klass)}
            unknown = set(d) - known
            if unknown:
                raise ConfigError(f"{klass.__name__}: unknown keys {sorted(unknown)}")
            return klass(**d)

        obj = dict(obj)
        return cls(
            method=obj.get("method", "admc"),
            seed=obj.get("seed", 0),
            itfn=build(ITFNConfig, obj.get("itfn", {})),
            adn=build(ADNConfig, obj.get("adn", {})),
            fusion=build(FusionConfig, obj.get("fusion", {})),
            data=build(DataConfig, obj.get("data", {})),
            calibration=build(CalibrationConfig, obj.get("calibration", {})),
            imputer=build(ImputerConfig, obj.get("imputer", {})),
            linear=build(LinearConfig, obj.get("linear", {})),
        )


def resolve_fusion_mode(mode: str, n_modalities: int) -> str:
    if mode == "auto":
        return "per-condition" if n_modalities <= 3 else "shared"
    if mode not in ("per-condition", "shared"):
        raise ValueError(f"--fusion must be per-condition, shared or auto, got {mode!r}")
    return mode


def trainable(cfg: "TrainConfig") -> "TrainConfig":
    """``cfg`` if a model can be trained with it, else :class:`ConfigError`: the neighbours sampler
    completes from the training samples of a trained run (its bank), so it is set on one by ``admc
    calibrate --sampler neighbours``, never trained with (the fusion would learn from an empty bank)."""
    a = cfg.adn
    if a.sampler == "neighbours" or a.neighbour_bank > 0 or a.marginal:
        raise ConfigError("adn.sampler=neighbours (and adn.neighbour_bank, adn.marginal) is set on a trained run "
                          "by `admc calibrate --sampler neighbours`; a model is trained with the ADN's own sampler")
    return cfg
