"""Array backends: which library, on which device, runs a cell's trajectories.

A backend is campaign data (``backend``, ``device``): results are a function of the campaign,
the seed and the code, and the library that does the arithmetic is part of the code. Built-in
problems and integrators are written once against the array API, so one plugin runs on each:

* ``numpy`` (the default): eager, on the host. Finished rows leave the batch.
* ``jax``: float64 on ``cpu`` or ``gpu``; the harness advances the batch between two checkpoints
  in one ``jax.jit``-compiled ``lax.while_loop``, with budgets, oracle counts, non-finite checks
  and retirement (by masks, so shapes never change) in the loop's state. The host synchronises
  only at checkpoints.
* any other namespace ``array_api_compat`` knows (``torch``, ``cupy``, ``array_api_strict``):
  eager, through the same loop as numpy, on its device.

Plugins that declare ``array_api = False`` (numpy-only) are skipped on every backend but numpy.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from benchsuite.problem import Array, Problem

#: Backends by name: the module ``array_api_compat`` wraps (numpy itself for ``numpy``).
BACKENDS = ("numpy", "jax", "torch", "cupy", "array_api_strict")
#: Device names a user may give, per backend (an index may follow: ``gpu:1``).
DEVICE_KINDS = {"numpy": ("cpu",), "jax": ("cpu", "gpu", "tpu"), "torch": ("cpu", "cuda", "mps"),
                "cupy": ("gpu",), "array_api_strict": ("cpu",)}
_DISTRIBUTIONS = {"jax": "jax", "torch": "torch", "cupy": "cupy",
                  "array_api_strict": "array-api-strict", "numpy": "numpy"}


class BackendError(ValueError):
    """A backend or device that is unknown, not installed, or not present on this machine."""


@dataclass(frozen=True)
class Backend:
    """An array library on one device.

    Attributes
    ----------
    name : str
        One of :data:`BACKENDS`.
    device : str
        ``cpu``, ``gpu``, ``cuda:1``, ...: where arrays live and arithmetic runs.
    compiled : bool
        Whether the harness advances batches in compiled chunks (JAX) rather than step by step.
    """

    name: str
    device: str
    compiled: bool

    @property
    def xp(self) -> Any:
        """The array-API namespace (``array_api_compat``'s wrapper where the library needs one)."""
        if self.name == "numpy":
            return array_api_compat.numpy
        if self.name == "jax":
            return importlib.import_module("jax.numpy")
        if self.name == "torch":
            return importlib.import_module("array_api_compat.torch")
        if self.name == "cupy":
            return importlib.import_module("array_api_compat.cupy")
        return importlib.import_module(self.name)

    @property
    def native(self) -> Any:
        """The device object of the library (None for numpy)."""
        kind, _, index = self.device.partition(":")
        number = int(index) if index else 0
        if self.name == "jax":
            import jax
            return jax.devices(kind)[number]
        if self.name == "torch":
            import torch
            return torch.device(self.device)
        if self.name == "cupy":
            import cupy
            return cupy.cuda.Device(number)
        return None

    def asarray(self, x: np.ndarray) -> Array:
        """The host array ``x`` as float64 on this backend's device."""
        x = np.asarray(x, dtype=np.float64)
        if self.name == "numpy":
            return x
        if self.name == "jax":
            import jax
            return jax.device_put(x, self.native)
        if self.name == "torch":
            import torch
            return torch.as_tensor(x, device=self.native)
        if self.name == "cupy":
            import cupy
            with self.native:
                return cupy.asarray(x)
        return self.xp.asarray(x)

    def describe(self) -> dict[str, str]:
        """What ran the arithmetic, for the manifest and each cell's provenance."""
        about = {"backend": self.name, "device": self.device,
                 "version": importlib.metadata.version(_DISTRIBUTIONS[self.name])}
        if self.name == "jax":
            device = self.native
            about["platform"] = f"{device.platform}:{getattr(device, 'device_kind', '')}"
        elif self.name == "torch" and self.device.startswith("cuda"):
            import torch
            about["platform"] = torch.cuda.get_device_name(self.native)
        return about


def resolve(name: str | Backend = "numpy", device: str | None = None) -> Backend:
    """The backend ``name`` on ``device`` (default ``cpu``, or ``gpu`` for cupy), checked.

    Raises
    ------
    BackendError
        Unknown name, library not installed (with the pip command), device kind unknown to the
        library or absent from this machine (with the devices it has).
    """
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    kinds = DEVICE_KINDS[name]
    device = (device or kinds[0]).lower()
    kind, _, index = device.partition(":")
    if kind not in kinds or (index and not index.isdigit()):
        raise BackendError(f"backend {name} has no device {device!r}: use one of "
                           f"{', '.join(kinds)} (optionally with an index, e.g. {kinds[-1]}:0)")
    try:
        importlib.import_module("jax" if name == "jax" else name)
    except ImportError as exc:
        raise BackendError(f"backend {name!r} needs {_DISTRIBUTIONS[name]}, which is not "
                           f"installed: pip install {_DISTRIBUTIONS[name]} ({exc})") from None
    if name == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)  # float64 everywhere, as on numpy
        try:
            found = jax.devices(kind)
        except RuntimeError:
            found = []
        if len(found) <= (int(index) if index else 0):
            have = ", ".join(sorted({d.platform for d in jax.devices()}))
            raise BackendError(f"jax sees no {device} device on this machine (it has: {have}); "
                               "for a GPU install jax with CUDA: pip install 'jax[cuda12]'")
    backend = Backend(name=name, device=device, compiled=name == "jax")
    if name == "torch" and kind == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise BackendError("torch sees no CUDA device on this machine")
    return backend


def skip_reason(backend: Backend, plugin: Any) -> str | None:
    """Why a problem or integrator cannot run on ``backend`` (numpy-only code), or None."""
    if backend.name != "numpy" and not getattr(plugin, "array_api", True):
        kind = "problem" if isinstance(plugin, Problem) else "integrator"
        return (f"{kind} {plugin.name} is numpy-only (array_api = False) and the campaign runs "
                f"on the {backend.name} backend")
    return None
