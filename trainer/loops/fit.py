"""`loop=fit`: Keras `Model.fit` with validation each epoch and a test evaluation at the end."""

from __future__ import annotations

from trainer.loops import compile as compile_
from trainer.loops import setup
from trainer.run import distribute


def run(model, data, *, epochs: int, optimizer, loss, callbacks: list, strategy, steps_per_execution: int,
        jit_compile: bool, verbose: int, initial_epoch: int = 0) -> tuple[dict, dict]:
    """`initial_epoch`: the epochs a resumed run had completed (its snapshot already restored)."""
    with strategy.scope():
        model.compile(optimizer=optimizer, loss=loss, metrics=compile_.build_metrics(),
                      steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    steps = int(data.train.cardinality()) if int(data.train.cardinality()) >= 0 else None
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

