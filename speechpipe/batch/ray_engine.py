"""Ray engine: the same batch on a local Ray instance or an existing cluster.

One actor per GPU (or per ``cpus_per_worker`` CPU cores) holds a loaded
:class:`~speechpipe.pipeline.Pipeline`. Decoding runs as ordinary Ray tasks
on spare CPUs, and each actor gets its next call queued behind the current
one, so decoding the next recording overlaps recognition of this one. At most
``depth`` calls per actor are in flight, which bounds memory whatever the
batch size. Results come back to the driver, which writes every output and
manifest row (see :mod:`speechpipe.batch.runner`): the outputs are the same as the
local engine's.

Inputs must be readable at the same path on every node (shared storage);
outputs need only the driver's disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections import deque
from typing import Iterable, Iterator

from speechpipe import offline
from speechpipe.batch.engine import analyse
from speechpipe.batch.items import BatchItem, Outcome


class CallWorker:
    """A Ray actor: one pipeline, models loaded once, many calls."""

    def __init__(self, config):
        offline.enforce_env()
        from speechpipe.pipeline import Pipeline

        self.pipe = Pipeline(config)

    def process(self, item: BatchItem, audio) -> Outcome:
        if audio is not None and not isinstance(audio, BaseException) and not audio.samples.flags.writeable:
            # Arrays from Ray's object store are read-only; stages may work in place.
            audio.samples = audio.samples.copy()
        return analyse(self.pipe, item, audio)


def decode(path: str):
    """Decode one recording (a Ray task on any CPU); errors travel as values."""
    from speechpipe.audio import load_audio

    try:
        return load_audio(path)
    except Exception as e:  # the actor turns it into a failed Outcome
        return e


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, a request fails at once, on loopback
LOOPBACK = "127.0.0.1,localhost,::1"


def _ray_temp_dir() -> str:
    """A private folder for Ray's session (sockets, logs), removed after the batch.

    Ray would use ``/tmp/ray`` and keep it. Its socket paths must stay under 108
    bytes, so a long ``$TMPDIR`` gives way to ``/tmp``.
    """
    base = tempfile.gettempdir()
    if len(base) > 40:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="speechpipe-ray-", dir=base)


@contextlib.contextmanager
def _private_instance_env(folder: str, token: bool = True):
    """The environment a private Ray instance's processes start with (they inherit it).

    - Ray 2.60's dashboard process asks the cloud metadata services (169.254.169.254,
      metadata.google.internal) which cloud it runs on even with usage statistics
      off (``usage_stats_head.run`` does so before it checks): ``requests`` goes to a
      dead loopback proxy instead, and loopback (Ray's own gRPC and HTTP) bypasses it.
    - Token authentication with a fresh token in ``folder`` (private, removed after
      the batch): Ray would otherwise write one to ``~/.ray/auth_token`` and keep it.
    """
    import secrets

    names = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "RAY_AUTH_MODE",
             "RAY_AUTH_TOKEN_PATH")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: (LOOPBACK if "no" in k.lower() else DEAD_PROXY) for k in names[:6]})
    if token:  # only before Ray is imported: the driver must read the same token as its children
        path = os.path.join(folder, "auth_token")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": path})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _thread_env(cpus_per_worker: int, local: bool) -> dict[str, str]:
    """Thread settings for workers.

    Ray sets ``OMP_NUM_THREADS=num_cpus`` in workers, and BLAS thread counts
    change float reduction order, enough to flip a Whisper decode. On a local
    instance workers mirror the driver, so outputs equal the local engine's;
    on a cluster each actor gets its share of cores.
    """
    if not local:
        return {"OMP_NUM_THREADS": str(cpus_per_worker)}
    env = {k: os.environ[k] for k in THREAD_VARS if k in os.environ}
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env


def run_ray(
    items: Iterable[BatchItem],
    config,
    workers: int = 1,
    address: str | None = None,
    cpus_per_worker: int | None = None,
    depth: int = 2,
) -> Iterator[Outcome]:
    """Yield an :class:`Outcome` per item, processed by ``workers`` Ray actors.

    Parameters
    ----------
    items : iterable of BatchItem
        Consumed lazily (at most ``workers * depth`` ahead of the results).
    config : PipelineConfig
        Every actor builds its own pipeline from it.
    workers : int
        Number of actors. With GPUs in the cluster and ``config.asr.device``
        not ``cpu``, each actor takes one GPU.
    address : str, optional
        An existing cluster (``ray://host:10001`` or ``auto``); default starts a
        private local instance and shuts it down afterwards.
    cpus_per_worker : int, optional
        CPU cores per actor (CPU recognition); default ``config.asr.cpu_threads`` or 1.

    Examples
    --------
    >>> outcomes = list(run_ray(discover("calls/"), PipelineConfig(), workers=2))  # doctest: +SKIP
    """
    offline.enforce_env()
    private = not address
    fresh = "ray" not in sys.modules  # Ray reads these switches when it is imported
    if private and fresh:
        # A private instance talks over loopback only: Ray otherwise looks up "this node's address"
        # (a UDP connect to 8.8.8.8) and binds GCS/raylet to the public interface.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_tmp = _ray_temp_dir() if private else None
    env = contextlib.ExitStack()
    if private:
        env.enter_context(_private_instance_env(ray_tmp, token=fresh))
    import ray

    if ray.is_initialized() and ray_tmp:  # an instance the caller started: used as it is
        env.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        ray_tmp = None

    workers = max(1, int(workers))
    cpw = cpus_per_worker or max(1, int(config.asr.cpu_threads or 1))
    if config.asr.num_workers == 0:
        # An actor is the unit of parallelism here: one ASR replica each, with its cpw threads
        # (the local default of a replica per core would oversubscribe every actor's share).
        import dataclasses

        config = dataclasses.replace(config, asr=dataclasses.replace(config.asr, num_workers=1))
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            # Logical CPUs for the actors plus one for decode tasks; real cores may be fewer.
            try:
                with env:
                    ray.init(
                        num_cpus=max(os.cpu_count() or 1, workers * cpw + 1),
                        include_dashboard=False,
                        logging_level="WARNING",
                        log_to_driver=False,
                        configure_logging=True,
                        _temp_dir=ray_tmp,
                    )
            except BaseException:
                shutil.rmtree(ray_tmp, ignore_errors=True)
                raise
        started = True
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        use_gpu = config.asr.device != "cpu" and gpus >= 1
        opts = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": cpw}
        # Workers start with the offline switches set (before they import anything).
        opts["runtime_env"] = {"env_vars": {**offline.worker_env(), **_thread_env(cpw, local=not address)}}
        Actor = ray.remote(max_restarts=1, max_task_retries=0)(CallWorker)
        actors = [Actor.options(**opts).remote(config) for _ in range(workers)]
        decode_task = ray.remote(num_cpus=1, max_retries=0, runtime_env=opts["runtime_env"])(decode)

        queues: list[deque] = [deque() for _ in actors]
        where: dict = {}  # result ref → (actor index, item)
        source = iter(items)

        def submit(i: int) -> bool:
            item = next(source, None)
            if item is None:
                return False
            audio_ref = None if item.error else decode_task.remote(item.input)
            ref = actors[i].process.remote(item, audio_ref)
            queues[i].append(ref)
            where[ref] = (i, item)
            return True

        for _ in range(depth):
            for i in range(len(actors)):
                submit(i)
        while where:
            ready, _ = ray.wait(list(where), num_returns=1)
            ref = ready[0]
            i, item = where.pop(ref)
            queues[i].remove(ref)
            try:
                oc = ray.get(ref)
            except Exception as e:  # the actor died (e.g. out of memory); Ray restarts it
                oc = Outcome(item, "failed", reason=f"worker crashed: {type(e).__name__}", detail=str(e))
            yield oc
            submit(i)
    finally:
        if started:
            ray.shutdown()
            if ray_tmp:
                shutil.rmtree(ray_tmp, ignore_errors=True)
