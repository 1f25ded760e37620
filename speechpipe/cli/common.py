"""What the commands share: typer options, the console, and options → PipelineConfig (one place)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from speechpipe.config import DIARIZERS


def console():
    """The stderr console; lines never wrap (a log file or a pipe gets one line per message)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def quiet_warnings() -> None:
    """Library warnings: scikit-learn's (site-packages paths, nothing a user can act on) are dropped;
    any other prints as one line without a source path."""
    import warnings

    warnings.filterwarnings("ignore", module=r"sklearn(\.|$)")

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message).strip().splitlines()[0] if str(message).strip() else ""
        print(f"warning: {category.__name__}: {text}", file=file or sys.stderr)

    warnings.showwarning = show


def out_dir(out) -> "Path":
    """``--out`` checked before any work (a file, not writable): a usage error, exit 1."""
    from speechpipe.outputs.writers import OutputError, prepare_out

    try:
        return prepare_out(out)
    except OutputError as e:
        raise typer.BadParameter(str(e), param_hint="'--out'") from None


def check_device(device: str) -> None:
    """``--device cuda`` without a usable GPU is one usage error, not a failure of every file."""
    if device != "cuda":
        return
    try:
        import ctranslate2

        n = ctranslate2.get_cuda_device_count()
    except Exception:  # pragma: no cover - a broken CUDA install
        n = 0
    if n < 1:
        raise typer.BadParameter("no CUDA GPU is usable here (driver or device missing); use --device cpu or auto",
                                 param_hint="'--device'")


def asr_options(
    asr_model: Optional[str],
    device: str,
    compute_type: Optional[str],
    beam_size: int,
    initial_prompt: Optional[str],
    nav_prompt: bool,
    vad_threshold: float,
    vad_min_silence_ms: int,
    cpu_threads: int,
    asr_workers: int = 0,
):
    from speechpipe.asr.whisper import NAV_PROMPT, ASRConfig

    model = None if asr_model in (None, "embedded", "base") else asr_model
    return ASRConfig(
        model=model,
        device=device,
        compute_type=compute_type,
        beam_size=beam_size,
        initial_prompt=initial_prompt or (NAV_PROMPT if nav_prompt else None),
        vad_threshold=vad_threshold,
        vad_min_silence_ms=vad_min_silence_ms,
        cpu_threads=cpu_threads,
        num_workers=asr_workers,
    )


# Options shared by `run` and `batch`; typer needs them spelled per command.
ASR_MODEL = typer.Option(
    None, "--asr-model", help="Local CTranslate2 Whisper directory (e.g. NB-Whisper). Default: embedded base model."
)
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda")
COMPUTE = typer.Option(None, "--compute-type", help="CTranslate2 compute type; default int8 on CPU, float16 on GPU.")
BEAM = typer.Option(5, "--beam-size", min=1, help="Beam size for decoding.")
PROMPT = typer.Option(None, "--initial-prompt", help="Initial prompt (vocabulary) for the decoder; default none.")
NAV_PROMPT_OPT = typer.Option(False, "--nav-prompt", help="Use the built-in NAV vocabulary as initial prompt.")
VAD_T = typer.Option(0.5, "--vad-threshold", min=0.0, max=1.0, help="Silero VAD speech probability threshold.")
VAD_S = typer.Option(500, "--vad-min-silence-ms", min=0, help="Silence (ms) that splits speech chunks.")
THREADS = typer.Option(
    0, "--cpu-threads", min=0, help="CTranslate2 threads per ASR replica (0: the cores shared out between replicas)."
)
ASR_WORKERS = typer.Option(
    0,
    "--asr-workers",
    min=0,
    help="ASR model replicas decoding in parallel (0: one per core on the CPU, at most 4; 1 on a GPU).",
)
DIARIZER = typer.Option("auto", "--diarizer", help=" | ".join(DIARIZERS))
PYANNOTE = typer.Option(
    None, "--pyannote-pipeline", help="Local pyannote pipeline directory (with --diarizer pyannote)."
)
COUNSELLOR = typer.Option("auto", "--counsellor-channel", help="left | right | auto (stereo calls).")
LAYOUT = typer.Option("auto", "--channel-layout",
                      help="auto | mono | two_party | duplicated | one_silent: override the detected stereo layout.")
REDACT = typer.Option(
    False, "--redact", help="Replace personal numbers, phones, accounts, e-mails, addresses in all text outputs."
)
FORMATS = typer.Option("all", "--formats", help="Comma list of json,rttm,vtt,srt,textgrid,eaf,parquet,html or 'all'.")
PSEUDO = typer.Option(
    False,
    "--pseudonymise",
    help="Name outputs by a keyed hash instead of the file name (key: SPEECHPIPE_PSEUDONYM_KEY).",
)
REPORT_AUDIO = typer.Option(False, "--report-audio",
                            help="The HTML report plays the original recording (relative path; nothing copied).")
RULES = typer.Option(None, "--rules",
                     help="Category rule file (YAML, see docs/interaction.md); default: the shipped NKS set.")


def check_rules(rules) -> str | None:
    """Validate a --rules file before any input is read: a bad file is a usage error naming its line."""
    if rules is None:
        return None
    from speechpipe.analytics.rules import RulesError, load_rules

    try:
        load_rules(rules)
    except RulesError as e:
        raise typer.BadParameter(str(e), param_hint="'--rules'") from None
    return str(rules)


def pipeline_config(asr, diarizer, pyannote_pipeline, counsellor_channel, redact, no_prosody=False, no_tag=False,
                    rules=None, channel_layout="auto"):
    """The one place command-line options become a :class:`~speechpipe.config.PipelineConfig`."""
    from speechpipe.config import ConfigError, PipelineConfig

    try:
        return PipelineConfig(
            asr=asr,
            diarizer=diarizer,
            pyannote_pipeline=pyannote_pipeline,
            counsellor_channel=counsellor_channel,
            channel_layout=channel_layout,
            prosody=not no_prosody,
            tag=not no_tag,
            redact=redact,
            rules=check_rules(rules),
        )
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint=f"'--{e.setting.replace('_', '-')}'") from e


