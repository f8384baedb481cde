"""The shared vocabulary: every name that more than one stage relies on, written once.

Extract writes these names into stores, probe writes them into results tables, fhs and the CLI read
them back; each imports them from here and no other module spells a list of them out again (a test
parses ``src/`` to keep it so). Pure Python, no imports beyond the standard library, so the CLI can
build its ``click.Choice`` lists without loading torch or polars.

Design choices:
- Lists of choices are tuples of the single names above them, so a name is typed once.
- The results table's columns carry plain Python types here; :func:`results_polars_schema` turns them
  into polars types when polars is already needed.
- Layer names come from one function per module kind (:func:`vision_layer_names`,
  :func:`connector_layer_names`, :func:`llm_layer_names`); stores record them, so readers never
  reconstruct them, but writers (the extractor and the synthetic test stores) must agree.
"""

from __future__ import annotations

from typing import Final

# --- sites: the arrays of a store, under ``sites/`` ---------------------------------------------
VISION: Final = "vision/mean"
"""Vision tower: one layer per block, mean over the image's patch tokens."""
CONNECTOR: Final = "connector/mean"
"""Connector: ``inner`` (MLP hidden layer, where it fits the LLM width) then ``output``."""
CONNECTOR_INNER: Final = "connector/inner_mean"
"""Connector hidden layer kept apart where it is wider than the LLM (Qwen mergers)."""
LLM_IMAGE: Final = "llm/image_mean"
"""LLM: mean over image-token positions ("comprehension"); ``embed`` then one per decoder layer."""
LLM_FINAL: Final = "llm/final_token"
"""LLM: hidden state of the final input token ("utilisation"); same layers as ``LLM_IMAGE``."""
SITES: Final = (VISION, CONNECTOR, CONNECTOR_INNER, LLM_IMAGE, LLM_FINAL)
"""Every site the extractor can write, in the order of the model's data flow."""
LLM_SITES: Final = (LLM_IMAGE, LLM_FINAL)

ANSWER_SITE: Final = "answer_logits"
"""The model's own answer: ``(sample, candidate)`` logits; the ``site`` of ``kind = "model"`` rows."""
ANSWER_LAYER_NAME: Final = "answer"
"""``layer_name`` of the model's answer rows (its ``layer`` is 0)."""
ANSWER_TEXT_SITE: Final = "answer_text"
"""The model's generated answer parsed to a candidate (``layerprobe.answers.parse_answer``): the
``site`` of the second ``kind = "model"`` row of stores extracted with ``answer_tokens > 0``. Not
a site of the store (not in ``SITES``): its per-sample array is ``samples/answer_text``."""
GENERATED_LAYER_NAME: Final = "generated"
"""``layer_name`` of the generated-answer rows (their ``layer`` is 0)."""
P_FINAL_AUTO: Final = "auto"
P_FINAL_GENERATED: Final = "generated"
P_FINAL_FORCED: Final = "forced"
P_FINAL_KINDS: Final = (P_FINAL_AUTO, P_FINAL_GENERATED, P_FINAL_FORCED)
"""Which P_final a profile uses: ``generated`` (the parsed generated answer, the paper's), ``forced``
(argmax over the candidates' first-token logits), or ``auto`` (generated where the run has it)."""
P_FINAL_SITES: Final = {P_FINAL_GENERATED: ANSWER_TEXT_SITE, P_FINAL_FORCED: ANSWER_SITE}
"""The model row's ``site`` of each concrete P_final kind."""

# --- layer names ----------------------------------------------------------------------------------
EMBED: Final = "embed"
INNER: Final = "inner"
OUTPUT: Final = "output"


def vision_layer_names(n_blocks: int) -> tuple[str, ...]:
    """``block_0 .. block_{n-1}``: the output of each vision-tower block."""
    return tuple(f"block_{i}" for i in range(n_blocks))


def connector_layer_names(has_inner: bool) -> tuple[str, ...]:
    """``(inner, output)`` for an MLP connector whose hidden layer is kept in the site, else ``(output,)``."""
    return (INNER, OUTPUT) if has_inner else (OUTPUT,)


def llm_layer_names(n_decoder_layers: int) -> tuple[str, ...]:
    """``embed, layer_1 .. layer_L``: layer ``i`` is transformers' ``output_hidden_states[i]``."""
    return (EMBED, *(f"layer_{i}" for i in range(1, n_decoder_layers + 1)))


