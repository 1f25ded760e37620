"""The engine contract and the local engine: where each call of a batch is analysed.

An engine turns :class:`~speechpipe.batch.items.BatchItem` s into
:class:`~speechpipe.batch.items.Outcome` s; it never touches the output
directory (the driver, :mod:`speechpipe.batch.runner`, does).
"""

from __future__ import annotations

import time
import traceback
from typing import Iterable, Iterator, Protocol

from speechpipe.batch.items import BatchError, BatchItem, Outcome
from speechpipe.errors import failure_reason


class Engine(Protocol):
    """Runs the pipeline on items and yields their outcomes, in input order."""

    def __call__(self, items: Iterable[BatchItem], config, **options) -> Iterator[Outcome]: ...


def analyse(pipe, item: BatchItem, audio=None) -> Outcome:
    """Run ``pipe`` on one item; every error becomes a failed :class:`Outcome`.

    ``audio`` is pre-decoded :class:`~speechpipe.records.AudioData` (streaming
    engines decode on other CPUs) or an exception raised while decoding it.
    """
    from speechpipe.asr.whisper import ASRError

    t = time.perf_counter()
    try:
        if item.error:
            raise BatchError(item.error)
        if isinstance(audio, BaseException):
            raise audio
        src = audio if audio is not None else item.input
        result = pipe.process(src, call_id=item.call_id, counsellor_channel=item.counsellor_channel)
        return Outcome(item, "done", result=result, seconds=time.perf_counter() - t)
    except Exception as e:
        return Outcome(
            item, "failed", reason=failure_reason(e),
            detail="".join(traceback.format_exception(type(e), e, e.__traceback__)),
            seconds=time.perf_counter() - t, fatal=isinstance(e, ASRError),
        )


def run_local(items: Iterable[BatchItem], config) -> Iterator[Outcome]:
    """The local engine: one :class:`~speechpipe.pipeline.Pipeline` (models load once).

    Outcomes come in input order. ``Pipeline.process_stream`` recognises as
    many calls at once as the transcriber has model replicas (one per core on
    the CPU) and finishes them (speakers, prosody, tags) alongside.
    """
    from collections import deque

    from speechpipe.asr.whisper import ASRError
    from speechpipe.pipeline import Pipeline

    pipe = Pipeline(config)
    started: deque = deque()  # (item, start time), in input order

    def inputs():
        for item in items:
            started.append((item, time.perf_counter()))
            yield (BatchError(item.error) if item.error else item.input), item.call_id, item.counsellor_channel

    stream = pipe.process_stream(inputs())
    while True:
        try:
            _src, res = next(stream)
        except StopIteration:
            return
        except ASRError as e:  # the model itself is unusable: every call would fail
            raise BatchError(str(e)) from e
        item, t = started.popleft()
        if isinstance(res, Exception):
            yield Outcome(
                item, "failed", reason=failure_reason(res),
                detail="".join(traceback.format_exception(type(res), res, res.__traceback__)),
                seconds=time.perf_counter() - t, fatal=isinstance(res, ASRError),
            )
        else:
            yield Outcome(item, "done", result=res, seconds=time.perf_counter() - t)
