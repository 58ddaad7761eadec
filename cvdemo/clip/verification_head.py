"""Training for verification: a small projection head on frozen features, with the lecture's pair loss.

The slide prints L = T·M + (1 − T)·(1 − M) with T = 1 for "same" and M the cosine. As printed it
*rewards* a low cosine for same pairs (L = M) and a high one for different pairs, pushing same pairs apart.
What is meant, and what is trained here: L = 1 − M for same pairs (pull together) and max(0, M − margin)
for different pairs (push apart until their cosine is below the margin; without a margin, every different
pair would be pushed towards −1, which wastes the space). Beside it, the triplet loss
max(0, margin + M(anchor, negative) − M(anchor, positive)).

The head is x -> x + (x V) Uᵀ, a low-rank (``rank``) correction of the identity that starts at zero, so
"before training" is exactly the frozen features and a few hundred photos cannot rewrite the whole space
(a full 384×384 map overfitted: held-out AUC fell on CIFAR-10 and COCO128 in our runs). It is trained on
some photos and evaluated on pairs of photos it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from cvdemo.clip._common import ClipInputError
from cvdemo.vectors import l2_normalize
from cvdemo.clip.gallery import GalleryImage
from cvdemo.clip.pairs import PHOTO, PairSet, build_pairs
from cvdemo.clip.verify import Embedder, VerificationEval, evaluate_cosines, pair_cosines

PAIR, TRIPLET = "pair", "triplet"
LOSSES = {PAIR: "pair loss (corrected slide): 1 − M for same, max(0, M − margin) for different",
          TRIPLET: "triplet loss: max(0, margin + M(a, n) − M(a, p))"}


def split_photos(photos: Sequence[GalleryImage], holdout: float = 0.3, seed: int = 0) -> tuple[list[GalleryImage], list[GalleryImage]]:
    """Photos for training and held-out photos (a share ``holdout`` of each label), never both."""
    rng = np.random.default_rng(seed)
    by_label: dict[str | None, list[GalleryImage]] = {}
    for p in photos:
        by_label.setdefault(p.label, []).append(p)
    train, test = [], []
    for group in by_label.values():
        order = rng.permutation(len(group))
        cut = max(1, round(len(group) * holdout)) if len(group) > 1 else 0
        test += [group[i] for i in order[:cut]]
        train += [group[i] for i in order[cut:]]
    if len(train) < 2 or len(test) < 2:
        raise ClipInputError("Training for verification needs at least 4 different photos (2 to train, 2 to test).")
    return train, test


@dataclass
class HeadTraining:
    loss: str
    margin: float
    epochs: int
    losses: list[float]  # mean training loss per epoch
    before: VerificationEval  # frozen features, held-out pairs
    after: VerificationEval  # through the trained head, the same held-out pairs
    train_pairs: int
    test_pairs: int
    projection: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), np.float32))  # (dim, dim)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Frozen features -> the trained head's unit vectors."""
        return l2_normalize(l2_normalize(vectors) @ self.projection)

    @property
    def improved(self) -> bool:
        return self.after.auc > self.before.auc

    def summary(self) -> str:
        delta = self.after.auc - self.before.auc
        if abs(delta) < 0.005:
            verdict = "did not change held-out AUC noticeably"
        elif delta > 0:
            verdict = "improved held-out AUC"
        else:
            verdict = "made held-out AUC worse (it fitted the training photos, not the task)"
        return (f"Training {verdict}: {self.before.auc:.3f} → {self.after.auc:.3f}; equal-error rate "
                f"{self.before.eer:.1%} → {self.after.eer:.1%} on {self.test_pairs} pairs of unseen photos.")


def _groups(pairs: PairSet) -> np.ndarray:
    """Which images count as "the same": one source photo (photo level) or one label (class level)."""
    if pairs.level == PHOTO:
        return np.asarray(pairs.sources)
    names = {lab: i for i, lab in enumerate(sorted({str(lab) for lab in pairs.labels}))}
    return np.array([names[str(lab)] for lab in pairs.labels])


