"""Energy of a timed window: NVML's energy counter (nvmlDeviceGetTotalEnergyConsumption, millijoules since the
driver loaded) read once when the timed batches start and once when the last of them has finished, on the GPU
that ran them. Records get joules per image, images/s per watt and the window's mean power.

How such a figure could be wrong, and what is done about each (tests/measure/test_energy.py):
- The counter is the whole GPU's: idle power and another process's work on the same GPU count. The record says
  "whole GPU" (`energy_scope`); a study's workers each own their GPU.
- The counter moves in steps (the driver refreshes it every few tens of ms): over a window shorter than
  MIN_WINDOW_S the step is a large share, so no figure is given and the record says why.
- The counter is absent (GPUs before Volta, MIG instances, some vGPUs: NVML answers "not supported"): one line
  says so and the fields stay empty. A counter that did not increase (a reset, a stuck counter) gives no figure,
  never 0 J or infinite images per joule.
- The wrong GPU: the handle is found by the CUDA device's UUID, so cuda:1 or CUDA_VISIBLE_DEVICES read the GPU that
  ran the batches, not NVML's index 0.

Usage:
    meter = EnergyMeter.for_device(torch.device("cuda:0"))    # None on the CPU
    mj0, t0 = meter.read(); ...timed batches, synchronised...; mj1, t1 = meter.read()
    fields = energy_fields(mj1 - mj0, t1 - t0, images, images_per_s)
"""
from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from utils.measure.jetson import jetson_meter

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch

log = logging.getLogger(__name__)

MIN_WINDOW_S = 1.0      # a shorter window gives no figure (the counter's refresh step is too large a share)
SCOPE = "whole GPU"     # what the counter covers
_said: set = set()      # the GPUs whose missing counter was already reported (one line per GPU and process)


class EnergyMeter:
    """Reads a millijoule counter around a window. `read_mj` returns the counter; `clock` the time in seconds."""

    def __init__(self, read_mj: Callable[[], int], clock: Callable[[], float] = time.perf_counter,
                 scope: str = SCOPE, close: Optional[Callable[[], None]] = None):
        self.read_mj, self.clock, self.scope, self._close = read_mj, clock, scope, close

    def close(self) -> None:
        """Stops what the meter started (a Jetson's power sampler); NVML's counter needs nothing."""
        if self._close is not None:
            self._close()
            self._close = None

    @classmethod
    def for_device(cls, device: Any) -> Optional["EnergyMeter"]:
        """The meter of a CUDA device, or None (the CPU; no NVML; no energy counter: said once in one line)."""
        if device.type != "cuda":
            return None
        props = None
        try:
            import pynvml

            index = device.index if device.index is not None else torch.cuda.current_device()
            props = torch.cuda.get_device_properties(index)
            uuid = str(props.uuid)
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # "not supported" raises here, before any window
        except Exception as err:  # ImportError, NVMLError (not supported, no driver), a UUID NVML does not know
            rails = _integrated_gpu_meter(device, props)
            if rails is not None:  # a Jetson: its power rails instead (NVML has no Tegra energy counter)
                return rails
            key = str(device)
            if key not in _said:
                _said.add(key)
                log.warning("no energy figures on %s: NVML's energy counter cannot be read there (%s)", key,
                            str(err) or type(err).__name__)
            return None
        return cls(lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)))

    @classmethod
    def from_power(cls, integrator: Any) -> "EnergyMeter":
        """A meter over a started power integrator (utils.measure.jetson.PowerIntegrator), stopped by close()."""
        integrator.__enter__()
        return cls(integrator.read_mj, integrator.clock, integrator.source, lambda: integrator.__exit__(None))

    def read(self) -> Tuple[int, float]:
        """The counter (mJ) and the time (s), read together."""
        return self.read_mj(), self.clock()


def _integrated_gpu_meter(device: Any, props: Any = None) -> Optional["EnergyMeter"]:
    """On an integrated GPU (a Jetson: torch says is_integrated), the module's power rails; else None. `props`: the
    device's properties where the caller has them already."""
    try:
        if props is None:
            index = device.index if device.index is not None else torch.cuda.current_device()
            props = torch.cuda.get_device_properties(index)
        if not getattr(props, "is_integrated", False):
            return None
        integrator = jetson_meter()
    except Exception:  # a device torch cannot describe, rails that cannot be read: no figure, said by the caller
        return None
    return EnergyMeter.from_power(integrator) if integrator is not None else None


def energy_fields(delta_mj: float, window_s: float, images: int, images_per_s: Optional[float],
                  scope: str = SCOPE) -> Dict[str, Any]:
    """joules per image, images/s per watt (= images per joule where images/s is over the same window) and mean
    power; or no figure and `energy_note` saying why. scope: what the counter covers (the record's energy_scope)."""
    out: Dict[str, Any] = {"energy_scope": scope, "energy_window_s": round(window_s, 4) if math.isfinite(window_s)
                           else None}
    why = why_no_energy(delta_mj, window_s, images)
    if why:
        return {**out, "energy_note": why}
    joules = delta_mj / 1e3
    watts = joules / window_s
    out.update({"energy_j": round(joules, 4), "joules_per_image": joules / images, "power_mean_w": round(watts, 2),
                "images_per_s_per_watt": images_per_s / watts if images_per_s else None})
    return out


def why_no_energy(delta_mj: float, window_s: float, images: int) -> Optional[str]:
    """Why a window gives no energy figure, or None where it gives one."""
    if not (math.isfinite(window_s) and window_s >= MIN_WINDOW_S):
        return (f"the timed window ({window_s:.3g} s) is shorter than {MIN_WINDOW_S:g} s, the least the counter's "
                "steps allow")
    if not (math.isfinite(delta_mj) and delta_mj > 0):
        return f"the energy counter did not increase over the window ({delta_mj:g} mJ)"
    if images < 1:
        return "no image was timed"
    return None
