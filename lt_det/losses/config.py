"""Config keys of the loss zoo: ``add_loss_config(cfg)`` and ``build_loss(cfg)``.

Every key lives under MODEL.LT_LOSS, except detectron2 main's own box-head keys
(MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE, USE_FED_LOSS, FED_LOSS_NUM_CLASSES,
FED_LOSS_FREQ_WEIGHT_POWER), which are added with main's defaults when this detectron2 lacks them
and keep main's meaning: USE_SIGMOID_CE selects "sigmoid_ce", USE_SIGMOID_CE + USE_FED_LOSS
selects "federated".
"""
from detectron2.config import CfgNode as CN

from .kernels import set_compile
from .registry import get_loss_class


def add_loss_config(cfg: CN) -> None:
    """Add the loss zoo's keys to ``cfg`` (in place). Defaults are the authors' released ones."""
    head = cfg.MODEL.ROI_BOX_HEAD
    # detectron2 main's keys (absent from detectron2 <= 0.6), with main's defaults.
    if "USE_SIGMOID_CE" not in head:
        head.USE_SIGMOID_CE = False  # per-class sigmoid CE instead of softmax CE (main)
    if "USE_FED_LOSS" not in head:
        head.USE_FED_LOSS = False  # federated loss; main requires USE_SIGMOID_CE with it
    if "FED_LOSS_NUM_CLASSES" not in head:
        head.FED_LOSS_NUM_CLASSES = 50  # |S| after sampling (main; Zhou et al. use 50)
    if "FED_LOSS_FREQ_WEIGHT_POWER" not in head:
        head.FED_LOSS_FREQ_WEIGHT_POWER = 0.5  # w_c = image_count_c ^ power (main, Detic)

    cfg.MODEL.LT_LOSS = CN()
    _C = cfg.MODEL.LT_LOSS
    # Registered loss name (lt_det.losses.list_losses()): softmax_ce (detectron2's default),
    # sigmoid_ce, focal, inverse_frequency, class_balanced, class_balanced_focal, balanced_softmax,
    # balanced_sigmoid,
    # eql, softmax_eql, droploss, gumbel_ce, federated, bags, seesaw, or a downstream one.
    _C.NAME = "softmax_ce"
    # lambda: a class j is "tail" when its image frequency f_j = image_count_j / M < lambda
    # (EQL T_lambda; also Softmax EQL and DropLoss). 0.0011 is the released LVIS v1 value (815
    # tail classes); LVIS v0.5 configs use 0.00177 (rare + common, 915 classes).
    _C.TAIL_THRESHOLD = 0.0011
    # Binary activation of eql / droploss / federated: "sigmoid" (their released code), or "gumbel"
    # (GOL's Gumbel CDF eta(x) = exp(-exp(-x)), logits clamped to [-4, 10] in training; GOL =
    # droploss + gumbel).
    _C.ACTIVATION = "sigmoid"
    # Temperature t of a normalised (cosine) classifier, t * cos(x, w_k) + b_k, for any loss;
    # 0 keeps the linear classifier. mmdetection's Seesaw LVIS config uses 20 (NormedLinear).
    _C.COSINE_TEMPERATURE = 0.0
    # Compile the fused loss kernels (sigmoid family, softmax CE family) with torch.compile
    # (ours). True: one vectorised, multi-threaded pass per loss (needs a C++ compiler on CPU,
    # Triton on CUDA; costs seconds on first use, cached on disk); a failing compile falls back to
    # False with a warning. False: the same formulas in eager PyTorch over row blocks (slower).
    # Process-wide (lt_det.losses.kernels.set_compile).
    _C.COMPILE = True

    # sigmoid_ce and focal.
    _C.SIGMOID = CN()
    # True: K + 1 logits with the background logit unused (detectron2 main's layout);
    # False: K logits and a zero background score at test time.
    _C.SIGMOID.BACKGROUND_LOGIT = True
    # pi: classifier bias init -log((1 - pi) / pi); 0 keeps bias 0 (detectron2 main).
    _C.SIGMOID.PRIOR_PROB = 0.0

    _C.FOCAL = CN()
    _C.FOCAL.ALPHA = 0.25  # alpha (torchvision / fvcore default); < 0 disables alpha_t
    _C.FOCAL.GAMMA = 2.0  # gamma (Lin et al. default)

    _C.INVERSE_FREQUENCY = CN()
    # alpha_j = 1 / instance_count_j over its mean, clipped to this range (BAGS supplementary).
    _C.INVERSE_FREQUENCY.CLIP = (0.01, 5.0)

    _C.CLASS_BALANCED = CN()
    # beta of the effective number (1 - beta^n) / (1 - beta) (Cui et al.; SPEC's default).
    _C.CLASS_BALANCED.BETA = 0.999

    _C.BALANCED_SOFTMAX = CN()
    # Count of the background logit in CE(z + log n): "sampler" (ours): n_bg = sum_j n_j (1 - P)
    # / P with P = MODEL.ROI_HEADS.POSITIVE_FRACTION; "none": the background logit is not shifted.
    _C.BALANCED_SOFTMAX.BACKGROUND = "sampler"

    _C.BALANCED_SIGMOID = CN()
    # "released" (BALMS code): shift fg RoIs by logit(f_j); "paper" (eq. 48): shift every RoI by
    # log(n_j / (n - n_j)) + log(K - 1).
    _C.BALANCED_SIGMOID.FORM = "released"

    _C.EQL = CN()
    # The paper's LVIS rule (not in the released code): never ignore a class in the image's
    # pos_category_ids or neg_category_ids. Needs lt_det.data.image_labels.ImageLabelDatasetMapper.
    _C.EQL.USE_IMAGE_LABELS = False

    _C.SOFTMAX_EQL = CN()
    # gamma: probability of removing a tail class from a foreground RoI's softmax (ours; no
    # official detection code).
    _C.SOFTMAX_EQL.GAMMA = 0.9

    _C.GUMBEL_CE = CN()
    # Clamp the reduced loss to [0, 20] as GOL's released code does (zeroes every gradient of a
    # step whose loss exceeds 20).
    _C.GUMBEL_CE.CLAMP_LOSS = True

    _C.FEDERATED = CN()
    # pi of the classifier bias init; 0 keeps detectron2 main's bias 0, Detic / CenterNet2 use 0.01.
    _C.FEDERATED.PRIOR_PROB = 0.0

    _C.BAGS = CN()
    # Group edges over instance counts: [0, 10), [10, 100), [100, 1000), [1000, inf) (BAGS).
    _C.BAGS.BIN_EDGES = (10, 100, 1000)
    # beta: "others" RoIs sampled per own RoI in each group (BAGS code: 8; supp. Table 1: 1).
    _C.BAGS.OTHERS_RATIO = 8.0

    _C.SEESAW = CN()
    _C.SEESAW.P = 0.8  # p, mitigation exponent (mmdetection / paper)
    _C.SEESAW.Q = 2.0  # q, compensation exponent (mmdetection / paper)


