"""`loop=fit`: Keras `Model.fit` with validation each epoch and a test evaluation at the end."""

from __future__ import annotations

from trainer import compile as compile_


def run(model, data, *, epochs: int, optimizer: dict, callbacks: list) -> tuple[dict, dict]:
    model.compile(
        optimizer=compile_.build_optimizer(**optimizer),
        loss=compile_.build_loss(),
        metrics=compile_.build_metrics(),
    )
    history = model.fit(data.train, validation_data=data.validation, epochs=epochs, callbacks=callbacks, verbose=2,
                        shuffle=False)  # the tf.data pipeline already shuffles with the run seed
    test = model.evaluate(data.test, return_dict=True, verbose=0)
    return history.history, {f"test_{k}": float(v) for k, v in test.items()}
