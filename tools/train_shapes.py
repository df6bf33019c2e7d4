"""Train the shapes encoder family from a seed: ``python -m tools.train_shapes``.

Recipe (Algorithm 1 needs one text tower shared by every level):

1. ``joint``: the text tower and the large image tower, contrastively (InfoNCE
   with a learnable temperature), on batches made of clusters of near-miss
   scenes, so every batch holds hard negatives.
2. ``students``: the text tower frozen, the small and medium image towers learn
   to meet it (same loss, same batches, one text forward for both).
3. ``cross``: the cross-encoder starts from the large tower's convnet (frozen)
   and learns to pick the true image among the large bi-encoder's hardest
   candidates in the batch (a listwise image-text-matching loss).

Then it evaluates the family on the held-out test gallery and writes
``shapes_family.json`` beside the weights. Training data is rendered on the
fly; nothing is downloaded.

Why one module: it is one recipe, read top to bottom (data, the three stages, evaluation, the
metadata written beside the weights); a maintainer's tool, not library code anything imports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cascade import world
from cascade.encoders import shapes
from cascade.errors import CascadeError
from cascade.paths import ASSETS_DIR


@dataclass(frozen=True)
class TrainConfig:
    """Steps per stage and the batch recipe. A batch is ``clusters`` clusters of ``cluster_size`` scenes."""

    seed: int = 0
    joint_steps: int = 1500
    student_steps: int = 1000
    cross_steps: int = 800
    clusters: int = 32
    cluster_size: int = 4
    joint_lr: float = 3e-3
    student_lr: float = 2e-3
    aux_weight: float = 1.0  # weight of the attribute read-out loss beside InfoNCE
    cross_lr: float = 1e-3
    threads: int = 2


_INITIAL_SCALE = 20.0  # the contrastive logit scale (1 / temperature) to start from; it is learned
QUICK = TrainConfig(joint_steps=3, student_steps=3, cross_steps=3, clusters=4)


# ---------------------------------------------------------------- data and losses


def batches(seed: int, clusters: int, cluster_size: int) -> Iterator[world.TrainingBatch]:
    """An endless, seeded stream of training batches rendered on the fly."""
    rng = random.Random(f"train:{seed}")
    while True:
        yield world.training_batch(rng, clusters, cluster_size)


class AttributeHeads(nn.Module):
    """Linear read-outs of every scene attribute from a normalised embedding (auxiliary training signal).

    Shared by the image and the text side, they pull both into one space where
    "group 0 is a small striped red star" is a direction; contrastive loss alone
    learns that far more slowly on a CPU budget.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.sizes = [len(values) for values in world.ATTRIBUTES.values()]
        self.linear = nn.Linear(dim, sum(self.sizes))

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over attributes; ``labels (n, n_attributes)``, -1 ignored."""
        # x10: unit vectors give logits too small to be confident until the weights grow
        logits = self.linear(F.normalize(embeddings, dim=-1) * 10.0).split(self.sizes, dim=1)
        losses = [F.cross_entropy(part, labels[:, i], ignore_index=-1) for i, part in enumerate(logits)]
        return torch.stack(losses).mean()


def info_nce(images: torch.Tensor, texts: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss of matching rows; ``(n, d)`` unnormalised embeddings each."""
    logits = F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T * log_scale.exp().clamp(max=100.0)
    target = torch.arange(len(logits))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _optimiser(params: Sequence[nn.Parameter], lr: float, steps: int) -> tuple:
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def _step(loss: torch.Tensor, optimiser, scheduler, params: Sequence[nn.Parameter]) -> None:
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, 1.0)
    optimiser.step()
    scheduler.step()


# ---------------------------------------------------------------- stages


@dataclass
class Joint:
    """What stage 1 hands on: the shared text tower, the large image tower, the attribute heads."""

    text: shapes.TextTower
    large: shapes.ConvTower
    heads: AttributeHeads
    vocab: list[str]
    tokeniser: shapes.Tokeniser