def resolve_loss_name(cfg: CN) -> str:
    """MODEL.LT_LOSS.NAME, or the loss that detectron2 main's box-head keys select."""
    head, name = cfg.MODEL.ROI_BOX_HEAD, cfg.MODEL.LT_LOSS.NAME
    if head.USE_FED_LOSS and not head.USE_SIGMOID_CE:
        raise ValueError(
            "MODEL.ROI_BOX_HEAD.USE_FED_LOSS needs MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE: True (as in "
            "detectron2 main), or set MODEL.LT_LOSS.NAME: federated instead."
        )
    legacy = "federated" if head.USE_FED_LOSS else "sigmoid_ce" if head.USE_SIGMOID_CE else None
    if legacy is None:
        return name
    if name not in ("softmax_ce", legacy):
        raise ValueError(
            f"MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE / USE_FED_LOSS select '{legacy}' but "
            f"MODEL.LT_LOSS.NAME is '{name}': keep one of the two."
        )
    return legacy


def build_loss(cfg: CN):
    """The registered loss selected by ``cfg``, built from ``cfg`` (also applies
    MODEL.LT_LOSS.COMPILE to the fused kernels)."""
    set_compile(cfg.MODEL.LT_LOSS.COMPILE)
    return get_loss_class(resolve_loss_name(cfg))(cfg)
