import pytest
import torch
import torch.nn.functional as F

from wp import WPError, checkpoint, pool
from wp.kmeans import kmeans, kmeans_pytorch


def km(x, k, **given):
    """kmeans with the settings these tests were written for (every setting is a required argument)."""
    return kmeans(x, k, **{"seed": 0, "init": "kmeans++", "max_iter": 100, "tol": 1e-4, **given})


@pytest.fixture(scope="module")
def vectors(trained_tinyconv):
    model = checkpoint.build(checkpoint.load(trained_tinyconv))
    x, counts = pool.model_vectors(model, pool.pooled_layers(model))
    assert x.shape == (9_600, 8) and counts == [3_200, 6_400]
    return x


def test_kmeans_is_seeded_and_deterministic(vectors):
    a = km(vectors, 16, seed=3)
    b = km(vectors, 16, seed=3)
    c = km(vectors, 16, seed=4)
    assert torch.equal(a.centers, b.centers) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.centers, c.centers)


def test_kmeans_labels_are_cosine_nearest_and_centres_are_member_means(vectors):
    res = km(vectors, 16, seed=0, max_iter=500, tol=0)
    assert res.converged
    assert torch.equal(res.labels, pool.assign(vectors, res.centers))
    for k in range(16):
        members = vectors[res.labels == k]
        assert len(members) > 0
        assert torch.allclose(res.centers[k], members.mean(0), atol=1e-5)
    sim = (F.normalize(vectors, dim=1) * F.normalize(res.centers[res.labels], dim=1)).sum(1)
    assert res.inertia == pytest.approx(float((1 - sim).sum()), rel=1e-4)


def test_kmeans_improves_on_its_initialisation(vectors):
    one = km(vectors, 32, seed=0, max_iter=1)
    many = km(vectors, 32, seed=0, max_iter=100)
    assert many.inertia < one.inertia


def test_kmeans_plus_plus_beats_random_rows(vectors):
    pp = km(vectors, 32, seed=0, init="kmeans++", max_iter=1)
    rnd = km(vectors, 32, seed=0, init="random", max_iter=1)
    assert pp.inertia < rnd.inertia


def test_empty_clusters_are_reseeded():
    # 3 distinct directions, duplicated: random init must pick duplicates and leave clusters empty
    base = torch.eye(8)[:3]
    x = base.repeat(50, 1)
    res = km(x, 3, seed=0, init="random", max_iter=50)
    assert not torch.isnan(res.centers).any()
    assert res.inertia == pytest.approx(0.0, abs=1e-5)
    assert len(torch.unique(res.labels)) == 3


def test_pool_size_out_of_range_is_an_error(vectors):
    with pytest.raises(WPError, match="pool size 1"):
        km(vectors, 1)


def test_matches_the_reference_library_on_real_vectors(vectors):
    ours = km(vectors, 32, seed=0)
    ref = kmeans_pytorch(vectors, 32, seed=0)
    assert ref.centers.shape == ours.centers.shape == (32, 8)
    # same objective; ours (k-means++ init) must be at least as good within a small margin
    assert ours.inertia <= ref.inertia * 1.05