# --- splits ---------------------------------------------------------------------------------------
TRAIN: Final = "train"
VAL: Final = "val"
TEST: Final = "test"
UNASSIGNED: Final = ""
"""Split of a sample the dataset does not assign (the probe engine then splits)."""
SPLITS: Final = (TRAIN, VAL, TEST)
"""The named splits, in the order probes use them."""
STORED_SPLITS: Final = (*SPLITS, UNASSIGNED)
"""Values allowed in a store's ``samples/split`` column."""
SCORED_SPLITS: Final = (VAL, TEST)
"""Splits whose metrics a results table holds; ``test`` is reported, ``val`` selects models."""
SPLIT_SEED: Final = 0
"""Seed of the stratified split made for samples the dataset does not assign (the probe sweep's
default, and the split the fine-tuning arms train on, so a fine-tuned model is never tested on its
training images)."""
SPLIT_FRACTIONS: Final = (0.6, 0.2, 0.2)
"""Train/val/test fractions of that split."""

# --- dtypes ---------------------------------------------------------------------------------------
BFLOAT16: Final = "bfloat16"
FLOAT16: Final = "float16"
FLOAT32: Final = "float32"
AUTO: Final = "auto"
COMPUTE_DTYPES: Final = (BFLOAT16, FLOAT16, FLOAT32)
"""dtypes a model can run in during extraction (activations are stored as bf16 bits either way)."""
PROBE_DTYPES: Final = (AUTO, FLOAT32, BFLOAT16)
"""Matmul dtypes of the probe engine; ``auto`` picks by device."""
EXTRACT_DTYPES: Final = (AUTO, *COMPUTE_DTYPES)
"""What extraction (and fine-tuning) accept as ``dtype``: ``auto`` is resolved to a compute dtype
before the model loads (``layerprobe.hardware.resolve_compute_dtype``); stores record the result."""

# --- probe kinds and metrics ----------------------------------------------------------------------
MLP: Final = "mlp"
LINEAR: Final = "linear"
MODEL_KIND: Final = "model"
"""``kind`` of the row that scores the model's own answer (P_final)."""
PROBE_KINDS: Final = (MLP, LINEAR)
"""Kinds of trained probe."""
VISION_CE: Final = "vision_ce"
"""``kind`` of a row scoring the vision tower fine-tuned with a pooled cross-entropy head (Table 3's baseline)."""
RESULT_KINDS: Final = (*PROBE_KINDS, MODEL_KIND, VISION_CE)
"""Every ``kind`` a results table may hold."""

METRICS: Final = ("accuracy", "f1", "precision", "recall", "auc")
"""Probe metrics, all fractions in [0, 1]; the paper reports accuracy."""
ACCURACY: Final = METRICS[0]

STATUS_OK: Final = "ok"
STATUS_FAILED: Final = "failed"


def metric_column(split: str, metric: str) -> str:
    """Results-table column of ``metric`` on ``split``, e.g. ``test_accuracy``."""
    return f"{split}_{metric}"


# --- probe and scoring options: config fields, also offered as the CLI's choices ------------------
PRESET_PAPER: Final = "paper"
"""The study's MLP recipe (``layerprobe.probe.config.PRESETS`` defines each preset)."""
PRESET_FAST: Final = "fast"
PRESET_NAMES: Final = (PRESET_PAPER, PRESET_FAST)
"""Named MLP recipes, in the order the CLI lists them."""
CLASS_WEIGHT_NONE: Final = "none"
CLASS_WEIGHT_BALANCED: Final = "balanced"
CLASS_WEIGHTS: Final = (CLASS_WEIGHT_NONE, CLASS_WEIGHT_BALANCED)
"""Loss weighting of probes: equal samples, or scikit-learn's ``balanced``."""
MEAN_CURVE: Final = "mean_curve"
MEAN_SCORE: Final = "mean_score"
SEED_AGGS: Final = (MEAN_CURVE, MEAN_SCORE)
"""How fhs combines seeds: score the seed-mean curve, or average the per-seed scores."""
MISSING_INTERPOLATE: Final = "interpolate"
MISSING_NAN: Final = "nan"
MISSING_ERROR: Final = "error"
MISSING_POLICIES: Final = (MISSING_INTERPOLATE, MISSING_NAN, MISSING_ERROR)
"""What fhs does with a layer without a usable probe."""


