"""The callback contract: event order and what each cancellation skips."""
import pytest
import torch

from coretools import make_dls, two_class_data
from learnkit import (Callback, CancelBackwardException, CancelBatchException, CancelEpochException,
                      CancelFitException, CancelStepException, CancelTrainException, CancelValidException,
                      CrossEntropyLossFlat, EVENTS, Learner)


class EventLog(Callback):
    order = -10

    def __init__(self):
        self.events = []
        for e in EVENTS:
            setattr(self, e, (lambda e=e: self.events.append(e)))


def _learner(n=32, bs=16, cbs=()):
    x, y = two_class_data(n)
    dls = make_dls(x, y, bs=bs)  # 26 train items -> 2 batches, 6 valid -> 1 batch
    return Learner(dls, torch.nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), cbs=list(cbs), progress=False)


BATCH_TRAIN = ["before_batch", "after_pred", "after_loss", "before_backward", "after_backward", "before_step",
               "after_step", "after_batch"]
BATCH_VALID = ["before_batch", "after_pred", "after_loss", "after_batch"]


def test_events_fire_in_documented_order():
    log = EventLog()
    learn = _learner(cbs=[log])
    learn.fit(1)
    expected = (["before_fit", "before_epoch", "before_train"] + BATCH_TRAIN * 2 + ["after_train", "before_validate"]
                + BATCH_VALID + ["after_validate", "after_epoch", "after_fit"])
    assert log.events == expected


def test_callback_order_attribute_not_registration_order():
    calls = []

    class A(Callback):
        order = 5

        def before_fit(self):
            calls.append("A")

    class B(Callback):
        order = 1

        def before_fit(self):
            calls.append("B")

    learn = _learner(cbs=[A(), B()])
    learn.fit(0)
    assert calls == ["B", "A"]
    assert learn.a is not None and learn.b is not None  # reachable by name


class Raiser(Callback):
    def __init__(self, event, exc, once=True):
        self.event, self.exc, self.once, self.fired = event, exc, once, 0
        setattr(self, event, self._raise)

    def _raise(self):
        if self.once and self.fired:
            return
        self.fired += 1
        raise self.exc()


def _run(event, exc, n_epoch=1):
    log = EventLog()
    learn = _learner(cbs=[log, Raiser(event, exc)])
    learn.fit(n_epoch)
    return log.events


def test_cancel_batch_skips_rest_of_that_batch_only():
    ev = _run("after_pred", CancelBatchException)
    first = ev[ev.index("before_batch"):]
    assert first[:4] == ["before_batch", "after_pred", "after_cancel_batch", "after_batch"]
    assert ev.count("before_step") == 1  # the second train batch still steps


def test_cancel_backward_skips_backward_and_step():
    ev = _run("before_backward", CancelBackwardException)
    assert ev.count("after_cancel_backward") == 1
    assert ev.count("before_step") == 1 and ev.count("after_step") == 1


def test_cancel_step_skips_step_but_not_batch_end():
    x, y = two_class_data(32)
    learn = _learner(cbs=[Raiser("before_step", CancelStepException, once=False)])
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1)
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    assert learn.recorder.values  # the epoch still completed and was recorded


def test_cancel_train_still_validates():
    ev = _run("before_train", CancelTrainException)
    assert "before_step" not in ev
    assert ["after_cancel_train", "after_train", "before_validate"] == ev[ev.index("after_cancel_train"):][:3]


def test_cancel_validate_skips_validation_batches():
    ev = _run("before_validate", CancelValidException)
    i = ev.index("before_validate")
    assert ev[i:i + 3] == ["before_validate", "after_cancel_validate", "after_validate"]


def test_cancel_epoch_goes_to_next_epoch():
    ev = _run("after_train", CancelEpochException, n_epoch=2)
    assert ev.count("before_epoch") == 2
    assert ev.count("before_validate") == 1  # only the second epoch validated
    assert ev.count("after_cancel_epoch") == 1


def test_cancel_fit_stops_everything():
    ev = _run("after_batch", CancelFitException, n_epoch=3)
    assert ev.count("before_batch") == 1
    assert ev[-2:] == ["after_cancel_fit", "after_fit"]


def test_callbacks_per_fit_call_are_removed_after():
    log = EventLog()
    learn = _learner()
    learn.fit(1, cbs=[log])
    assert log.events and log not in learn.cbs


def test_callback_can_replace_loss():
    class Double(Callback):
        def after_loss(self):
            if self.learn.training:
                self.learn.loss_grad = self.learn.loss_grad * 0

    learn = _learner(cbs=[Double()])
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.opt_func = torch.optim.SGD  # no weight decay, so a zero loss changes nothing
    learn.fit(1)
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_callback_type_errors_are_clear():
    learn = _learner()
    with pytest.raises(TypeError, match="Callback"):
        learn.add_cb("not a callback")
