"""Inference: a warm :class:`Predictor` that turns RGB frames into probability maps and masks.

The predictor resizes each frame to the model's training size, standardises it with the checkpoint's
mean / std, runs the model in batches (optionally with flip test-time augmentation), and resizes the
probabilities back to the frame's own size before thresholding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from polypseg.checkpoint import stored_threshold
from polypseg.device import autocast_dtype, resolve_precision
from polypseg.errors import InputError
from polypseg.preprocess import normalise, resize_image, resize_probability
from polypseg.zoo import load_model, resolve_model


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Binary segmentation of RGB frames with a trained model.

    Args:
        model: a model returning logits ``(N, 1, S, S)`` for inputs ``(N, 3, S, S)``.
        size: side length ``S`` the model was trained at (pixels).
        mean, std: per-channel standardisation of images scaled to [0, 1].
        threshold: probability above which a pixel is foreground (with and without TTA; a predictor built
            by :meth:`from_checkpoint` keeps the model's own threshold per mode, see :attr:`threshold`).
        device: where the model runs.
        tta: average the probabilities of the frame and its horizontal and vertical flips.
        batch_size: frames per forward pass.
        precision: ``32``, ``bf16`` or ``16`` autocast, or ``auto`` (bf16 where the device has native
            bf16, see :mod:`polypseg.device`); Lightning's spellings are accepted. ONNX sessions run fp32.
        onnx_session: an ONNX Runtime session to run instead of ``model`` (see :meth:`from_checkpoint`).
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        threshold: float = 0.5,
        device: str | torch.device | None = None,
        tta: bool = False,
        batch_size: int = 8,
        precision: str = "32",
        onnx_session: object | None = None,
    ) -> None:
        self.session = onnx_session
        self.device = torch.device(device) if device is not None else default_device()
        self.model = None
        if model is not None:
            self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        elif onnx_session is None:
            raise ValueError("give a model or an ONNX Runtime session")
        self.meta: dict = {}
        self.size, self.mean, self.std = int(size), tuple(mean), tuple(std)
        self.tta, self.batch_size = tta, int(batch_size)
        #: the threshold and its origin per TTA mode (False: plain probabilities, True: flip TTA)
        self.thresholds: dict[bool, float] = {False: float(threshold), True: float(threshold)}
        self.threshold_sources: dict[bool, str] = {False: "argument", True: "argument"}
        self.precision = resolve_precision(precision, self.device) if onnx_session is None else "32"
        from polypseg.inference.backends import BackendChoice

        #: what runs the network and why (set by :meth:`from_checkpoint`)
        self.backend = BackendChoice("torch" if onnx_session is None else "onnx", "built directly")

    @property
    def threshold(self) -> float:
        """The probability above which a pixel is foreground, for the current :attr:`tta` mode (a model
        tuned with ``polypseg tune --tta`` holds a threshold per mode); setting it sets both modes."""
        return self.thresholds[bool(self.tta)]

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.thresholds = {False: float(value), True: float(value)}
        self.threshold_sources = {False: "argument", True: "argument"}

    @property
    def threshold_source(self) -> str:
        """Where :attr:`threshold` came from (``argument``, ``recipe``, or how it was tuned)."""
        return self.threshold_sources[bool(self.tta)]

    def use_stored_thresholds(self, meta: dict) -> None:
        """Take the model's own threshold per TTA mode from its metadata (:func:`stored_threshold`)."""
        for mode in (False, True):
            self.thresholds[mode], self.threshold_sources[mode] = stored_threshold(meta, mode)

    @classmethod
    def from_checkpoint(
        cls,
        run_or_ckpt: str | Path,
        threshold: float | None = None,
        backend: str | None = None,
        calibrate: str | Path | None = None,
        log: Callable[[str], None] | None = None,
        **kwargs: object,
    ) -> Predictor:
        """Build from a run folder (its ``best.ckpt``), a checkpoint file, a shipped model's name, or an
        exported ``.onnx`` file (run by ONNX Runtime on the CPU).

        Args:
            threshold: overrides the one stored in the model (tuned on validation, or 0.5).
            backend: ``torch``, ``onnx``, ``onnx-int8`` or ``auto`` (:mod:`polypseg.inference.backends`);
                None (default): the file's own runtime (torch for a checkpoint, ONNX Runtime for ``.onnx``).
                The choice and its reason end up in :attr:`backend`.
            calibrate: calibration frames for ``onnx-int8`` from a checkpoint (a data folder).
            log: called with a line when a checkpoint is exported for ONNX Runtime (once per checkpoint).
            kwargs: the constructor's (``tta``, ``batch_size``, ``precision``, ``device``).

        Raises:
            InputError: an unknown backend, ``torch`` for an ``.onnx`` file, ``onnx-int8`` for an fp32
                ``.onnx`` file or for a checkpoint without ``calibrate``.
        """
        from polypseg.inference.backends import BackendChoice, check_backend, choose_auto

        path = resolve_model(run_or_ckpt)
        if path.suffix == ".onnx":
            return cls._onnx_file(path, check_backend(backend or "onnx"), threshold, **kwargs)
        backend = check_backend(backend or "torch")
        if backend == "onnx-int8" and calibrate is None:
            raise InputError(
                f"--backend onnx-int8 on the checkpoint {path} needs calibration frames: add --calibrate DATA (a "
                "folder of frames like yours), or give an int8 .onnx from 'polypseg export --int8 --calibrate DATA'"
            )
        if backend == "auto":
            device = torch.device(kwargs["device"]) if kwargs.get("device") is not None else default_device()  # type: ignore[arg-type]
            pred, choice = choose_auto(path, lambda name: cls._load(path, name, threshold, None, log, kwargs), device)
        else:
            pred = cls._load(path, backend, threshold, calibrate, log, kwargs)
            choice = BackendChoice(backend, f"{backend} (as asked)")
        pred.backend = choice
        return pred

    @classmethod
    def _load(cls, path: Path, backend: str, threshold: float | None, calibrate: str | Path | None,
              log: Callable[[str], None] | None, kwargs: dict) -> Predictor:  # fmt: skip
        if backend != "torch":
            from polypseg.inference.backends import cached_onnx

            onnx_path = cached_onnx(path, calibrate if backend == "onnx-int8" else None, log)
            return cls._from_onnx(onnx_path, threshold, **kwargs)
        model, meta = load_model(path)
        return cls._with_meta(model, meta, threshold, **kwargs)

    @classmethod
    def _with_meta(cls, model: torch.nn.Module | None, meta: dict, threshold: float | None,
                   **kwargs: object) -> Predictor:  # fmt: skip
        """A predictor of ``model`` (None: ``onnx_session`` in ``kwargs``) preprocessing as the model's metadata
        says, holding that metadata, and thresholding at ``threshold`` or, when None, at the model's stored
        threshold per TTA mode."""
        pre = meta["preprocess"]
        thr = 0.5 if threshold is None else threshold
        pred = cls(model, pre["size"], pre["mean"], pre["std"], threshold=thr, **kwargs)  # type: ignore[arg-type]
        pred.meta = meta
        if threshold is None:
            pred.use_stored_thresholds(meta)
        return pred

    @classmethod
    def _onnx_file(cls, path: Path, backend: str, threshold: float | None, **kwargs: object) -> Predictor:
        from polypseg.inference.backends import BackendChoice
        from polypseg.inference.export import is_int8

        if backend == "torch":
            raise InputError(
                f"{path} is an ONNX file: it runs with --backend onnx (or auto); for torch give the checkpoint "
                "it was exported from"
            )
        pred = cls._from_onnx(path, threshold, **kwargs)
        int8 = is_int8(pred.meta)
        if backend == "onnx-int8" and not int8:
            raise InputError(
                f"{path} is an fp32 ONNX model, not int8: make one with 'polypseg export MODEL --int8 --calibrate "
                "DATA', or use --backend onnx"
            )
        name = "onnx-int8" if int8 else "onnx"
        pred.backend = BackendChoice(name, f"{name}: {path.name} is an {'int8' if int8 else 'fp32'} ONNX model")
        return pred

    @classmethod
    def _from_onnx(cls, path: Path, threshold: float | None, **kwargs: object) -> Predictor:
        from polypseg.inference.export import read_onnx_meta
        from polypseg.inference.onnx_session import ort_session

        kwargs.pop("device", None)
        kwargs.pop("precision", None)  # the exported graph is fp32 (or int8)
        return cls._with_meta(None, read_onnx_meta(path), threshold, device="cpu", onnx_session=ort_session(path),
                              **kwargs)  # fmt: skip

    def run_network(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(N, S, S)`` float32 on the CPU for a standardised batch ``(N, 3, S, S)`` (the
        network, sigmoid and TTA, on whichever backend this predictor runs)."""
        if self.session is not None:
            return self._forward_onnx(batch)
        return self._forward_torch(batch)

    def _forward_onnx(self, batch: torch.Tensor) -> torch.Tensor:
        def run(x: torch.Tensor) -> torch.Tensor:
            (logits,) = self.session.run(["logits"], {"image": x.contiguous().numpy()})  # type: ignore[union-attr]
            return torch.sigmoid(torch.from_numpy(logits))

        prob = run(batch)
        if self.tta:
            prob = (prob + run(batch.flip(-1)).flip(-1) + run(batch.flip(-2)).flip(-2)) / 3
        return prob[:, 0]

    @torch.inference_mode()
    def _forward_torch(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        model = self.model
        assert model is not None
        dtype = autocast_dtype(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            prob = torch.sigmoid(model(batch).float())
            if self.tta:
                prob = prob + torch.sigmoid(model(batch.flip(-1)).float()).flip(-1)
                prob = prob + torch.sigmoid(model(batch.flip(-2)).float()).flip(-2)
                prob = prob / 3
        return prob[:, 0].float().cpu()

    def predict_proba(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield a float32 probability map ``(H, W)`` in [0, 1] for each uint8 RGB frame ``(H, W, 3)``,
        at the frame's own size, processing ``batch_size`` frames per forward pass."""
        pending: list[np.ndarray] = []
        for frame in frames:
            pending.append(frame)
            if len(pending) == self.batch_size:
                yield from self._run(pending)
                pending = []
        if pending:
            yield from self._run(pending)

    def _run(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"expected uint8 RGB frames (H, W, 3), got {f.dtype} {f.shape}")
        small = np.stack([resize_image(f, self.size) for f in frames])
        probs = self.run_network(normalise(small, self.mean, self.std)).numpy()
        return [resize_probability(p, f.shape[0], f.shape[1]) for p, f in zip(probs, frames, strict=True)]

    def predict_mask(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield a uint8 mask ``(H, W)`` in {0, 1} per frame (probability > threshold)."""
        for p in self.predict_proba(frames):
            yield (p > self.threshold).astype(np.uint8)

    def frames_and_masks(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(frame, mask)`` per frame of a stream, in order, batched as :meth:`predict_mask`; each
        frame is held only until its mask comes back (to draw an overlay), so a long video is never all
        in memory."""
        held: deque[np.ndarray] = deque()

        def stream() -> Iterator[np.ndarray]:
            for frame in frames:
                held.append(frame)
                yield frame

        for mask in self.predict_mask(stream()):
            yield held.popleft(), mask
