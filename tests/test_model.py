"""Tests for hicmix.model: shapes, D1 batch independence, losses, heads, checkpoints, autocast."""

from __future__ import annotations

import math

import pytest
import torch

from hicmix.errors import ConfigError, InputError
from hicmix.model import (
    MODEL_SIZES,
    MODES,
    TASKS,
    MixHiC,
    ModelGeometry,
    count_parameters,
    info_nce,
    model_config,
    model_flops_per_sample,
    orthogonality_loss,
    parameter_groups,
    pool_factors,
    synthetic_batch,
)
from hicmix.model.interaction import Temperature

SMALL = ModelGeometry(window_bins=16, positions_per_bin=10, n_channels=3)
PAPER = ModelGeometry(window_bins=50, positions_per_bin=50, n_channels=5)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models gain nothing from intra-op threads, which thrash on a busy 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(geometry: ModelGeometry = SMALL, seed: int = 0, **kwargs) -> MixHiC:
    torch.manual_seed(seed)
    return MixHiC(geometry, model_config("tiny"), **kwargs)


def all_tasks_model(geometry: ModelGeometry = SMALL, seed: int = 0) -> MixHiC:
    return tiny_model(geometry, seed, tasks=TASKS)


def task_modes():
    return [(t, m) for t in TASKS for m in MODES if m != "hic_only" or t == "loops"]


# ----------------------------------------------------------------------------- config and geometry
def test_pool_factors():
    assert pool_factors(50) == (2, 5, 5)
    assert pool_factors(25) == (5, 5)
    assert pool_factors(10) == (2, 5)
    assert pool_factors(1) == ()
    with pytest.raises(ConfigError, match="prime factor 11"):
        pool_factors(22)


def test_geometry_validation_and_manifest():
    with pytest.raises(ConfigError, match="even"):
        ModelGeometry(51, 50, 5)
    with pytest.raises(ConfigError, match="≥ 16"):
        ModelGeometry(10, 10, 5)
    geometry = ModelGeometry.from_manifest(
        {"window_bins": 50, "positions_per_bin": 50, "channels": ["a", "b", "c", "d", "e"]}
    )
    assert geometry == PAPER
    assert geometry.track_token_lengths == (100, 50, 25, 12)
    assert geometry.hic_grid_sizes == (25, 12, 6, 3)
    with pytest.raises(ConfigError, match="positions_per_bin"):
        ModelGeometry.from_manifest({"window_bins": 50, "channels": ["a"]})


def test_model_config_sizes_and_overrides():
    assert set(MODEL_SIZES) == {"tiny", "base", "large"}
    assert model_config("base").embed_dim == 128 and model_config("base").depth == 2
    assert model_config("large").embed_dim == 256
    assert model_config("base", embed_dim=64).embed_dim == 64
    config = model_config("tiny")
    assert type(config).from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown model config key"):
        model_config("base", embeddim=64)
    with pytest.raises(ConfigError, match="unknown model size"):
        model_config("huge")


def test_tiny_parameter_count_below_one_million():
    with torch.device("meta"):
        model = MixHiC(PAPER, model_config("tiny"))
    assert count_parameters(model) < 1_000_000
    with torch.device("meta"):
        base = MixHiC(PAPER, model_config("base"))
    assert 40e6 < count_parameters(base) < 80e6  # MIX-HIC E=128 without dead modules: ≈ 63 M


# ----------------------------------------------------------------------------- shapes
def test_block_shapes_at_paper_geometry():
    model = all_tasks_model(PAPER).eval()
    batch = synthetic_batch(PAPER, 2)
    e = model.config.embed_dim
    with torch.no_grad():
        tokens, skips = model.encode_tracks(batch["tracks"], batch["distance"])
        assert tokens.shape == (2, 12, 8 * e)
        assert [s.shape for s in skips] == [(2, 100, e), (2, 50, 2 * e), (2, 25, 4 * e)]
        hic_tokens = model.encode_hic(batch["hic"], batch["distance"])
        assert hic_tokens.shape == (2, 9, 8 * e)
        feats = model.interaction(tokens, hic_tokens)
        for modality, n in (("track", 12), ("hic", 9)):
            assert feats[f"{modality}_shared"].shape == (2, n, 4 * e)
            assert feats[f"{modality}_specific"].shape == (2, n, 4 * e)
            assert feats[f"{modality}_concat"].shape == (2, n, 8 * e)
            norms = feats[f"{modality}_shared"].norm(dim=-1)
            torch.testing.assert_close(norms, torch.ones_like(norms))
        assert model.impute_hic_tokens(tokens).shape == (2, 9, 8 * e)
        assert model.impute_track_tokens(hic_tokens).shape == (2, 12, 8 * e)
        assert model.forward_task(batch, "loops")["logits"].shape == (2,)
        assert model.forward_task(batch, "hicmap", "tracks_only")["map"].shape == (2, 1, 50, 50)
        expression = model.forward_task(batch, "expression")
        assert expression["profile"].shape == (2, 50) and expression["scalar"].shape == (2,)


