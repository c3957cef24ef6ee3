"""The callback protocol: Callback, the list that calls them, and History."""


class Callback:
    """Base class. Override any on_* hook; `self.model` and `self.params` are set by fit."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...


def _overrides(callback, *hooks):
    declared = getattr(callback, "_batch_hooks", None)
    if declared is not None:  # the callback says which batch hooks need single batches
        return any(h in declared for h in hooks)
    return any(getattr(type(callback), h) is not getattr(Callback, h) for h in hooks)


def wants_batches(callback):
    """Whether a callback overrides a per-batch training hook (then fit steps one batch
    at a time; otherwise the engine runs many batches per call)."""
    return _overrides(callback, "on_train_batch_begin", "on_train_batch_end")


class History(Callback):
    """Records per-epoch logs: `history` maps each metric to a list, `epoch` lists epochs."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class CallbackList:
    """Calls a hook on every callback in order."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            c.set_model(model)
            c.set_params(params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for c in self.callbacks:
                getattr(c, hook)(*args, **kwargs)

        return call

    @property
    def wants_batches(self):
        return any(wants_batches(c) for c in self.callbacks)

    @property
    def wants_test_batches(self):
        return any(_overrides(c, "on_test_batch_begin", "on_test_batch_end")
                   for c in self.callbacks)

    @property
    def wants_predict_batches(self):
        return any(_overrides(c, "on_predict_batch_begin", "on_predict_batch_end")
                   for c in self.callbacks)