# --- the results table ----------------------------------------------------------------------------
RESULT_CONTRACT: Final[dict[str, type]] = {
    "run_id": str, "store": str, "model_id": str, "adapter": str, "dataset": str,
    "site": str, "layer": int, "layer_name": str, "kind": str, "seed": int,
    "preset": str, "params": str, "status": str, "error": str,
    **{metric_column(split, m): float for split in SCORED_SPLITS for m in METRICS},
    "n_train": int, "n_val": int, "n_test": int, "train_seconds": float,
}  # fmt: skip
"""The columns every results table has, in order, with their types (docs/architecture.md); ``fhs``
reads these and nothing else."""
RESULT_EXTRA: Final[dict[str, type]] = {
    "split": str, "n_folds": int, "matmul_dtype": str, "best_epoch": int, "chosen_c": float, "converged": bool,
}
"""Columns the probe engine adds after the contract (``fhs`` ignores them)."""
RESULT_COLUMNS: Final[dict[str, type]] = {**RESULT_CONTRACT, **RESULT_EXTRA}
METRIC_COLUMNS: Final = tuple(c for c, t in RESULT_CONTRACT.items() if t is float and c != "train_seconds")
PROBE_KEY: Final = ("run_id", "site", "layer", "kind", "preset", "params", "seed")
"""Columns that identify one probe: two rows agreeing on all of them are the same probe twice."""


def results_polars_schema(columns: dict[str, type] = RESULT_COLUMNS) -> dict:
    """``columns`` as a polars schema (imports polars)."""
    import polars as pl

    to_polars = {str: pl.String, int: pl.Int64, float: pl.Float64, bool: pl.Boolean}
    return {name: to_polars[kind] for name, kind in columns.items()}

# --- fine-tuning (layerprobe.finetune) ------------------------------------------------------------
FROZEN: Final = "frozen"
"""A module left untouched by fine-tuning: no adapter inside it, its weights bit-identical."""
LORA: Final = "lora"
"""A module adapted by LoRA: every ``nn.Linear`` inside it gets a low-rank adapter."""
FULL: Final = "full"
"""A module trained in full (peft ``modules_to_save``: a trained copy stored with the adapter)."""
VISION_TOWER_MODES: Final = (FROZEN, LORA)
"""How fine-tuning treats the vision tower (the paper's Table 2 compares the two)."""
CONNECTOR_MODES: Final = (LORA, FROZEN, FULL)
"""How fine-tuning treats the connector (projector / merger)."""
KEEP_LAST: Final = "last"
KEEP_BEST: Final = "best"
KEEP_MODES: Final = (KEEP_LAST, KEEP_BEST)
"""Which adapter a fine-tuning run keeps: the last epoch's, or the best on val (accuracy, then loss)."""
VISION_CE_TOWER_MODES: Final = (LORA, FULL)
"""How the vision-tower CE baseline trains the tower: LoRA in its Linears, or every tower weight."""
VISION_CE_HEADS: Final = (LINEAR, MLP)
"""The vision-tower CE baseline's head on the pooled last block: one Linear, or Linear-ReLU-Linear."""


# --- studies (``layerprobe study``): engines, step kinds, arms, step states ------------------------
ENGINE_LOCAL: Final = "local"
"""Run the study's steps one at a time in this process (the default)."""
ENGINE_RAY: Final = "ray"
"""Run the study's steps as Ray tasks (a local Ray instance, or an existing cluster)."""
ENGINES: Final = (ENGINE_LOCAL, ENGINE_RAY)

STEP_FINETUNE: Final = "finetune"
STEP_EXTRACT: Final = "extract"
STEP_PROBE: Final = "probe"
STEP_FHS: Final = "fhs"
STEP_REPORT: Final = "report"
STEP_KINDS: Final = (STEP_FINETUNE, STEP_EXTRACT, STEP_PROBE, STEP_FHS, STEP_REPORT)
"""Kinds of study step, in the order data flows through them."""

ARM_BASE: Final = "base"
"""The model as released: no fine-tuning."""
ARM_SFT_FROZEN: Final = "sft-frozen"
"""LoRA SFT on the dataset with the vision tower frozen."""
ARM_SFT_LORA: Final = "sft-lora"
"""LoRA SFT on the dataset with the vision tower adapted too."""
ARM_VISION_CE: Final = "vision-ce"
"""The vision tower trained with a cross-entropy head (``finetune --vision-ce``; Table 3's "Vision Tower SFT")."""
ARMS: Final = (ARM_BASE, ARM_SFT_FROZEN, ARM_SFT_LORA, ARM_VISION_CE)
"""The study's arms (paper sec. 3.2), in the order its tables list them."""

STATE_DONE: Final = "done"
STATE_PENDING: Final = "pending"
STATE_RUNNING: Final = "running"
STATE_FAILED: Final = "failed"
STATE_BLOCKED: Final = "blocked"
"""A step not run because a step it needs failed."""
STEP_STATES: Final = (STATE_DONE, STATE_PENDING, STATE_RUNNING, STATE_FAILED, STATE_BLOCKED)
