"""python:MODULE_OR_FILE.py:FUNCTION — bring your own generator."""

import textwrap

import pytest
import torch
from torch import nn

from latentcomp import Generator, LatentcompError, load_generator
from latentcomp.generators.custom import CustomGenerator

GEN_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn
    from latentcomp.generators.custom import CustomGenerator

    class Net(nn.Module):
        def __init__(self, nz=6, channels=1, res=12):
            super().__init__()
            self.res, self.channels = res, channels
            self.fc = nn.Linear(nz, channels * res * res)

        def forward(self, z):
            return torch.tanh(self.fc(z)).view(-1, self.channels, self.res, self.res)

    def build(prior="normal", res=12):
        torch.manual_seed(0)
        return CustomGenerator(Net(res=res), latent_shape=(6,), resolution=res, channels=1, prior=prior)

    def build_callable_prior():
        torch.manual_seed(0)
        def prior(n, generator):
            return torch.rand(n, 6, generator=generator) * 0.5
        return CustomGenerator(Net(), latent_shape=6, resolution=12, channels=1, prior=prior)

    def wrong_shape():
        return CustomGenerator(Net(res=12), latent_shape=(6,), resolution=16, channels=1)

    def bare_module():
        return Net()

    def not_a_model():
        return 42

    def broken():
        raise RuntimeError("weights missing")

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def gen_file(tmp_path):
    p = tmp_path / "my_gen.py"
    p.write_text(GEN_FILE)
    return p


def check_generator(G, shape, n=3):
    z = G.sample_latent(n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, G.sample_latent(n, generator=torch.Generator().manual_seed(0)))
    x = G(z)
    assert x.shape == (n, *shape) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    assert torch.equal(G(z.clone()), x)
    z.requires_grad_(True)
    G(z).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in G.parameters())


def test_file_spec(gen_file):
    G = load_generator(f"python:{gen_file}:build")
    assert isinstance(G, CustomGenerator)
    assert (G.latent_shape, G.resolution, G.channels, G.prior) == ((6,), 12, 1, "normal")
    assert G.spec == f"python:{gen_file}:build"
    check_generator(G, (1, 12, 12))
    assert "CustomGenerator(Net)" in G.describe()
    assert G.features(torch.randn(2, 6), "module.fc").shape == (2, 144)


def test_priors_and_options(gen_file):
    G = load_generator(f"python:{gen_file}:build", prior="uniform", res=8)
    z = G.sample_latent(500, generator=torch.Generator().manual_seed(0))
    assert G.resolution == 8 and z.min() >= -1 and z.max() <= 1 and z.min() < -0.9
    G = load_generator(f"python:{gen_file}:build_callable_prior")
    z = G.sample_latent(100, generator=torch.Generator().manual_seed(1))
    assert z.shape == (100, 6) and z.min() >= 0 and z.max() <= 0.5
    check_generator(G, (1, 12, 12))


def test_module_spec(tmp_path, monkeypatch):
    pkg = tmp_path / "lc_test_pkg_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "gen.py").write_text(GEN_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    G = load_generator("python:lc_test_pkg_xyz.gen:build")
    check_generator(G, (1, 12, 12))


def test_returning_a_generator_subclass(tmp_path):
    (tmp_path / "sub.py").write_text(
        "from latentcomp import load_generator\n"
        "def build():\n    return load_generator('builtin:tiny-random')\n"
    )
    G = load_generator(f"python:{tmp_path / 'sub.py'}:build")
    assert isinstance(G, Generator) and G.resolution == 32


def test_wrapper_validation():
    net = nn.Linear(4, 3 * 2 * 2)
    with pytest.raises(LatentcompError, match="nn.Module"):
        CustomGenerator(lambda z: z, latent_shape=(4,), resolution=2)
    with pytest.raises(LatentcompError, match="prior 'cauchy'"):
        CustomGenerator(net, latent_shape=(4,), resolution=2, prior="cauchy")
    with pytest.raises(LatentcompError, match="latent_shape"):
        CustomGenerator(net, latent_shape=(0,), resolution=2)
    G = CustomGenerator(net, (4,), resolution=2, prior=lambda n, g: torch.zeros(n, 5))
    with pytest.raises(LatentcompError, match=r"expected a tensor of shape \(n, 4\)"):
        G.sample_latent(3)


def test_errors(gen_file, tmp_path):
    spec = f"python:{gen_file}"
    cases = {
        f"python:{tmp_path / 'absent.py'}:build": "python generator file not found: .*absent.py",
        "python:lc_no_such_module_abc.gen:build": "module 'lc_no_such_module_abc.gen' not found",
        f"{spec}:nope": "has no function 'nope'; callables there: .*build",
        f"{spec}:NOT_CALLABLE": "NOT_CALLABLE is a int, not a function",
        f"{spec}:bare_module": "returned Net, not a Generator; wrap the module: CustomGenerator",
        f"{spec}:not_a_model": "returned int, not a Generator",
        f"{spec}:broken": r"broken\(\) failed \(RuntimeError: weights missing\)",
        f"{spec}:wrong_shape": r"returned images of shape \(2, 1, 12, 12\) .*expected \(2, 1, 16, 16\)",
        f"python:{gen_file}": "must be python:MODULE_OR_FILE.py:FUNCTION",
    }
    for s, pattern in cases.items():
        with pytest.raises(LatentcompError, match=pattern) as e:
            load_generator(s)
        assert "\n" not in str(e.value)
    bad = tmp_path / "syntax.py"
    bad.write_text("def build(:\n")
    with pytest.raises(LatentcompError, match="syntax.py: error while importing it \\(SyntaxError"):
        load_generator(f"python:{bad}:build")
    with pytest.raises(LatentcompError, match="rejected the options"):
        load_generator(f"{spec}:build", colour="red")
