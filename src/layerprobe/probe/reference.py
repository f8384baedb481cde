"""Slow, obvious references that the batched paths are tested against (and benchmarked against).

- :class:`ReferenceProbe`: one MLP probe at a time with ``torch.nn`` layers, autograd,
  ``torch.optim.AdamW`` and a ``LambdaLR`` schedule: what a researcher would write. It follows the
  seeding protocol of :mod:`layerprobe.probe.seeding`, so the same seed gives the same probe as
  the batched engine (same init, batch order and dropout masks).
- :func:`sklearn_linear_probe`: scikit-learn's ``LogisticRegression`` fitted per C, C chosen by the
  same validation loss as :mod:`layerprobe.probe.linear`.
- :func:`compare_linear_to_sklearn`: both linear probes on one (site, layer) of a store, for tests
  on real features.
scikit-learn is imported inside the functions: the probe engine itself never needs it.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from layerprobe import vocab
from layerprobe.probe.config import LinearSpec, ProbeSpec
from layerprobe.probe.schedule import lr_factor, warmup_steps
from layerprobe.probe.seeding import dropout_generator, epoch_orders, init_mlp

if TYPE_CHECKING:
    from layerprobe.store import Store


class ReferenceProbe:
    """One MLP probe (Linear -> ReLU -> Dropout -> Linear) trained by a plain PyTorch loop."""

    def __init__(self, d_in: int, n_classes: int, spec: ProbeSpec, seed: int, *, class_weight: torch.Tensor | None = None, device: str = "cpu") -> None:
        self.spec, self.seed, self.device = spec, seed, torch.device(device)
        init = init_mlp(seed, d_in, spec.hidden, n_classes)
        self.first = torch.nn.Linear(d_in, spec.hidden).to(self.device)
        self.second = torch.nn.Linear(spec.hidden, n_classes).to(self.device)
        with torch.no_grad():
            for param, value in zip((self.first.weight, self.first.bias, self.second.weight, self.second.bias), init):
                param.copy_(value)
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=None if class_weight is None else class_weight.to(self.device).float())
        self.best_epoch = 0

    def forward(self, x_nd: torch.Tensor, u_nh: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; ``u_nh`` (dropout uniforms) turns training-mode dropout on."""
        h = torch.relu(self.first(x_nd))
        if u_nh is not None:
            h = h * (u_nh >= self.spec.dropout) / (1 - self.spec.dropout)
        return self.second(h)

    def fit(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None) -> ReferenceProbe:
        """Train on ``x_train [n, D]``; the validation rows drive early stopping when the spec asks."""
        spec = self.spec
        params = [*self.first.parameters(), *self.second.parameters()]
        opt = torch.optim.AdamW(params, lr=spec.lr, betas=(spec.beta1, spec.beta2), eps=spec.eps, weight_decay=spec.weight_decay)
        n = x_train.shape[0]
        steps_per_epoch = math.ceil(n / spec.batch_size)
        total = spec.epochs * steps_per_epoch
        n_warmup = warmup_steps(total, spec.warmup_frac)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, n_warmup))
        orders = epoch_orders(self.seed, n, spec.epochs)
        gen = dropout_generator(self.seed, self.device)
        best_loss, waited, best_state = math.inf, 0, None
        self.best_epoch = spec.epochs
        for epoch in range(spec.epochs):
            for s in range(steps_per_epoch):
                idx = orders[epoch, s * spec.batch_size : (s + 1) * spec.batch_size].to(self.device)
                u = torch.rand(idx.numel(), spec.hidden, generator=gen, device=self.device)
                loss = self.loss_fn(self.forward(x_train[idx], u), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            if spec.needs_validation:
                with torch.no_grad():
                    val_loss = float(self.loss_fn(self.forward(x_val), y_val))
                if val_loss < best_loss:
                    best_loss, waited, self.best_epoch = val_loss, 0, epoch + 1
                    best_state = copy.deepcopy((self.first.state_dict(), self.second.state_dict()))
                else:
                    waited += 1
                if spec.patience and waited >= spec.patience:
                    break
        if spec.restore_best and best_state is not None:
            self.first.load_state_dict(best_state[0])
            self.second.load_state_dict(best_state[1])
        return self

    @torch.no_grad()
    def predict_proba(self, x_nd: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[n, C]`` (evaluation mode)."""
        return torch.softmax(self.forward(x_nd), dim=-1)


class SklearnLinear(NamedTuple):
    """scikit-learn's linear probe at the C with the lowest validation loss."""

    val_prob: np.ndarray
    test_prob: np.ndarray
    c: float


def sklearn_linear_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, x_test: np.ndarray, *,
    n_classes: int, cs: tuple[float, ...] = LinearSpec().cs, class_weight: str | None = None, max_iter: int = 1000, tol: float = 1e-4,
) -> SklearnLinear:  # fmt: skip
    """Fit ``LogisticRegression`` for each C (lbfgs) and keep the one with the lowest val cross-entropy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from layerprobe.probe.features import balanced_class_weight

    val_weight = None if class_weight is None else balanced_class_weight(torch.from_numpy(y_train), n_classes).numpy()[y_val]
    best: SklearnLinear | None = None
    best_loss = math.inf
    for c in cs:
        model = LogisticRegression(C=c, max_iter=max_iter, tol=tol, class_weight=class_weight).fit(x_train, y_train)
        val_prob, test_prob = (_full_columns(model, model.predict_proba(x), n_classes) for x in (x_val, x_test))
        loss = log_loss(y_val, val_prob, labels=list(range(n_classes)), sample_weight=val_weight)
        if loss < best_loss:
            best_loss, best = loss, SklearnLinear(val_prob, test_prob, c)
    assert best is not None
    return best


def _full_columns(model: object, prob: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((prob.shape[0], n_classes), dtype=np.float64)
    out[:, model.classes_] = prob  # type: ignore[attr-defined]
    return out / out.sum(axis=1, keepdims=True)  # float32 inputs give float32 probabilities; log_loss wants sums of 1


class LinearAgreement(NamedTuple):
    """Our linear probe and scikit-learn's on the same split of one (site, layer)."""

    accuracy: float
    accuracy_sklearn: float
    auc: float
    auc_sklearn: float
    c: float
    c_sklearn: float


def compare_linear_to_sklearn(store: Store, site: str, layer: int, *, spec: LinearSpec = LinearSpec(), split_seed: int = vocab.SPLIT_SEED) -> LinearAgreement:
    """Test-split accuracy and AUC of both linear probes on ``store``'s (site, layer)."""
    from layerprobe.probe.features import prepare_features
    from layerprobe.probe.linear import fit_linear_group
    from layerprobe.probe.metrics import classification_metrics
    from layerprobe.probe.splits import make_splits

    n_classes = len(store.class_names)
    split = make_splits(store.labels, store.splits, store.valid, class_names=store.class_names, seed=split_seed)[0]
    features = prepare_features(store.read_slab(site, layer), store.labels, split)
    ours = fit_linear_group(features, spec, n_classes=n_classes)
    x = [t[0].double().numpy() for t in (features.train, features.val, features.test)]
    y = [t.numpy() for t in (features.y_train, features.y_val)]
    theirs = sklearn_linear_probe(x[0], y[0], x[1], y[1], x[2], n_classes=n_classes, cs=spec.cs)
    m_ours = classification_metrics(ours.test_prob, features.y_test)
    m_theirs = classification_metrics(torch.from_numpy(theirs.test_prob)[None].float(), features.y_test)
    return LinearAgreement(
        float(m_ours.accuracy[0]), float(m_theirs.accuracy[0]), float(m_ours.auc[0]), float(m_theirs.auc[0]),
        float(ours.chosen_c[0]), theirs.c,
    )  # fmt: skip