def train_head(
    train_vectors: np.ndarray,
    train_pairs: PairSet,
    test_vectors: np.ndarray,
    test_pairs: PairSet,
    loss: str = PAIR,
    margin: float | None = None,
    epochs: int = 60,
    lr: float = 3e-3,
    rank: int = 16,
    weight_decay: float = 1e-3,
    pairs_per_anchor: int = 4,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> HeadTraining:
    """Train the head on ``train_vectors``; ROC before/after on the held-out pairs.

    Each epoch, every training image is an anchor with ``pairs_per_anchor`` random positives (same
    group) and as many random negatives (another group): pairs (anchor, positive) / (anchor, negative)
    for the pair loss, triples for the triplet loss. Defaults chosen on ConSE features of CIFAR-10
    (class level) and ants/bees (photo and class level): held-out AUC rose in 5 of 6 runs.
    """
    import torch

    if loss not in LOSSES:
        raise ClipInputError(f"Unknown loss “{loss}”: use {' or '.join(LOSSES)}.")
    if int(epochs) < 1:
        raise ClipInputError("Train for at least one epoch.")
    margin = (0.5 if loss == PAIR else 0.2) if margin is None else float(margin)
    groups = _groups(train_pairs)
    members = {g: np.flatnonzero(groups == g) for g in np.unique(groups)}
    anchors = np.array([i for i, g in enumerate(groups) if len(members[g]) > 1])
    if not len(anchors) or len(members) < 2:
        raise ClipInputError("Training needs at least two photos per group and two groups.")
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(l2_normalize(train_vectors))
    dim = x.shape[1]
    rank = max(1, min(int(rank), dim))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        down = (torch.randn(dim, rank) / dim**0.5).requires_grad_(True)  # V
    up = torch.zeros(dim, rank, requires_grad=True)  # U = 0: the head starts as the identity
    optimizer = torch.optim.Adam([up, down], lr=lr)
    history = []
    for epoch in range(int(epochs)):
        batch = np.repeat(anchors, pairs_per_anchor)
        pos = np.array([rng.choice(members[groups[i]][members[groups[i]] != i]) for i in batch])
        neg = np.array([rng.choice(np.flatnonzero(groups != groups[i])) for i in batch])
        z = torch.nn.functional.normalize(x + (x @ down) @ up.T, dim=1)
        m_pos = (z[batch] * z[pos]).sum(1)
        m_neg = (z[batch] * z[neg]).sum(1)
        if loss == PAIR:  # T = 1 (same): 1 − M; T = 0 (different): max(0, M − margin)
            value = torch.cat([1 - m_pos, torch.relu(m_neg - margin)]).mean()
        else:
            value = torch.relu(margin + m_neg - m_pos).mean()
        optimizer.zero_grad()
        (value + weight_decay * (up.pow(2).sum() + down.pow(2).sum())).backward()
        optimizer.step()
        history.append(float(value.detach()))
        if progress is not None:
            progress(epoch + 1, int(epochs))
    projection = (torch.eye(dim) + down.detach() @ up.detach().T).numpy()
    before = evaluate_cosines(pair_cosines(l2_normalize(test_vectors), test_pairs), test_pairs.same,
                              test_pairs.kind, test_pairs.level, "frozen features")
    projected = l2_normalize(l2_normalize(test_vectors) @ projection)
    after = evaluate_cosines(pair_cosines(projected, test_pairs), test_pairs.same, test_pairs.kind,
                             test_pairs.level, "trained head")
    return HeadTraining(loss, margin, int(epochs), history, before, after, len(anchors), len(test_pairs), projection)


def train_for_verification(
    embedder: Embedder,
    photos: Sequence[GalleryImage],
    level: str = PHOTO,
    sources: int = 64,
    loss: str = PAIR,
    epochs: int = 60,
    holdout: float = 0.3,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> HeadTraining:
    """The whole recipe: split photos, build pairs on each side, embed (cached), train, compare on held-out."""
    train_photos, test_photos = split_photos(photos, holdout, seed)
    n_test = max(2, round(sources * holdout))
    train_pairs = build_pairs(train_photos, level, sources=sources - n_test, seed=seed)
    test_pairs = build_pairs(test_photos, level, sources=n_test, seed=seed + 7)

    def step(what: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(what, done, total))

    train_vectors = embedder.embed(train_pairs.images, step("embedding training photos"), train_pairs.digests)
    test_vectors = embedder.embed(test_pairs.images, step("embedding held-out photos"), test_pairs.digests)
    return train_head(train_vectors, train_pairs, test_vectors, test_pairs, loss=loss, epochs=epochs, seed=seed,
                      progress=step("training the head"))
