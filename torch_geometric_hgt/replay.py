"""Recomputation in backward under the forward's random and autocast
state, for the chunked layers' hand-written backwards."""
import contextlib

import torch


class ForwardState:
    """The CPU (and, on CUDA, the device's) RNG state and the autocast state
    at construction, to be replayed by :meth:`replay`."""
    def __init__(self, device: torch.device):
        self.device = device
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(device) \
            if device.type == 'cuda' else None
        self.autocast = (torch.is_autocast_enabled(device.type),
                         torch.get_autocast_dtype(device.type))

    @contextlib.contextmanager
    def replay(self):
        """Gradients on, RNG and autocast as at construction; the caller's
        RNG streams are restored afterwards."""
        devices = [self.device] if self.cuda_rng is not None else []
        enabled, dtype = self.autocast
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), \
                torch.autocast(self.device.type, dtype=dtype,
                               enabled=enabled):
            torch.set_rng_state(self.cpu_rng)
            if self.cuda_rng is not None:
                torch.cuda.set_rng_state(self.cuda_rng, self.device)
            yield
