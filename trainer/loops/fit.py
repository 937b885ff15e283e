"""`loop=fit`: Keras `Model.fit` with validation each epoch and a test evaluation at the end."""

from __future__ import annotations

from trainer.loops import callbacks as callbacks_lib
from trainer.loops import compile as compile_
from trainer.loops import execution, setup
from trainer.run import distribute


def run(model, data, *, epochs: int, optimizer, loss, callbacks: list, strategy, steps_per_execution: int | str,
        jit_compile: bool, verbose: int, initial_epoch: int = 0) -> tuple[dict, dict]:
    """`initial_epoch`: the epochs a resumed run had completed (its snapshot already restored);
    `steps_per_execution`: an int or "auto" (trainer/loops/execution.py)."""
    steps = int(data.train.cardinality()) if int(data.train.cardinality()) >= 0 else None
    spe = execution.resolve(steps_per_execution, steps=steps, verbose=verbose, callbacks=callbacks,
                            replicas=strategy.num_replicas_in_sync, loop="fit")
    with strategy.scope():
        model.compile(optimizer=optimizer, loss=loss, metrics=compile_.build_metrics(),
                      steps_per_execution=spe, jit_compile=jit_compile)
        watchers = [cb for cb in callbacks if isinstance(cb, callbacks_lib.StopOnNonFiniteLoss)]
        if spe > 1 and watchers:
            watchers[0].watch = execution.NonFiniteWatch()
            execution.watch_fit_steps(model, watchers[0].watch)
    # Keras distributes the splits itself; under a strategy they are only sharded by example.
    feed = setup.prepare(model, data, feed=(lambda split: split) if distribute.is_default(strategy) else distribute.shardable,
                         callbacks=callbacks, epochs=epochs, initial_epoch=initial_epoch, steps=steps, verbose=verbose)
    # steps_per_epoch: without it, fit makes two training iterators per epoch (one as an epoch
    # ends, dropped, and a new one as the next begins), and each instantiates the augmentation's
    # `map` function again (CPU a tiny model's epoch notices); with it, fit keeps the first.
    history = model.fit(feed.train, validation_data=feed.validation, epochs=epochs, initial_epoch=initial_epoch,
                        callbacks=feed.callbacks, steps_per_epoch=steps, verbose=verbose,
                        shuffle=False)  # the tf.data pipeline already shuffles with the run seed
    return history.history, setup.test_metrics(model, data, strategy, loss,
                                               lambda: model.evaluate(feed.test, return_dict=True, verbose=0))

