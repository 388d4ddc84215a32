"""A new user's walk through README.md, top to bottom: every fenced command and snippet,
in order, in a fresh folder, as a user types it (the CLI in subprocesses, snippets as
scripts). CI's fresh venv is the README's set-up; its `pip install` lines are what CI
itself ran, so they are skipped here.

The README's runs are shortened with ``-s`` overrides (fewer trials and steps), the same
ones for every command that names a pipeline file, so "run it again: every node comes
from the cache" is walked as written. Each step must exit 0; a few steps also check what
the README says they show. Placeholders (``<run-id>``, ``3fa2`` ...) become the ids of
the runs the walk made.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Same overrides for every command naming the file: the walk's runs take seconds, not minutes.
FAST = {
    "pipelines/quickstart.yaml": ["nodes.tune.with.trials=3", "nodes.train.with.steps=60"],
    "pipelines/tune_random.yaml": ["nodes.tune.with.trials=3", "nodes.train.with.steps=40"],
    "pipelines/tune_pbt.yaml": ["nodes.tune.with.population=2", "nodes.train.with.steps=100"],
    "pipelines/quantize.yaml": ["nodes.train.with.steps=60"],
    "pipeline.yaml": ["nodes.train.with.steps=40"],  # the "Pipeline files" example
}
SCRIPT_ARGS = {"examples/custom_objective.py": ["--trials", "3", "--steps", "40"]}
SNIPPET_EDITS = [("steps=600", "steps=60"), ("trials=20", "trials=5")]
SETUP = ("python3 -m venv", ". .venv/bin/activate", "pip install")


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def readme_blocks() -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block of the README, in order."""
    return re.findall(r"```(\w+)\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def commands(body: str) -> list[str]:
    """The commands of a bash block: comments, set-up and empty lines dropped."""
    found = []
    for line in body.splitlines():
        line = re.split(r"\s{2,}#", line)[0].strip()
        if not line or line.startswith("#"):
            continue
        found += [part.strip() for part in line.split(" && ")
                  if not part.strip().startswith(SETUP)]
    return found


class Walk:
    def __init__(self, folder: Path):
        self.folder = folder
        self.log: list[str] = []
        # (wall, CPU seconds, command), printed at the end: pytest -s shows them
        self.seconds: list[tuple[float, float, str]] = []

    def newest(self, pipeline: str | None = None, skip: int = 0) -> str:
        from flowopt.store import Store

        store = Store.open(self.folder / ".flowopt", create=False)
        try:
            return store.runs(pipeline=pipeline, limit=skip + 1)[skip].run_id
        finally:
            store.close()

    def substitute(self, command: str) -> str:
        if "<run-id" in command:
            command = re.sub(r"<run-id(-prefix)?>", self.newest()[:8], command)
        if re.search(r"\b(3fa2|91c0)\b", command):
            command = re.sub(r"\b3fa2\b", self.newest("quickstart")[:8], command)
            command = re.sub(r"\b91c0\b", self.newest("quickstart", skip=1)[:8], command)
        return command

    def run(self, command: str) -> subprocess.CompletedProcess | None:
        command = self.substitute(command)
        words = shlex.split(command)
        if "--executor" in words and words[words.index("--executor") + 1] == "ray" \
                and importlib.util.find_spec("ray") is None:
            self.seconds.append((0.0, 0.0, f"{command}  [skipped: the 'ray' extra is not installed]"))
            return None
        if words[:2] == ["flowopt", "ui"]:
            return self.serve(command, words)
        if words[0] == "flowopt":
            argv = [sys.executable, "-m", "flowopt", *words[1:]]
            if words[1] == "run" and words[2] in FAST:
                argv += [arg for item in FAST[words[2]] for arg in ("-s", item)]
        elif words[0] in ("python", "python3"):
            argv = [sys.executable, *words[1:], *SCRIPT_ARGS.get(words[1], [])]
        else:
            raise AssertionError(f"the README runs a command the walk does not know: {command}")
        start, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True, timeout=600)
        self.seconds.append((time.perf_counter() - start, _children_cpu() - cpu, command))
        self.log.append(f"$ {command}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        assert done.returncode == 0, "\n".join(self.log[-3:])
        return done

    def serve(self, command: str, words: list[str]) -> None:
        """`flowopt ui` serves until stopped: start it (on a free port, not the README's
        8321, which may be taken), check that the page and the runs answer, stop it."""
        import socket
        import urllib.request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        start = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "flowopt", *words[1:], "--port", str(port)],
                                  cwd=self.folder, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                    runs = json.loads(urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/api/runs", timeout=10).read())
                    break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, \
                        f"$ {command}\n{server.stdout.read() if server.poll() is not None else ''}"
                    time.sleep(0.2)
            assert b"flowopt" in page and runs["total"] > 0
        finally:
            server.terminate()
            server.wait(timeout=10)
        self.seconds.append((time.perf_counter() - start, 0.0, command))

    def script(self, name: str, body: str) -> subprocess.CompletedProcess:
        for before, after in SNIPPET_EDITS:
            body = body.replace(before, after)
        (self.folder / name).write_text(body, encoding="utf-8")
        return self.run(f"python {name}")


@pytest.mark.slow
def test_a_new_user_walks_the_readme_without_an_error_or_a_surprise(tmp_path):
    for folder in ("pipelines", "examples"):  # the README's commands run from the repository root
        shutil.copytree(ROOT / folder, tmp_path / folder)
    walk = Walk(tmp_path)
    seen: dict[str, list[subprocess.CompletedProcess]] = {}
    for index, (language, body) in enumerate(readme_blocks()):
        if language == "yaml":
            (tmp_path / "pipeline.yaml").write_text(body, encoding="utf-8")
            seen["validate"] = [walk.run("flowopt validate pipeline.yaml")]
            walk.run("flowopt run pipeline.yaml")
        elif language == "python":
            seen[f"snippet {index}"] = [walk.script(f"snippet_{index}.py", body)]
        elif language == "bash":
            for command in commands(body):
                seen.setdefault(command, []).append(walk.run(command))
        else:
            raise AssertionError(f"a README block in '{language}' is not walked")

    # What the README says these commands show.
    first, again = seen["flowopt run pipelines/quickstart.yaml"]
    assert "0/5 nodes from cache" in first.stdout and "5/5 nodes from cache" in again.stdout
    assert "valid" in seen["validate"][0].stdout
    tuned = json.loads(seen["flowopt run pipelines/tune_random.yaml --json"][0].stdout)
    assert set(tuned["best"]["params"]) == {"lr", "hidden"}
    for wall, cpu, command in walk.seconds:
        print(f"{wall:6.1f} s wall {cpu:6.1f} s CPU  {command}")
    print(f"total {sum(w for w, _, _ in walk.seconds):.0f} s wall, "
          f"{sum(c for _, c, _ in walk.seconds):.0f} s CPU")
    query = seen['flowopt runs list --where "metrics.accuracy > 0.9 and params.lr < 0.01" '
                 '--order-by "metrics.accuracy desc"'][0]
    assert "quickstart" in query.stdout
    assert (tmp_path / "report.html").stat().st_size > 1000
    assert (tmp_path / "pop.html").is_file() and (tmp_path / "digits.yaml").is_file()
    # The README shows a tuned run's trials right after running it again (from the cache).
    trials = json.loads(seen["flowopt runs show <run-id> --json"][0].stdout)["trials"]
    assert len(trials) == 3 and {"number", "params", "objective", "status"} <= set(trials[0])