def train_joint(config: TrainConfig, vocab: list[str]) -> Joint:
    """Stage 1: the text tower and the large image tower together."""
    tokeniser = shapes.Tokeniser(vocab, shapes.TEXT_TOWER.max_tokens)
    text, large = shapes.build("text", vocab), shapes.build("large", vocab)
    heads = AttributeHeads(shapes.TEXT_TOWER.dim)
    log_scale = nn.Parameter(torch.tensor(math.log(_INITIAL_SCALE)))
    params = [*text.parameters(), *large.parameters(), *heads.parameters(), log_scale]
    optimiser, scheduler = _optimiser(params, config.joint_lr, config.joint_steps)
    size = shapes.IMAGE_TOWERS["large"].image_size
    stream = batches(config.seed, config.clusters, config.cluster_size)
    bar = tqdm(range(config.joint_steps), desc="joint: text + large", unit="step", dynamic_ncols=True)
    for _ in bar:
        batch = next(stream)
        labels = torch.from_numpy(batch.labels)
        images, texts = large(shapes.to_pixels(batch.images, size)), text(tokeniser(batch.captions))
        contrastive = info_nce(images, texts, log_scale)
        auxiliary = heads.loss(images, labels) + heads.loss(texts, labels)
        _step(contrastive + config.aux_weight * auxiliary, optimiser, scheduler, params)
        bar.set_postfix(nce=f"{contrastive.item():.3f}", aux=f"{auxiliary.item():.3f}", scale=f"{log_scale.exp():.1f}")
    return Joint(text.eval(), large.eval(), heads.eval(), vocab, tokeniser)


def train_students(config: TrainConfig, joint: Joint) -> dict[str, shapes.ConvTower]:
    """Stage 2: small and medium image towers against the frozen text tower (and heads). Returns ``{name: tower}``."""
    names = [name for name in shapes.IMAGE_TOWERS if name != "large"]
    towers = {name: shapes.build(name, joint.vocab) for name in names}
    scales = {name: nn.Parameter(torch.tensor(math.log(_INITIAL_SCALE))) for name in names}
    params = [p for name in names for p in (*towers[name].parameters(), scales[name])]
    optimiser, scheduler = _optimiser(params, config.student_lr, config.student_steps)
    stream = batches(config.seed + 1, config.clusters, config.cluster_size)
    bar = tqdm(range(config.student_steps), desc="students: " + " + ".join(names), unit="step", dynamic_ncols=True)
    joint.heads.requires_grad_(False)
    for _ in bar:
        batch = next(stream)
        labels = torch.from_numpy(batch.labels)
        with torch.no_grad():
            targets = joint.text(joint.tokeniser(batch.captions))
        losses = {}
        for name, tower in towers.items():
            images = tower(shapes.to_pixels(batch.images, shapes.IMAGE_TOWERS[name].image_size))
            auxiliary = joint.heads.loss(images, labels)
            losses[name] = info_nce(images, targets, scales[name]) + config.aux_weight * auxiliary
        _step(sum(losses.values()), optimiser, scheduler, params)
        bar.set_postfix({name: f"{loss.item():.3f}" for name, loss in losses.items()})
    return {name: tower.eval() for name, tower in towers.items()}


def train_cross(config: TrainConfig, text: shapes.TextTower, large: shapes.ConvTower, vocab: list[str]) -> nn.Module:
    """Stage 3: the cross-encoder, matching captions and images inside clusters of near misses.

    It starts as the large bi-encoder (its image tower a copy of the large one,
    its query side the shared, frozen text tower, its per-pair MLP at zero) and
    learns to tell near misses apart jointly; the copy of the image tower is
    fine-tuned with it. Seeded on its own, so ``--stages cross`` redoes exactly
    this stage of a full run.
    """
    torch.manual_seed(config.seed + 2)
    tokeniser = shapes.Tokeniser(vocab, shapes.TEXT_TOWER.max_tokens)
    model = shapes.build("cross", vocab)
    model.tower.load_state_dict(large.state_dict())
    params = list(model.parameters())
    optimiser, scheduler = _optimiser(params, config.cross_lr, config.cross_steps)
    size = shapes.IMAGE_TOWERS[shapes.CROSS_TOWER].image_size
    stream = batches(config.seed + 2, config.clusters, config.cluster_size)
    bar = tqdm(range(config.cross_steps), desc="cross", unit="step", dynamic_ncols=True)
    model.train()
    for _ in bar:
        batch = next(stream)
        pixels, tokens = shapes.to_pixels(batch.images, size), tokeniser(batch.captions)
        with torch.no_grad():  # the text tower is shared and frozen
            embeddings = F.normalize(text(tokens), dim=-1)
        features = model.image_features(pixels)
        loss = cluster_matching_loss(model, features, embeddings, torch.from_numpy(batch.clusters))
        _step(loss, optimiser, scheduler, params)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


