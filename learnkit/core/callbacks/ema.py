"""`EMACallback`: an exponential moving average of the weights (timm's ``ModelEmaV3``, Keras' ``use_ema``).

After every ``every`` optimizer steps, each floating-point parameter's average moves towards it,
``ema = decay * ema + (1 - decay) * param`` (``torch._foreach_lerp_``: on the model's device, no host sync);
buffers (batch-norm statistics) are copied. Every parameter is averaged, frozen or not, so after
``fine_tune`` unfreezes the body its average follows it from the weights it had.

With ``validate_with_ema=True`` validation runs on the averaged weights (the trackers, such as
`SaveModelCallback`, then judge and save those), and at the end of the fit the model keeps them, as Keras does:
``get_preds``, ``export`` and the next fit use them (``raw_state`` holds the trained weights). A checkpoint
(`CheckpointCallback`) keeps both: the trained weights as the model, the average in this callback's state,
so a resumed run continues the same average.
"""
from __future__ import annotations

import torch

from ..callback import Callback

__all__ = ["EMACallback"]


class EMACallback(Callback):
    """Keep an exponential moving average of the model's weights; validate and export with it.

    Args:
        decay: weight of the old average at each update (``0.9998`` suits ImageNet-length runs; use ~0.99
            for a few hundred steps).
        every: update after every ``every`` optimizer steps.
        validate_with_ema: validate on the average, and leave it in the model at the end of the fit.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(32, 2), torch.randn(32, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> ema = EMACallback(decay=0.9)
    >>> learn.fit(2, cbs=ema)
    >>> ema.n_updates, torch.equal(learn.model.weight, ema.averages["weight"])  # the model now holds the average
    (16, True)
    """

    order = 72  # after the trackers (70) judged the averaged weights, before the checkpoint (75) saves the trained ones

    def __init__(self, decay: float = 0.9998, every: int = 1, validate_with_ema: bool = True):
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive number of optimizer steps, got {every!r}")
        self.decay, self.every, self.validate_with_ema = decay, every, validate_with_ema
        self.averages: dict[str, torch.Tensor] = {}
        self.raw_state: dict[str, torch.Tensor] | None = None
        self.n_updates = self._steps = 0
        self._backup: list[torch.Tensor] | None = None

    # --- the average ------------------------------------------------------------------------------------
    def _pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(averages, params) of floating-point parameters; (copies, buffers) of everything else in the state."""
        state = self.learn.model.state_dict(keep_vars=True)
        params = {n for n, _ in self.learn.model.named_parameters()}
        avg, par, cop, buf = [], [], [], []
        for name, t in state.items():
            if name in params and t.is_floating_point():
                avg.append(self.averages[name]), par.append(t.detach())
            else:
                cop.append(self.averages[name]), buf.append(t.detach())
        return avg, par, cop, buf

    def _init_averages(self) -> None:
        state = self.learn.model.state_dict()
        if self.averages.keys() == state.keys() and all(
                a.shape == t.shape and a.device == t.device for a, t in zip(self.averages.values(), state.values())):
            return  # the same model: the average goes on (fine_tune's second fit, a resumed run)
        self.averages = {k: v.detach().clone() for k, v in state.items()}
        self.n_updates = self._steps = 0

    def before_fit(self):
        from .lr_finder import LRFinder
        # lr_find's throw-away steps (their weights are put back) are not averaged
        self._off = any(isinstance(cb, LRFinder) for cb in self.learn.cbs)
        self._backup, self._cancelled = None, False
        if not self._off:
            self._init_averages()

    def __call__(self, event: str) -> None:
        if event == "before_fit" or not getattr(self, "_off", False):
            super().__call__(event)

    def after_cancel_step(self):
        self._cancelled = True

    def after_step(self):  # fires after a cancelled step too (gradient accumulation)
        if self._cancelled:
            self._cancelled = False
            return
        self._steps += 1
        if self._steps % self.every:
            return
        avg, par, cop, buf = self._pairs()
        with torch.no_grad():
            if avg:
                torch._foreach_lerp_(avg, par, 1.0 - self.decay)
            for a, b in zip(cop, buf):
                a.copy_(b)
        self.n_updates += 1

    # --- validating with it ------------------------------------------------------------------------------
    def _swap_in(self) -> None:
        if self._backup is not None:
            return
        avg, par, cop, buf = self._pairs()
        with torch.no_grad():
            self._backup = [p.clone() for p in par]
            torch._foreach_copy_(par, avg)

    def _swap_out(self) -> None:
        if self._backup is None:
            return
        _, par, _, _ = self._pairs()
        with torch.no_grad():
            torch._foreach_copy_(par, self._backup)
        self._backup = None

    def before_validate(self):
        if self.validate_with_ema:
            self._swap_in()

    def after_epoch(self):
        self._swap_out()  # the trackers (order 70) have seen the average; the checkpoint saves the trained weights

    def after_cancel_fit(self):
        self._swap_out()

    def after_fit_exception(self):
        self._swap_out()

    def after_fit(self):
        self._swap_out()
        if not self.validate_with_ema:
            return
        reloaded = getattr(self.learn, "save_model", None)  # SaveModelCallback already loaded its best (averaged) weights
        if reloaded is not None and getattr(reloaded, "best_epoch", None) is not None and not reloaded.at_end \
                and not reloaded.every_epoch:
            return
        self.raw_state = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}
        self.learn.model.load_state_dict(self.averages)

    # --- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The average and its counters (a `CheckpointCallback` keeps them beside the trained weights)."""
        return {"averages": dict(self.averages), "n_updates": self.n_updates, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        dev = next(iter(self.learn.model.state_dict().values())).device
        self.averages = {k: v.to(dev) for k, v in state["averages"].items()}
        self.n_updates, self._steps = int(state["n_updates"]), int(state["steps"])
