"""The training step's fast paths (issue 14, section 3): one transform of ``W`` shared by the
forward and backward phases, ``W.T`` as a view, the weight gradient without a transposing copy.
A step on golden-fast must count exactly what the same step counts through a backend that takes
none of them (contiguous copies, every operand prepared on its own), for every kind of plan."""
import numpy as np
import pytest

from canna.nn.backends import Backend, get_backend
from canna.nn.mlp import MLP, ArithPlan, Counters
from canna.nn.train import sgd_step
from canna.spec.array import ArrayGeometry
from canna.spec.config import CFPUConfig

SIZES = [30, 17, 13, 5]
L = len(SIZES) - 1


def plans():
    yield "uniform t=2 b", ArithPlan.uniform(L, 2, "b")
    yield "uniform t=0 b", ArithPlan.uniform(L, 0, "b")
    yield "uniform t=3 dual", ArithPlan.uniform(L, 3, "dual")
    yield "forward only", ArithPlan.per_layer([1, None, 4], "b")
    yield "backward differs", ArithPlan([{"forward": CFPUConfig.approx(2), "backward": CFPUConfig.approx(5),
                                          "gradient": CFPUConfig.approx(2)}] * L)
    yield "other operands", ArithPlan.uniform(L, 2, "b", checked={"forward": "input", "backward": "delta",
                                                                   "gradient": "delta"})
    yield "exact", ArithPlan.exact(L)


def one_step(backend, plan, geometry):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((11, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], 11)
    model = MLP(SIZES, seed=2)
    velocity = [np.zeros_like(p) for p in model.weights + model.biases]
    c = Counters(L, geometry)
    sgd_step(model, velocity, x, y, plan, backend, c, lr=0.05, momentum=0.9, dropout=0.3,
             rng=np.random.default_rng(1))
    return model, c


@pytest.mark.parametrize("name,plan", list(plans()), ids=[n for n, _ in plans()])
@pytest.mark.parametrize("accounting", [False, True])
def test_fast_paths_count_what_separate_preparation_counts(name, plan, accounting):
    fast = get_backend("golden-fast")
    plain = Backend("plain-fast", fast.matmul)      # contiguous operands, no prepare, no matmul_t
    assert fast.strided and fast.matmul_t is not None and not plain.strided
    geometry = ArrayGeometry(7, 3) if accounting else None
    m_fast, c_fast = one_step(fast, plan, geometry)
    m_plain, c_plain = one_step(plain, plan, geometry)
    for field in ("products", "hits", "nonzero", "lane"):
        assert np.array_equal(getattr(c_fast, field), getattr(c_plain, field)), field
    for w_fast, w_plain in zip(m_fast.weights + m_fast.biases, m_plain.weights + m_plain.biases):
        assert np.allclose(w_fast, w_plain, rtol=1e-5, atol=1e-6)
    print(f"{name}, accounting {'on' if accounting else 'off'}: {c_fast.total_hits} hits of "
          f"{c_fast.total_products} products, {int(c_fast.nonzero.sum())} nonzero"
          f"{', lane totals' if accounting else ''} equal per layer and phase")


def test_forward_and_backward_share_one_transform():
    """Uniform policy b: layers 2 and 3 keep their forward transform for the backward phase,
    and its transpose is a view of it (no second transform, no copy of W)."""
    rng = np.random.default_rng(0)
    model = MLP(SIZES, seed=2)
    x = rng.standard_normal((6, SIZES[0])).astype(np.float32)
    fast = get_backend("golden-fast")
    _, cache = model.forward(x, ArithPlan.uniform(L, 2, "b"), fast, Counters(L))
    assert cache.prepared[0] is None                        # no backward for the first layer
    for i in (1, 2):
        prep = cache.prepared[i]
        assert prep is not None and prep.original is model.weights[i]
        t = prep.T
        assert t is not None and np.shares_memory(t.checked, prep.checked)
    _, cache = model.forward(x, ArithPlan.uniform(L, 2, "dual"), fast, Counters(L))
    assert all(p is None or p.T is None for p in cache.prepared)   # dual: W.T prepared on its own
    _, cache = model.forward(x, ArithPlan.per_layer([1, 2, 3]), fast, Counters(L))
    assert cache.prepared == [None] * L                     # backward exact: nothing to share
    print("uniform b: layers 2, 3 share one transform (views); dual and forward-only plans do not")