@pytest.mark.parametrize("size", ["base", "large"])
def test_base_and_large_forward_one_sample(size):
    torch.manual_seed(0)
    tasks = TASKS if size == "base" else ()  # large task heads add ~200 M parameters; skip for RAM
    model = MixHiC(SMALL, model_config(size), tasks=tasks).eval()
    batch = synthetic_batch(SMALL, 1)
    with torch.no_grad():
        losses = model.pretrain_losses(batch)
        assert all(torch.isfinite(v) for v in losses.values())
        tokens, _ = model.encode_tracks(batch["tracks"], batch["distance"])
        assert tokens.shape == (1, 4, 8 * model.config.embed_dim)
        for task, mode in task_modes() if tasks else []:
            out = model.forward_task(batch, task, mode)
            assert all(torch.isfinite(v).all() for v in out.values())


def test_bad_inputs_raise_clear_errors():
    model = tiny_model(tasks=("hicmap",))
    batch = synthetic_batch(SMALL, 2)
    with pytest.raises(InputError, match="tracks"):
        model.encode_tracks(batch["tracks"][..., :-10], batch["distance"])
    with pytest.raises(InputError, match="hic"):
        model.encode_hic(batch["hic"][..., :-2, :-2], batch["distance"])
    with pytest.raises(ConfigError, match="no 'loops' head"):
        model.forward_task(batch, "loops")
    with pytest.raises(ConfigError, match="unknown mode"):
        model.forward_task(batch, "hicmap", "both")
    with pytest.raises(ConfigError, match="hic_only"):
        model.forward_task(batch, "hicmap", "hic_only")
    with pytest.raises(ConfigError, match="unknown task"):
        tiny_model(tasks=("tads",))


# ----------------------------------------------------------------------------- D1 and positions
def _sample_outputs(model: MixHiC, batch: dict, index: int) -> list[torch.Tensor]:
    with torch.no_grad():
        tokens, skips = model.encode_tracks(batch["tracks"], batch["distance"])
        outs = [tokens[index], *(s[index] for s in skips)]
        outs.append(model.encode_hic(batch["hic"], batch["distance"])[index])
        for task, mode in task_modes():
            outs += [v[index] for v in model.forward_task(batch, task, mode).values()]
    return outs


