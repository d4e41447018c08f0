"""SimpleChrome-style low-data expression baseline (baselines_and_metrics.md §4.3), re-implemented
from the spec: a convolutional VAE on the (bins, marks) tensor, then an MLP on the latent.

- Scaling: each mark divided by its maximum over the *training* genes and mapped to [-1, 1]
  (2 x / max - 1, clipped).
- VAE (latent 10): encoder Conv1d(32, k5, same), LeakyReLU(0.5), Conv1d(64, k5, same), LeakyReLU,
  flatten, Linear -> 2 x latent (mu, log sigma^2); decoder Linear -> bins x 64, LeakyReLU,
  reshape, ConvTranspose1d(64, k5), LeakyReLU, ConvTranspose1d(32, k5), LeakyReLU,
  ConvTranspose1d(marks, k1), tanh ('same' lengths, so any bins). N(0, 0.02) weights. Loss MSE +
  5e-5 KL; Adam 1e-4, batch 64, 5 epochs.
- Head: Linear 256, ReLU, Linear 128, ReLU, Linear 1: a logit with BCE (binary) or a value with MSE
  (regression); Adam 1e-3, batch 32, 5 epochs, best epoch by validation AUROC / Pearson.
- ``latent="mu"`` (ours): the head is trained and applied on mu. ``latent="sampled"`` (upstream):
  trained on a fresh z ~ N(mu, sigma^2) per batch and applied to one z drawn with the seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from hicmix.baselines.deepchrome import check_genes, check_task
from hicmix.baselines.torch_fit import (
    FitResult,
    auroc_or_nan,
    fit_torch,
    pearson_or_nan,
    predict_torch,
)
from hicmix.errors import ConfigError

LATENT_MODES = ("mu", "sampled")


class MarkScaler:
    """Per-mark division by the training maximum, mapped to [-1, 1] (2 x / max - 1, clipped)."""

    def __init__(self) -> None:
        self.maximum: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> MarkScaler:
        maximum = check_genes(x).max(axis=(0, 1))
        self.maximum = np.where(maximum > 0, maximum, 1.0).astype(np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.maximum is None:
            raise RuntimeError("MarkScaler.fit must be called first")
        x = check_genes(x)
        if x.shape[2] != self.maximum.size:
            raise ValueError(f"{x.shape[2]} marks, the scaler was fitted on {self.maximum.size}")
        return np.clip(2.0 * x / self.maximum - 1.0, -1.0, 1.0).astype(np.float32)


class ConvVAE(nn.Module):
    """SimpleChrome's convolutional VAE on (batch, bins, marks); forward returns
    (reconstruction, mu, logvar), sampling z only in training mode (eval uses mu)."""

    def __init__(self, bins: int, marks: int, latent: int = 10, slope: float = 0.5) -> None:
        super().__init__()
        self.bins = bins
        self.encoder = nn.Sequential(
            nn.Conv1d(marks, 32, 5, padding="same"),
            nn.LeakyReLU(slope),
            nn.Conv1d(32, 64, 5, padding="same"),
            nn.LeakyReLU(slope),
            nn.Flatten(),
            nn.Linear(64 * bins, 2 * latent),
        )
        self.expand = nn.Sequential(nn.Linear(latent, 64 * bins), nn.LeakyReLU(slope))
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(64, 64, 5, padding=2),
            nn.LeakyReLU(slope),
            nn.ConvTranspose1d(64, 32, 5, padding=2),
            nn.LeakyReLU(slope),
            nn.ConvTranspose1d(32, marks, 1),
            nn.Tanh(),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.ConvTranspose1d | nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x.transpose(1, 2)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        hidden = self.expand(z).view(z.shape[0], 64, self.bins)
        return self.decoder(hidden).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar


def vae_loss(kl_weight: float) -> Callable[..., torch.Tensor]:
    """Loss = MSE reconstruction + ``kl_weight`` x KL(q(z|x) || N(0, I)).

    The KL is summed over the latent dimensions and averaged over the batch.
    """

    def loss(out: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
        recon, mu, logvar = out
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=-1).mean()
        return nn.functional.mse_loss(recon, target) + kl_weight * kl

    return loss


class LatentHead(nn.Module):
    """MLP 256 -> 128 -> 1 on the latent; input (mu, logvar), z sampled in training when asked."""

    def __init__(self, latent: int, sample: bool) -> None:
        super().__init__()
        self.sample = sample
        self.mlp = nn.Sequential(
            nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 1)
        )

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        z = mu
        if self.sample and self.training:
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.mlp(z).squeeze(-1)


class SimpleChrome:
    """VAE + MLP on (genes, bins, marks); ``task`` "binary" or "regression"."""

    def __init__(
        self,
        task: str = "binary",
        latent: int = 10,
        vae_epochs: int = 5,
        vae_lr: float = 1e-4,
        vae_batch: int = 64,
        kl_weight: float = 5e-5,
        head_epochs: int = 5,
        head_lr: float = 1e-3,
        head_batch: int = 32,
        latent_mode: str = "mu",
        seed: int = 0,
        device: str | None = "auto",
        vae_from: SimpleChrome | None = None,
    ) -> None:
        self.task = check_task(task)
        if latent_mode not in LATENT_MODES:
            raise ConfigError(f"unknown latent_mode {latent_mode!r}; use 'mu' or 'sampled'")
        self.latent, self.kl_weight, self.latent_mode = latent, kl_weight, latent_mode
        self.vae_epochs, self.vae_lr, self.vae_batch = vae_epochs, vae_lr, vae_batch
        self.head_epochs, self.head_lr, self.head_batch = head_epochs, head_lr, head_batch
        self.seed, self.device = seed, device
        self.scaler = MarkScaler()
        self.vae: ConvVAE | None = None
        self.head: LatentHead | None = None
        self.vae_result: FitResult | None = None
        self.result: FitResult | None = None
        if vae_from is not None:
            if vae_from.vae is None:
                raise ConfigError("vae_from must be a fitted SimpleChrome")
            if vae_from.latent != latent:
                raise ConfigError(f"vae_from has latent {vae_from.latent}, not {latent}")
            self.scaler, self.vae, self.vae_result = (
                vae_from.scaler,
                vae_from.vae,
                vae_from.vae_result,
            )
        self.reuse_vae = vae_from is not None

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) of scaled genes, float32 (genes, latent) each."""
        if self.vae is None:
            raise RuntimeError("SimpleChrome.fit must be called before encode")
        scaled = self.scaler.transform(x)
        both = predict_torch(
            self.vae, [scaled], device=self.device, output_fn=lambda out: torch.cat(out[1:], -1)
        )
        return both[:, : self.latent], both[:, self.latent :]

    def _head_inputs(self, x: np.ndarray) -> list[np.ndarray]:
        mu, logvar = self.encode(x)
        if self.latent_mode == "sampled":
            noise = np.random.default_rng(self.seed).standard_normal(mu.shape)
            mu = (mu + noise * np.exp(0.5 * logvar)).astype(np.float32)
        return [mu, logvar]

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        x_unlabeled: np.ndarray | None = None,
    ) -> SimpleChrome:
        """Fit the scaler and VAE on the training genes (plus ``x_unlabeled``), unless they come
        from ``vae_from``, then the head on the training genes' latents; the head's best epoch is
        chosen on the validation genes."""
        x = check_genes(x)
        if not self.reuse_vae:
            extra = [] if x_unlabeled is None else [check_genes(x_unlabeled)]
            self._fit_vae(x, np.concatenate([x, *extra]))
        self._fit_head(x, y, x_val, y_val)
        return self

    def _fit_vae(self, x_train: np.ndarray, x_all: np.ndarray) -> None:
        self.scaler.fit(x_train)
        scaled = self.scaler.transform(x_all)
        bins, marks = x_all.shape[1], x_all.shape[2]
        self.vae, self.vae_result = fit_torch(
            lambda: ConvVAE(bins, marks, self.latent),
            [scaled, scaled],
            vae_loss(self.kl_weight),
            epochs=self.vae_epochs,
            batch_size=self.vae_batch,
            lr=self.vae_lr,
            seed=self.seed,
            device=self.device,
            desc="simplechrome vae",
        )

    def _fit_head(
        self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None, y_val: np.ndarray | None
    ) -> None:
        binary = self.task == "binary"
        mu, logvar = self.encode(x)
        has_val = x_val is not None and y_val is not None
        y_val_arr = np.asarray(y_val, dtype=np.float64).ravel() if has_val else None
        metric = auroc_or_nan if binary else pearson_or_nan
        self.head, self.result = fit_torch(
            lambda: LatentHead(self.latent, self.latent_mode == "sampled"),
            [mu, logvar, np.asarray(y, dtype=np.float32).ravel()],
            nn.BCEWithLogitsLoss() if binary else nn.MSELoss(),
            n_inputs=2,
            epochs=self.head_epochs,
            batch_size=self.head_batch,
            lr=self.head_lr,
            seed=self.seed + 1,
            device=self.device,
            val_inputs=self._head_inputs(x_val) if has_val else None,
            val_score=(lambda p: metric(y_val_arr, p)) if has_val else None,
            output_fn=torch.sigmoid if binary else None,
            desc="simplechrome head",
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) (binary) or the predicted value (regression), float32 (genes,)."""
        if self.head is None:
            raise RuntimeError("SimpleChrome.fit must be called before predict")
        return predict_torch(
            self.head,
            self._head_inputs(x),
            device=self.device,
            output_fn=torch.sigmoid if self.task == "binary" else None,
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.task != "binary":
            raise ConfigError("predict_proba needs task 'binary'; use predict for regression")
        return self.predict(x)
