"""`loop=fit`: Keras `Model.fit` with validation each epoch and a test evaluation at the end."""

from __future__ import annotations

from trainer.loops import callbacks as callbacks_lib
from trainer.loops import compile as compile_
from trainer.run import distribute, resume
from trainer.loops.step import evaluate_here


def run(model, data, *, epochs: int, optimizer, callbacks: list, strategy, steps_per_execution: int,
        jit_compile: bool, verbose: int, checkpoint=None, initial_epoch: int = 0) -> tuple[dict, dict]:
    """`checkpoint`: the resume checkpoint (trainer/run/checkpoint.py), already restored;
    `initial_epoch`: the epochs it had completed."""
    with strategy.scope():
        model.compile(optimizer=optimizer, loss=compile_.build_loss(), metrics=compile_.build_metrics(),
                      steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    if checkpoint is not None:
        callbacks = [*callbacks, checkpoint]
    train, validation, test = data.train, data.validation, data.test
    if not distribute.is_default(strategy):
        train, validation, test = (distribute.shardable(d) for d in (train, validation, test))
    resume.replay_shuffles(train, initial_epoch)

    steps = int(train.cardinality()) if int(train.cardinality()) >= 0 else None
    cbs = callbacks_lib.callback_list(callbacks, model=model, epochs=epochs, steps=steps, verbose=verbose)
    # steps_per_epoch: without it, fit makes two training iterators per epoch (one as an epoch
    # ends, dropped, and a new one as the next begins), and each instantiates the augmentation's
    # `map` function again (CPU a tiny model's epoch notices); with it, fit keeps the first.
    history = model.fit(train, validation_data=validation, epochs=epochs, initial_epoch=initial_epoch, callbacks=cbs,
                        steps_per_epoch=steps, verbose=verbose,
                        shuffle=False)  # the tf.data pipeline already shuffles with the run seed
    if distribute.is_multi_worker(strategy):
        test = evaluate_here(model, data.test, loss=compile_.build_loss(), metrics=compile_.build_metrics())
    else:
        test = model.evaluate(test, return_dict=True, verbose=0)
    return history.history, {f"test_{k}": float(v) for k, v in test.items()}