def test_batch_independence_d1():
    model = all_tasks_model().eval()
    batch = synthetic_batch(SMALL, 4, seed=1, distance=torch.tensor([0, 7, 0, 30]))
    other = synthetic_batch(SMALL, 4, seed=2, distance=torch.tensor([3, 0, 12, 0]))
    # sample 0 of `batch` moves to position 2, among other samples, in a batch of another size
    mixed = {k: torch.cat([other[k][:2], batch[k][:1], other[k][2:]]) for k in batch}
    reference = _sample_outputs(model, batch, 0)
    for got, want in zip(_sample_outputs(model, mixed, 2), reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    permuted = {k: v[torch.tensor([3, 1, 0, 2])] for k, v in batch.items()}
    for got, want in zip(_sample_outputs(model, permuted, 2), reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_distance_embedding_changes_outputs():
    model = all_tasks_model().eval()
    batch = synthetic_batch(SMALL, 2)
    far = dict(batch, distance=torch.tensor([40, 40]))
    with torch.no_grad():
        near_tracks, _ = model.encode_tracks(batch["tracks"], batch["distance"])
        far_tracks, _ = model.encode_tracks(far["tracks"], far["distance"])
        near_hic = model.encode_hic(batch["hic"], batch["distance"])
        far_hic = model.encode_hic(far["hic"], far["distance"])
        near_logits = model.forward_task(batch, "loops")["logits"]
        far_logits = model.forward_task(far, "loops")["logits"]
    assert (near_tracks - far_tracks).abs().max() > 1e-3
    assert (near_hic - far_hic).abs().max() > 1e-3
    assert not torch.allclose(near_logits, far_logits)
    buckets = model.track_encoder.distance.bucket(torch.tensor([0, 1, 2, 3, 4, 8, 400, -8, 10**9]))
    assert buckets.tolist() == [0, 1, 3, 4, 5, 7, 18, 7, 31]


# ----------------------------------------------------------------------------- losses
def test_pretrain_losses_finite_with_gradients_to_both_encoders():
    model = tiny_model().train()
    batch = synthetic_batch(SMALL, 4)
    losses = model.pretrain_losses(batch)
    assert set(losses) == {"contrastive", "orthogonality", "mapping", "temperature"}
    assert not losses["temperature"].requires_grad
    for name in ("contrastive", "orthogonality", "mapping"):
        assert losses[name].dim() == 0 and torch.isfinite(losses[name])
        model.zero_grad()
        losses = model.pretrain_losses(batch)
        losses[name].backward()
        for encoder in (model.track_encoder, model.hic_encoder):
            grad = sum(p.grad.abs().sum() for p in encoder.parameters() if p.grad is not None)
            assert grad > 0, f"{name} has no gradient in {type(encoder).__name__}"
    assert model.interaction.temperature.value.grad is None  # only the contrastive loss uses τ
    model.zero_grad()
    model.pretrain_losses(batch)["contrastive"].backward()
    assert model.interaction.temperature.value.grad != 0


def test_pretrain_losses_gather_uses_global_negatives():
    model = tiny_model().eval()
    batch = synthetic_batch(SMALL, 3)
    extra = torch.nn.functional.normalize(torch.randn(5, 64), dim=-1)  # "other ranks" features
    with torch.no_grad():
        plain = model.pretrain_losses(batch)
        same = model.pretrain_losses(batch, gather=lambda x: x)
        gathered = model.pretrain_losses(batch, gather=lambda x: torch.cat([x, extra]))
        tokens, _ = model.encode_tracks(batch["tracks"], batch["distance"])
        feats = model.interaction(tokens, model.encode_hic(batch["hic"], batch["distance"]))
        a = torch.cat([feats["track_shared"].mean(1), extra])
        b = torch.cat([feats["hic_shared"].mean(1), extra])
        expected = info_nce(a, b, model.interaction.temperature())
    assert same["contrastive"].item() == pytest.approx(plain["contrastive"].item())
    assert gathered["contrastive"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert gathered["mapping"].item() == pytest.approx(plain["mapping"].item())


def test_temperature_init_and_clamp():
    model = tiny_model()
    temperature = model.interaction.temperature
    assert temperature().item() == pytest.approx(0.07)
    with torch.no_grad():
        temperature.value.fill_(3.0)
    assert temperature().item() == pytest.approx(0.5)
    assert model.pretrain_losses(synthetic_batch(SMALL, 2))["temperature"].item() == 0.5
    model.clamp_temperature_()
    assert temperature.value.item() == pytest.approx(0.5)
    with torch.no_grad():
        temperature.value.fill_(-1.0)
    assert temperature().item() == pytest.approx(0.001)
    assert Temperature(0.07, 0.001, 0.5)().item() == pytest.approx(0.07)


def test_info_nce_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    b = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    tau = 0.5
    logits = [[sum(x * y for x, y in zip(ra, rb, strict=True)) / tau for rb in b] for ra in a]

    def ce(rows):
        return sum(-rows[i][i] + math.log(sum(math.exp(v) for v in rows[i])) for i in range(3)) / 3

    columns = [list(col) for col in zip(*logits, strict=True)]
    expected = 0.5 * (ce(logits) + ce(columns))
    assert info_nce(a, b, torch.tensor(tau)).item() == pytest.approx(expected, rel=1e-6)


def test_orthogonality_loss_values():
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert orthogonality_loss(e1, e2, e2, e1).item() == 0.0
    assert orthogonality_loss(e1, e1, e2, e2 * 0.5).item() == pytest.approx(1.25)
    shared, specific = torch.stack([e1[0], e1[0]]), torch.stack([e1[0], e2[0]])
    zero = torch.zeros(2, 2)
    assert orthogonality_loss(shared, specific, zero, zero).item() == pytest.approx(0.5)


def test_mapping_loss_variants_and_zero_for_perfect_map():
    model = tiny_model()
    features = torch.nn.functional.normalize(torch.randn(3, 4, 128), dim=-1)
    with torch.no_grad():
        for layer in (model.mapping.e2m, model.mapping.m2e):
            layer.weight.copy_(torch.eye(128))
            layer.bias.zero_()
    # identical token counts and an identity map: the mapped features equal the targets
    assert model.mapping.loss(features, features).item() == pytest.approx(1e-4, abs=1e-4)
    other = torch.nn.functional.normalize(torch.randn(3, 1, 128), dim=-1)
    plain = model.mapping.loss(features, other).item()
    model.mapping.squared = True
    squared = model.mapping.loss(features, other).item()
    assert 0 < plain < 2 and 0 < squared < 4 and squared != pytest.approx(plain)


# ----------------------------------------------------------------------------- heads
def test_map_head_symmetric_for_diagonal_windows_and_activation():
    model = tiny_model(tasks=("hicmap",)).eval()
    batch = synthetic_batch(SMALL, 2, distance=torch.tensor([0, 9]))
    with torch.no_grad():
        out = model.forward_task(batch, "hicmap")["map"]
    torch.testing.assert_close(out[0, 0], out[0, 0].T)
    assert not torch.allclose(out[1, 0], out[1, 0].T)
    assert out.min() > 0 and out.max() < 1  # sigmoid for clip_scale
    oe = tiny_model(tasks=("hicmap",), hic_transform="log1p_oe").eval()
    with torch.no_grad():
        oe.heads["hicmap"].mlp[-1].bias.fill_(-3.0)
        assert oe.forward_task(batch, "hicmap")["map"].max() < 0  # identity for log1p_oe
    with pytest.raises(ConfigError, match="Hi-C transform"):
        tiny_model(hic_transform="raw")


def test_loop_head_outputs_logits():
    model = tiny_model(tasks=("loops",)).eval()
    with torch.no_grad():
        model.heads["loops"].mlp[-1].bias.fill_(4.0)
        logits = model.forward_task(synthetic_batch(SMALL, 3), "loops")["logits"]
    assert logits.shape == (3,) and (logits > 1).all()


def test_expression_scalar_and_profile_no_activation():
    model = tiny_model(tasks=("expression",)).eval()
    with torch.no_grad():
        model.heads["expression"].profile_mlp[-1].bias.fill_(-5.0)
        model.heads["expression"].scalar_mlp[-1].bias.fill_(7.0)
        out = model.forward_task(synthetic_batch(SMALL, 2), "expression")
    assert out["profile"].shape == (2, 16) and (out["profile"] < -4).all()
    assert out["scalar"].shape == (2,) and (out["scalar"] > 6).all()


# ----------------------------------------------------------------------------- training behaviour
def test_pretraining_loss_decreases_on_paired_batch():
    model = tiny_model().train()
    batch = synthetic_batch(SMALL, 8, seed=3)
    # 3e-4: without warm-up, Adam at 1e-3 can collapse the features (contrastive stuck at ln B)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)
    totals, contrastive = [], []
    for _ in range(30):
        losses = model.pretrain_losses(batch)
        total = losses["contrastive"] + losses["orthogonality"] + losses["mapping"]
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        model.clamp_temperature_()
        totals.append(total.item())
        contrastive.append(losses["contrastive"].item())
    assert all(math.isfinite(t) for t in totals)
    assert sum(totals[-5:]) / 5 < 0.5 * sum(totals[:5]) / 5, totals
    assert contrastive[-1] < 0.5 * math.log(8), contrastive  # it learned to pair, not to collapse


def test_load_pretrained_loads_encoders_and_leaves_heads_fresh():
    pretrained = tiny_model(seed=0)
    with torch.no_grad():
        pretrained.interaction.temperature.value.fill_(0.2)
    finetune = tiny_model(seed=1, tasks=TASKS)
    fresh = {k: v.clone() for k, v in finetune.state_dict().items()}
    wrapped = {f"module.{k}": v for k, v in pretrained.state_dict().items()}
    report = finetune.load_pretrained(wrapped)
    source = pretrained.pretrained_state_dict()
    assert report.loaded == sorted(source) and not report.missing and not report.mismatched
    assert not report.unexpected
    state = finetune.state_dict()
    for key, value in source.items():
        torch.testing.assert_close(state[key], value)
    assert finetune.interaction.temperature().item() == pytest.approx(0.2)
    for key, value in state.items():
        if key.split(".")[0] in ("fusion", "decoder", "heads"):
            torch.testing.assert_close(value, fresh[key])
    assert any(k.startswith("heads.") for k in state)
    other = MixHiC(SMALL, model_config("tiny", embed_dim=32))
    assert other.load_pretrained(source).mismatched  # different width: reported, not loaded


def test_autocast_bf16_runs_with_float32_losses():
    model = all_tasks_model().train()
    batch = synthetic_batch(SMALL, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.pretrain_losses(batch)
        outputs = [model.forward_task(batch, t, m) for t, m in task_modes()]
    for name in ("contrastive", "orthogonality", "mapping"):
        assert losses[name].dtype == torch.float32 and torch.isfinite(losses[name])
    sum(losses[n] for n in ("contrastive", "orthogonality", "mapping")).backward()
    assert all(torch.isfinite(v).all() for out in outputs for v in out.values())


def test_parameter_groups_and_flops():
    model = tiny_model(tasks=("loops",))
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert id(model.interaction.temperature.value) in {id(p) for p in no_decay["params"]}
    assert id(model.hic_encoder.row_pos.weight) in {id(p) for p in no_decay["params"]}
    tiny = model_flops_per_sample(PAPER, model_config("tiny"))
    assert tiny > 0
    assert model_flops_per_sample(PAPER, model_config("base")) > 10 * tiny
    assert model_flops_per_sample(PAPER, model_config("tiny"), task="hicmap") > tiny


def test_synthetic_batch_follows_tile_contract():
    batch = synthetic_batch(PAPER, 3, distance=torch.tensor([0, 4, 8]))
    assert batch["hic"].shape == batch["hic_mask"].shape == (3, 1, 50, 50)
    assert batch["tracks"].shape == (3, 5, 5000)
    assert batch["distance"].tolist() == [0, 4, 8]
    assert (batch["bins"][:, 1] - batch["bins"][:, 0]).tolist() == [0, 4, 8]
    torch.testing.assert_close(batch["hic"][0, 0], batch["hic"][0, 0].T)


def test_contrastive_generalises_to_held_out_synthetic_windows():
    """Trained on fresh paired windows each step, InfoNCE on unseen windows beats chance (ln B).

    60 steps: before ~50 the eval-mode BatchNorm running statistics still lag the drifting stem
    features, and the held-out loss in eval mode trails the train-mode one.
    """
    model = tiny_model(seed=1).train()
    optimiser = torch.optim.AdamW(parameter_groups(model, 1e-6), lr=3e-4)
    train = []
    for step in range(60):
        batch = synthetic_batch(SMALL, 16, seed=100 + step)
        loss = model.pretrain_losses(batch)["contrastive"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        model.clamp_temperature_()
        train.append(loss.item())
    model.eval()
    with torch.no_grad():
        held_out = [
            model.pretrain_losses(synthetic_batch(SMALL, 16, seed=s))["contrastive"]
            for s in (1, 2, 3)
        ]
    val = float(sum(held_out) / len(held_out))
    assert sum(train[-10:]) / 10 < sum(train[:10]) / 10 - 0.5, train
    assert val < math.log(16) - 1.0, (val, train)


def test_expression_exact_tss_inputs_and_fallback():
    model = tiny_model(tasks=("expression",)).eval()
    batch = synthetic_batch(SMALL, 2)
    centre = SMALL.window_bins // 2 * SMALL.positions_per_bin
    with torch.no_grad():
        base = model.forward_task(batch, "expression")["scalar"]
        unknown = {**batch, "tss_position": torch.tensor([centre, centre + 4])}
        unknown["strand"] = torch.zeros(2, dtype=torch.int64)
        same = model.forward_task(unknown, "expression")["scalar"]
        exact = model.forward_task({**unknown, "strand": torch.tensor([1, -1])}, "expression")
    torch.testing.assert_close(same, base)  # strand 0 / absent keys: the TSS-bin branch only
    assert exact["scalar"].shape == (2,) and not torch.allclose(exact["scalar"], base)


def test_expression_checkpoint_without_exact_tss_term_loads_unchanged():
    model = tiny_model(tasks=("expression",)).eval()
    old = {k: v for k, v in model.state_dict().items() if ".tss_out." not in k}
    batch = synthetic_batch(SMALL, 2)
    with torch.no_grad():
        base = model.forward_task(batch, "expression")["scalar"]
        fresh = tiny_model(tasks=("expression",), seed=1).eval()
        fresh.load_state_dict(old)  # strict: the missing term is filled with zeros
        centre = SMALL.window_bins // 2 * SMALL.positions_per_bin
        exact = {**batch, "tss_position": torch.tensor([centre, centre]), "strand": torch.ones(2)}
        out = fresh.forward_task(exact, "expression")["scalar"]
    torch.testing.assert_close(out, base)