def test_native_step_is_the_plain_numpy_step():
    """The bench's native side: the driver's step on backend native is the textbook NumPy step."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((9, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], 9)
    model = MLP(SIZES, seed=3)
    velocity = [np.zeros_like(p) for p in model.weights + model.biases]
    W = [w.copy() for w in model.weights]
    b = [v.copy() for v in model.biases]
    sgd_step(model, velocity, x, y, ArithPlan.exact(L), "native", None, lr=0.1, momentum=0.9,
             dropout=0.0, rng=np.random.default_rng(0))
    hs, zs, h = [], [], x
    for i in range(L):
        hs.append(h)
        z = h @ W[i] + b[i]
        zs.append(z)
        h = np.clip(z, 0, 6)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    d = p / p.sum(axis=1, keepdims=True)
    d[np.arange(9), y] -= 1
    d = (d / 9).astype(np.float32)
    for i in reversed(range(L)):
        gw, gb = hs[i].T @ d, d.sum(axis=0)
        if i:
            d = ((d @ W[i].T) * ((zs[i - 1] > 0) & (zs[i - 1] < 6))).astype(np.float32)
        assert np.allclose(model.weights[i], W[i] - 0.1 * gw, rtol=1e-5, atol=1e-6)
        assert np.allclose(model.biases[i], b[i] - 0.1 * gb, rtol=1e-5, atol=1e-6)
    print(f"native step on {SIZES}: weights and biases as the plain NumPy step's")


@pytest.mark.parametrize("name,plan", list(plans()), ids=[n for n, _ in plans()])
def test_fused_update_and_transform_change_nothing(name, plan):
    """Steps that carry the update's transform to the next step (the SGD update and the next
    forward phase's transform in one pass) give bit-identical weights, velocities and counters
    to steps that update with NumPy and prepare afresh; a plan change drops what was carried."""
    rng = np.random.default_rng(8)
    data = [(rng.standard_normal((7, SIZES[0])).astype(np.float32), rng.integers(0, SIZES[-1], 7))
            for _ in range(4)]
    runs = []
    for carry in (None, {}):
        model = MLP(SIZES, seed=5)
        velocity = [np.zeros_like(p) for p in model.weights + model.biases]
        c = Counters(L)
        for i, (x, y) in enumerate(data):
            step_plan = plan if i != 2 else ArithPlan.uniform(L, 6, "b")    # a level change
            sgd_step(model, velocity, x, y, step_plan, "golden-fast", c, lr=0.05, momentum=0.9,
                     dropout=0.2, rng=np.random.default_rng(i), carry=carry)
        runs.append((model, velocity, c, carry))
    (m0, v0, c0, _), (m1, v1, c1, carry) = runs
    for a, b in zip(m0.weights + m0.biases + v0, m1.weights + m1.biases + v1):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    for field in ("products", "hits", "nonzero"):
        assert np.array_equal(getattr(c0, field), getattr(c1, field)), field
    enabled = [i for i in range(L) if plan.config(i, "forward").enabled and plan.checked_right("forward")]
    assert sorted(carry) == enabled
    print(f"{name}: 4 steps with the fused update bit-identical to NumPy's update ({c1.total_hits} hits, "
          f"{len(carry)} layers carried)")


def test_weight_gradient_reads_delta_in_place():
    """On a strided backend the weight gradient ``x.T @ delta`` gets ``delta.T`` as a view (no
    transposing copy), native and golden-fast alike; a backend that is not strided gets a
    C-contiguous copy."""
    from canna.nn.backends import oriented
    rng = np.random.default_rng(2)
    x = rng.standard_normal((9, 6)).astype(np.float32)
    delta = rng.standard_normal((9, 4)).astype(np.float32)
    a, b = oriented(x.T, delta, checked_right=False, strided=True)
    assert np.shares_memory(a, delta) and a.flags.f_contiguous and np.shares_memory(b, x)
    a2, _ = oriented(x.T, delta, checked_right=False, strided=False)
    assert a2.flags.c_contiguous and not np.shares_memory(a2, delta) and np.array_equal(a, a2)
    for name in ("native", "golden-fast"):
        assert get_backend(name).strided
    print("weight gradient: delta.T as a view on strided backends, a copy otherwise")
