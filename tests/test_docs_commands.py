"""The documentation cannot drift: every `latentcomp ...` line of a fenced ```bash block in README.md and
docs/*.md, every ```python block there, and every example in `latentcomp CMD --help` is run here, on the
bundled models with tiny sizes.

Per page, in a fresh folder that already holds the files the pages use as inputs (faces/ from
`latentcomp data render toyfaces --n 8`, and the masks hair.png, top.png, glasses.png from `latentcomp
mask`), the page's blocks run in order, so a command may use what an earlier one wrote. Sizes are made
tiny (`TINY`: --n, --steps, ... are capped; commands that have --quick get it; `TINY_PYTHON` caps `n=` in
python blocks; `tiny_defaults` lowers the few sizes that no option reaches). Commands that cannot run
here are skipped by `SKIP` (a substring of the command and the reason), which stays short.
Conventions for pages: ```bash blocks hold runnable commands (one per line, `\\` continues a line);
option synopses with placeholders go in ```text blocks; ```python blocks are runnable as written.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from latentcomp.cli import EXAMPLES, main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REAL = ROOT.parent / "shared" / "real"

#: substring of a command -> why it is not run by this test
SKIP = {
    "latentcomp serve": "runs until stopped; tests/test_web_api.py and test_web_browser.py cover it",
    "/ckpt/": "needs your own checkpoint",
    "/path/": "needs your own file",
    "inception": "needs Inception weights, which are never downloaded",
    "--lpips alex": "needs ImageNet AlexNet weights in the torch hub cache",
    "--lpips vgg": "needs ImageNet VGG weights in the torch hub cache",
    "masked-lpips": "needs ImageNet AlexNet weights in the torch hub cache",
}

#: option -> the largest value used here
TINY = {
    "--n": 4,
    "--steps": 3,
    "--batch": 4,
    "--refine": 2,
    "--finetune": 2,
    "--opt-steps": 3,
    "--refine-steps": 2,
    "--k": 3,
    "--n-train": 60,
    "--n-eval": 8,
    "--n-compare": 6,
    "--test-size": 4,
    "--eval-every": 2,
    "--checkpoint-every": 2,
    "--minutes": 0.2,
    "--max-minutes": 0.2,
    "--pool-size": 64,
    "--d-warmup": 1,
}
#: per command (first words), options whose tiny value must be larger than TINY's
TINY_FOR = {
    "directions compute": {"--n": 120},
    "data render": {"--n": 8},
    "sample": {"--n": 16},
    "gan evaluate": {"--n": 16},
    "analyzer eval": {"--n": 16},
    "regressor evaluate": {"--n": 8},
    "evaluate composition": {"--n": 4},
    "metrics": {"--n": 8},
}
#: per command, options added with a tiny value where the command does not give them
TINY_ADD = {
    "directions compute": {"--n": "120"},
    "gan train": {"--pool-size": "64", "--steps": "3"},
    "regressor train": {"--steps": "3", "--test-size": "4"},
    "evaluate composition": {"--opt-steps": "3", "--refine-steps": "2"},
    "analyzer train": {"--steps": "3"},
    "gan evaluate": {"--n": "16"},
    "regressor evaluate": {"--n": "8"},
    "analyzer eval": {"--n": "16"},
    # one walk each way (closed form + steer, steer only); every transform: tests/test_geometry.py
    "directions geometry": {"--n": "4", "--steps": "3", "--transform": "zoom,brightness"},
    "probe omissions": {"--n": "2", "--steps": "3"},
    "invert": {"--steps": "3"},
}
#: keyword -> the largest value used in ```python blocks (`n=500` runs as `n=60`)
TINY_PYTHON = {"n": 60}
#: samples of the closed-form geometric walks (`directions geometry`; no option reaches it)
TINY_CLOSED_FORM_SAMPLES = 8
#: commands with --quick
QUICK = ("probe tradeoff", "probe independence", "probe parts", "probe rebalance", "probe report")
QUICK += ("directions evaluate", "demo")


def fenced_blocks(text: str):
    """(language, code) of every fenced block."""
    for m in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        yield m.group(1), m.group(2)


def commands(code: str) -> list[str]:
    """The `latentcomp ...` lines of a bash block (continuations joined, comments dropped)."""
    out, buf = [], ""
    for line in code.splitlines():
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        if buf.strip().startswith("latentcomp "):
            out.append(" ".join(buf.split()))
        buf = ""
    return out


def page_items(page: Path):
    """('bash', command) and ('python', code) items of a page, in order."""
    for lang, code in fenced_blocks(page.read_text()):
        if lang == "bash":
            for cmd in commands(code):
                yield "bash", cmd
        elif lang == "python":
            yield "python", code


def command_key(args: list[str]) -> str:
    """'regressor train' for ['regressor', 'train', ...], 'compose' for ['compose', '--part', ...]."""
    from latentcomp.cli import app

    groups = {g.name for g in app.registered_groups}
    return " ".join(args[:2]) if args[0] in groups and len(args) > 1 else args[0]


def tiny(cmd: str) -> list[str]:
    args = shlex.split(cmd, comments=True)[1:]
    words = command_key(args)
    caps = dict(TINY)
    for key, extra in TINY_FOR.items():
        if words == key or args[0] == key:
            caps.update(extra)
    if "--resume" in args:  # a resumed run needs more steps than the run it continues
        caps["--steps"] = 2 * TINY["--steps"]
    for opt, value in TINY_ADD.get(words, {}).items():
        if opt not in args:
            args += [opt, value]
    for i, a in enumerate(args[:-1]):
        if a in caps:
            value = float(args[i + 1])
            cap = caps[a]
            args[i + 1] = str(type(cap)(min(value, cap))) if value > cap else args[i + 1]
    if words in QUICK and "--quick" not in args:
        args.append("--quick")
    if words == "directions compute" and "geometric" in args:  # a Jacobian per sample: fewer samples
        args[args.index("--n") + 1] = "8"
    out = args[args.index("--out") + 1] if "--out" in args[:-1] else None
    if words == "data render" and out and Path(out).is_dir() and "--overwrite" not in args:
        args.append("--overwrite")  # the page folder already holds the standard inputs
    return args


def tiny_python(code: str) -> str:
    """A ```python block with its keyword sizes capped by TINY_PYTHON."""

    def cap(m: re.Match) -> str:
        key, value = m.group(1), int(m.group(2))
        return f"{key}={min(value, TINY_PYTHON[key])}"

    return re.sub(rf"\b({'|'.join(TINY_PYTHON)})=(\d+)\b", cap, code)


def skip_reason(text: str) -> str | None:
    return next((why for key, why in SKIP.items() if key in text), None)


def run_cli(args: list[str]) -> None:
    try:
        main(args)
    except SystemExit as e:
        if e.code not in (0, None):
            raise AssertionError(f"exit {e.code}") from None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The input files the pages use, made once and copied into each page's folder."""
    d = tmp_path_factory.mktemp("inputs")
    import os

    cwd = os.getcwd()
    os.chdir(d)
    try:
        run_cli(["data", "render", "toyfaces", "--n", "8", "--out", "faces"])
        run_cli(["mask", "--part-map", "faces/000005_parts.png", "--part", "hair", "--out", "hair.png"])
        run_cli(["mask", "--part-map", "faces/000003_parts.png", "--part", "glasses", "--out", "glasses.png"])
        run_cli(["mask", "--rect", "0,0,64,32", "--out", "top.png"])
    finally:
        os.chdir(cwd)
    return d


@pytest.fixture
def tiny_defaults(monkeypatch):
    """Sizes that no command option reaches, made tiny for these runs (as TINY does for options)."""
    import functools

    from latentcomp.navigate import geometry

    tiny_closed_form = functools.partial(geometry.closed_form_directions, n=TINY_CLOSED_FORM_SAMPLES)
    monkeypatch.setattr(geometry, "closed_form_directions", tiny_closed_form)


def prepare(workdir: Path, inputs: Path) -> None:
    import shutil

    shutil.copytree(inputs, workdir, dirs_exist_ok=True)
    for name in ("renders", "outputs", "masks"):  # image folders paired by file name (metrics)
        (workdir / name).mkdir()
    for f in sorted((workdir / "faces").glob("00000[0-3].png")):
        shutil.copy(f, workdir / "renders" / f.name)
        other = workdir / "faces" / f"{f.stem[:-1]}{int(f.stem[-1]) + 4}.png"
        shutil.copy(other, workdir / "outputs" / f.name)
        shutil.copy(workdir / "top.png", workdir / "masks" / f.name)
    (workdir / "examples").symlink_to(ROOT / "examples")  # python:examples/...:build as in the docs


def needs_real(text: str) -> bool:
    return "mnist" in text and not REAL.is_dir()


def run_items(items, workdir: Path, where: str, capsys) -> list[str]:
    ran = []
    for kind, text in items:
        if skip_reason(text) or needs_real(text):
            continue
        if kind == "bash":
            args = tiny(text)
            try:
                run_cli(args)
            except AssertionError as e:
                err = capsys.readouterr().err.strip().splitlines()[-3:]
                raise AssertionError(
                    f"{where}: `{text}` (run as {shlex.join(args)}) failed: {e}; {err}"
                ) from None
            ran.append(text)
        else:
            try:
                exec(compile(tiny_python(text), where, "exec"), {"__name__": "__docs__"})
            except Exception as e:
                raise AssertionError(f"{where}: python block failed: {type(e).__name__}: {e}\n{text}") from e
            ran.append("python block")
    return ran


# pages whose commands with this prefix need nothing from the page's other commands (each reads the bundled
# models): each runs as a test of its own, so that parallel test workers share the page's cost
SPLIT_COMMANDS = {"probe.md": "latentcomp probe "}


def page_parts() -> list:
    """(page, item indices or None for all) per test: the whole page, or its independent commands one by one
    and then the rest in order."""
    parts = []
    for page in PAGES:
        prefix = SPLIT_COMMANDS.get(page.name)
        if prefix is None:
            parts.append(pytest.param(page, None, id=page.name))
            continue
        items = list(page_items(page))
        alone = [i for i, (kind, text) in enumerate(items) if kind == "bash" and text.startswith(prefix)]
        parts += [pytest.param(page, [i], id=f"{page.name}:{i}") for i in alone]
        rest = [i for i in range(len(items)) if i not in alone]
        parts.append(pytest.param(page, rest, id=f"{page.name}:rest"))
    return parts


@pytest.mark.parametrize("page,part", page_parts())
def test_page_commands_run(page, part, inputs, tiny_defaults, tmp_path, monkeypatch, capsys):
    if page.name == "own-gan.md" and not REAL.is_dir():
        pytest.skip(f"the tutorial uses the real MNIST DCGAN of {REAL}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["latentcomp"])
    prepare(tmp_path, inputs)
    if page.name == "own-gan.md":  # the page's commands use what the example script writes
        import importlib.util

        spec = importlib.util.spec_from_file_location("own_gan", ROOT / "examples" / "own_gan.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(["--out", "runs/own-gan", "--steps", "3", "--n-eval", "8", "--batch", "4"])
    items = list(page_items(page))
    run_items(items if part is None else [items[i] for i in part], tmp_path, page.name, capsys)


def test_help_examples_parse_and_run(inputs, tiny_defaults, tmp_path, monkeypatch, capsys):
    """Every example parses (options, types, required ones); those whose command no page runs also run."""
    import click
    import typer

    from latentcomp.cli import app

    root = typer.main.get_command(app)
    for key, example in EXAMPLES.items():
        args = shlex.split(example)[1:]
        assert command_key(args).startswith(key.split()[0]), (key, example)
        cmd, rest = root, args
        while isinstance(cmd, click.Group):
            cmd, rest = cmd.get_command(click.Context(cmd), rest[0]), rest[1:]
        cmd.make_context(key, list(rest))  # raises on an unknown option or a bad value
    documented = {
        command_key(shlex.split(text, comments=True)[1:])
        for page in PAGES
        for kind, text in page_items(page)
        if kind == "bash"
    }
    todo = [e for e in EXAMPLES.values() if command_key(shlex.split(e)[1:]) not in documented]
    monkeypatch.chdir(tmp_path)
    prepare(tmp_path, inputs)
    run_items([("bash", e) for e in todo], tmp_path, "latentcomp --help examples", capsys)


def test_extraction_and_rewrites():
    code = "latentcomp compose --part a.png \\\n    --part b.png --out o.png   # note\necho x\n"
    assert commands(code) == ["latentcomp compose --part a.png --part b.png --out o.png # note"]
    assert tiny("latentcomp regressor train --generator G --steps 20000 --out r") == [
        "regressor", "train", "--generator", "G", "--steps", "3", "--out", "r", "--test-size", "4",
    ]  # fmt: skip
    assert tiny("latentcomp directions compute --model toyfaces --method supervised --n 1000")[-1] == "120"
    assert tiny("latentcomp probe report --model toyfaces --out o")[-1] == "--quick"
    assert tiny_python("f(n=500, k=5)\ng(n=4, seed=0)\n") == "f(n=60, k=5)\ng(n=4, seed=0)\n"
    assert "--quick" not in tiny("latentcomp probe omissions --model toyfaces --out o")
    assert skip_reason("latentcomp serve --model toyfaces") and not skip_reason("latentcomp compose")
    langs = [lang for lang, _ in fenced_blocks("```bash\nls\n```\ntext\n```python\nx = 1\n```\n")]
    assert langs == ["bash", "python"]


def test_a_broken_command_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="exit 2"):
        run_items([("bash", "latentcomp compose --part missing.png --out o.png")], tmp_path, "x", capsys)
    with pytest.raises(AssertionError, match="python block failed"):
        run_items([("python", "import latentcomp as lc\nlc.nope\n")], tmp_path, "x", capsys)
