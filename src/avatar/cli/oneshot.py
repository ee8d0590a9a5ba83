"""One-shot commands: transcribe, say, ask, talk — the voice loop without a server."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from avatar.cli.console import console, err_console, run_async, settings, user_errors
from avatar.errors import AudioError

# Engines and audio codecs are imported inside the commands, so `avatar --help` stays instant.


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AudioError(f"cannot read {path}: {exc.strerror}", code="file_unreadable") from None


@user_errors
def transcribe(
    file: Path = typer.Argument(..., help="Audio file (wav, flac, ogg, opus, mp3, webm)."),
    language: str = typer.Option(None, "--language", "-l", help="Language code; auto if unset."),
) -> None:
    """Print the transcript of an audio file."""
    from avatar.engines.hub import EngineHub
    from avatar.services import speech

    hub = EngineHub(settings())
    data = _read(file)
    hub.stt.load()  # so the time below is the transcription's, not the model load's
    start = time.perf_counter()
    result = run_async(speech.transcribe_bytes(hub, data, language=language))
    took = time.perf_counter() - start
    err_console.print(
        f"[dim]language {result.language} · audio {result.duration_s:.1f} s"
        f" · transcribed in {took:.2f} s[/]"
    )
    typer.echo(result.text)


@user_errors
def say(
    text: str = typer.Argument(..., help="What to say."),
    output: Path = typer.Option(..., "--output", "-o", help="WAV file to write."),
    language: str = typer.Option(None, "--language", "-l", help="Language; guessed if unset."),
    mode: str = typer.Option("fast", "--mode", help="TTS mode: fast or hq."),
) -> None:
    """Synthesize TEXT to a WAV file."""
    if not text.strip():
        raise typer.BadParameter('give the words to say, e.g. avatar say "Hello" -o hi.wav')
    from avatar.audio.encode import encode_wav
    from avatar.engines.hub import EngineHub
    from avatar.services import speech

    hub = EngineHub(settings())
    audio = run_async(speech.say(hub, text, language=language, quality=mode))
    output.write_bytes(encode_wav(audio))
    err_console.print(f"wrote {output} ({audio.duration_s:.1f}s at {audio.sample_rate} Hz)")


@user_errors
def ask(question: str = typer.Argument(..., help="The question.")) -> None:
    """Stream the LLM's answer to the terminal."""
    from avatar.engines.hub import EngineHub
    from avatar.services import speech

    hub = EngineHub(settings())

    async def stream() -> None:
        async for delta in speech.ask(hub, question):
            sys.stdout.write(delta)
            sys.stdout.flush()
        sys.stdout.write("\n")

    run_async(stream())


@user_errors
def talk(
    file: Path = typer.Argument(..., help="A spoken question (audio file)."),
    output: Path = typer.Option(..., "--output", "-o", help="WAV file for the spoken reply."),
    language: str = typer.Option(None, "--language", "-l", help="Language; auto if unset."),
) -> None:
    """One whole voice turn offline: transcribe, answer, speak."""
    from avatar.audio.encode import encode_wav
    from avatar.engines.hub import EngineHub
    from avatar.services import speech

    hub = EngineHub(settings())
    result = run_async(speech.talk(hub, _read(file), language=language))
    console.print(f"[bold]you:[/] {result.transcript.text}")
    console.print(f"[bold]avatar:[/] {result.reply}")
    output.write_bytes(encode_wav(result.audio))
    err_console.print(f"wrote {output} ({result.audio.duration_s:.1f}s)")