def cluster_matching_loss(
    model: nn.Module, features: torch.Tensor, embeddings: torch.Tensor, clusters: torch.Tensor
) -> torch.Tensor:
    """Listwise matching inside each cluster of near misses, both ways.

    Every caption is scored against every image of its cluster (the true one
    and the variants that differ in one attribute), and every image against
    every caption of its cluster: exactly the distinctions a re-ranker exists for.

    Args:
        features: ``(n, ...)`` image features; embeddings: ``(n, d)`` unit text
            embeddings, caption i describing image i; clusters: ``(n,)`` cluster ids.
    """
    texts, images = (clusters[:, None] == clusters[None, :]).nonzero(as_tuple=True)
    logits = torch.full((len(clusters), len(clusters)), -float("inf"))
    logits = logits.index_put((texts, images), model(features[images], embeddings[texts]))
    target = torch.arange(len(clusters))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


# ---------------------------------------------------------------- evaluation


def recall_at_k(scores: torch.Tensor, positives: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Percent of queries whose true image is in the top k.

    Args:
        scores: ``(queries, images)``, higher is better.
        positives: ``(queries,)`` index of each query's image.
    """
    true = scores.gather(1, positives[:, None])
    rank = (scores > true).sum(dim=1)  # ties count in the query's favour
    rank[~torch.isfinite(true[:, 0])] = scores.shape[1]  # dropped by an earlier level of a cascade
    return {k: float((rank < k).float().mean() * 100) for k in ks}


def cascade_scores(first: torch.Tensor, second: torch.Tensor, k_1: int) -> torch.Tensor:
    """A 2-level cascade as one score matrix: ``second`` re-ranks ``first``'s top ``k_1``, the rest below."""
    top = first.topk(k_1, dim=1).indices
    out = torch.full_like(second, -float("inf"))
    return out.scatter_(1, top, second.gather(1, top))


def rerank_scores(
    first: torch.Tensor,
    cross: shapes.ShapesCrossEncoder,
    embeddings: np.ndarray,
    features: np.ndarray,
    k: int,
    queries_per_batch: int = 400,
) -> torch.Tensor:
    """``cross`` re-scores ``first``'s top ``k`` per query (in that order, above all the rest).

    ``embeddings``: the queries' unit embeddings by the family's shared text tower, one row per row of
    ``first``. The pairs of ``queries_per_batch`` queries at a time go through the cross-encoder together.
    """
    top = first.topk(k, dim=1).indices
    out = torch.full_like(first, -float("inf"))
    starts = range(0, len(top), queries_per_batch)
    for start in tqdm(starts, desc="cross re-rank", unit="batch", dynamic_ncols=True, leave=False):
        rows = top[start : start + queries_per_batch]
        pairs = cross.score_pairs(
            features[rows.reshape(-1).numpy()], np.repeat(embeddings[start : start + len(rows)], k, axis=0)
        )
        out[start : start + len(rows)].scatter_(1, rows, torch.from_numpy(pairs).reshape(rows.shape))
    return out


def evaluate(weights_dir: Path, n_images: int, k_1: int | None = None, rerank_k: int = 10) -> dict:
    """Text->image Recall@{1,5,10} of every model, the [small, large] cascade and [large, cross] on the test gallery.

    Every caption of the first ``n_images`` test images is a query. ``k_1``
    defaults to 2% of the gallery.
    """
    items = world.gallery(n_images)
    images = np.stack([item.image() for item in items])
    queries = [text for item in items for text in item.captions]
    positives = torch.tensor([item.index for item in items for _ in item.captions])
    k_1 = k_1 or max(1, n_images // 50)
    scores, macs, texts = {}, {}, {}  # texts: the queries' embeddings by each text tower (one, shared)
    for name in shapes.IMAGE_TOWERS:
        encoder = shapes.load(name, weights_dir)
        image_features = _encode(encoder, images)
        if encoder.text_tower_id not in texts:
            texts[encoder.text_tower_id] = encoder.encode_texts(queries)
        scores[name] = torch.from_numpy(texts[encoder.text_tower_id] @ image_features.T)
        macs[name] = {"id": encoder.id, "image_macs": encoder.image_macs, "text_macs": encoder.text_macs}
    cross = shapes.load("cross", weights_dir)
    macs["cross"] = {"id": cross.id, "image_macs": cross.image_macs, "pair_macs": cross.pair_macs}
    features = _encode(cross, images)
    runs = {
        **scores,
        f"small>large@{k_1}": cascade_scores(scores["small"], scores["large"], k_1),
        f"large>cross@{rerank_k}": rerank_scores(
            scores["large"], cross, texts[cross.text_tower_id], features, rerank_k
        ),
    }
    ks = (1, 5, 10)
    recalls = {name: recall_at_k(run, positives, ks) for name, run in runs.items()}
    return {
        "n_images": n_images,
        "n_queries": len(queries),
        "k_1": k_1,
        "rerank_k": rerank_k,
        "recall": {name: {f"R@{k}": round(v, 2) for k, v in r.items()} for name, r in recalls.items()},
        "models": macs,
    }


def _encode(encoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    chunks = [
        encoder.encode_pixels(shapes.to_pixels(images[start : start + batch_size], encoder.image_size))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(chunks)


# ---------------------------------------------------------------- entry point


def train_family(config: TrainConfig, out_dir: Path) -> dict[str, float]:
    """Train all four models and write their safetensors into ``out_dir``. Returns wall seconds per stage."""
    torch.manual_seed(config.seed)
    vocab = world.vocabulary()
    extra = _metadata(config)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    joint = train_joint(config, vocab)
    seconds["joint"] = time.perf_counter() - start
    shapes.save(joint.text, "text", vocab, out_dir, extra)
    shapes.save(joint.large, "large", vocab, out_dir, extra)
    start = time.perf_counter()
    for name, tower in train_students(config, joint).items():
        shapes.save(tower, name, vocab, out_dir, extra)
    seconds["students"] = time.perf_counter() - start
    start = time.perf_counter()
    shapes.save(train_cross(config, joint.text, joint.large, vocab), "cross", vocab, out_dir, extra)
    seconds["cross"] = time.perf_counter() - start
    return {name: round(value, 1) for name, value in seconds.items()}


def retrain_cross(config: TrainConfig, out_dir: Path) -> dict[str, float]:
    """Stage 3 alone, from the text and large towers already in ``out_dir``. Returns wall seconds."""
    vocab = world.vocabulary()
    text, large = shapes.read_module("text", out_dir), shapes.read_module("large", out_dir)
    start = time.perf_counter()
    model = train_cross(config, text, large, vocab)
    shapes.save(model, "cross", vocab, out_dir, _metadata(config))
    return {"cross": round(time.perf_counter() - start, 1)}


def _metadata(config: TrainConfig) -> dict:
    """What every weights file records of the run that made it."""
    return {"train_config": dataclasses.asdict(config), "world_version": world.WORLD_VERSION}


def _previous_report(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / "shapes_family.json").read_text())
    except (OSError, ValueError):
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help="folder for shapes_*.safetensors")
    parser.add_argument("--steps", type=int, help="steps for every stage (default: the recipe's)")
    parser.add_argument("--quick", action="store_true", help="a few tiny steps: checks the pipeline, not the models")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument(
        "--stages",
        choices=("all", "cross"),
        default="all",
        help="'cross': retrain only the cross-encoder, from the text and large towers in --out",
    )
    parser.add_argument("--threads", type=int, default=TrainConfig.threads, help="torch CPU threads")
    parser.add_argument(
        "--eval-images",
        type=int,
        default=world.TEST_GALLERY_IMAGES,
        help="test images to evaluate on afterwards (0: skip)",
    )
    args = parser.parse_args(argv)
    config = dataclasses.replace(QUICK if args.quick else TrainConfig(), seed=args.seed, threads=args.threads)
    if args.steps is not None:
        config = dataclasses.replace(config, joint_steps=args.steps, student_steps=args.steps, cross_steps=args.steps)
    torch.set_num_threads(config.threads)
    try:
        cpu_start = time.process_time()
        report = {"train_config": dataclasses.asdict(config), "stages": args.stages}
        if args.stages == "cross":  # keep the other stages' times from the run that made their weights
            report["train_seconds"] = {
                **_previous_report(args.out).get("train_seconds", {}),
                **retrain_cross(config, args.out),
            }
        else:
            report["train_seconds"] = train_family(config, args.out)
        report["train_cpu_seconds"] = round(time.process_time() - cpu_start, 1)  # summed over threads
        if args.eval_images > 0:
            start = time.perf_counter()
            report["test"] = evaluate(args.out, args.eval_images)
            report["eval_seconds"] = round(time.perf_counter() - start, 1)
    except CascadeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    report["weights_bytes"] = sum(shapes.weights_path(m, args.out).stat().st_size for m in (*shapes.MODELS, "text"))
    (args.out / "shapes_family.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
