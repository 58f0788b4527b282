"""Batching's promise: compatible tasks share a pipeline call, and an image is the same bytes
alone or in a batch.

Each family's tiny pipeline runs in a subprocess per CPU kernel capability the machine supports
(`tests.support.batch_check`), through the server's own grouping and call code; the grouping
rules are checked directly.
"""

from __future__ import annotations

import pytest

from deployments.calls import Job
from deployments.registry import FAMILIES
from tests.support.batch_check import params, run_check, runner, supported_capabilities
from tests.support.families import NEEDS_TORCHVISION, family_param

TEXT_TO_IMAGE = sorted(n for n, s in FAMILIES.items() if "text-to-image" in s.pipelines)
RUNNABLE = [n for n in TEXT_TO_IMAGE if n not in NEEDS_TORCHVISION]


CAPABILITIES = supported_capabilities()


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """Alone-against-batched results per CPU kernel capability, each run once when first asked
    for (one subprocess per capability: PyTorch fixes its kernels per process)."""
    tiny_dir = tmp_path_factory.mktemp("tiny-inproc")
    done: dict[str, dict] = {}

    def get(capability: str) -> dict:
        if capability not in done:
            done[capability] = run_check(capability, tiny_dir, RUNNABLE,
                                         tiny_dir / f"{capability}.json")
            assert done[capability]["capability"] == capability.upper(), done[capability]
        return done[capability]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("capability", CAPABILITIES)
def test_position_sensitive_functions_are_invariant(capability, checks):
    """silu, gelu, sigmoid, softmax, norms, ... on every sample alone and at every position of
    a batch give the same bits once the pipeline runs batch-invariant."""
    ops = checks(capability)["ops"]
    assert ops["invariant"] == {}, ops


@pytest.mark.slow
@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("family", [family_param(n) for n in TEXT_TO_IMAGE])
def test_same_bytes_alone_or_in_a_batch(family, capability, checks):
    spec = FAMILIES[family]
    result = checks(capability)["families"][family]
    if not (spec.single_prompt or spec.batch_by_prompt):
        assert result["groups"] == 1  # different prompts and seeds share one call
    else:
        assert result["groups"] == 3  # only the two tasks with one prompt share a call
    assert result["mismatched"] == [], result  # each task alone == in the batch, both orders
    # one generator per image: different seeds in one task are different images
    assert result["distinct_seeds_differ"], result


@pytest.mark.slow
@pytest.mark.parametrize("capability", CAPABILITIES)
def test_image_to_image_batches_per_input(capability, checks):
    result = checks(capability)["families"]["flux:image-to-image"]
    assert result["groups"] == 1 and result["mismatched"] == [], result
    assert result["inputs_kept"]  # each task kept its own input image


def test_incompatible_tasks_never_share_a_call():
    r = runner(FAMILIES["flux"], max_batch_images=4)
    base = dict(prompt="p", seeds=[1])
    jobs = [Job(params(0, **base), None), Job(params(1, **base, width=128), None),
            Job(params(2, **base, num_inference_steps=3), None),
            Job(params(3, **base, guidance_scale=5.0), None),
            Job(params(4, **base, task="image-to-image", strength=0.5, image_keys=["k"]), None),
            Job(params(5, **base), None)]
    groups = [[j.task_id for j in g] for g in r.batch_groups(jobs)]
    assert sorted(groups) == [["t0", "t5"], ["t1"], ["t2"], ["t3"], ["t4"]]
    # a group holds at most max_batch_size images; a bigger task runs alone
    jobs = [Job(params(i, prompt="p", seeds=list(range(n))), None)
            for i, n in enumerate((3, 2, 6, 1))]
    groups = [[j.task_id for j in g] for g in r.batch_groups(jobs)]
    assert groups == [["t0"], ["t1"], ["t2"], ["t3"]] or groups == [["t0", "t3"], ["t1"], ["t2"]]


def test_edits_with_their_own_image_do_not_merge():
    r = runner(FAMILIES["flux-kontext"])
    jobs = [Job(params(i, "make it blue", [1], task="edit", image_keys=[f"k{i}"]), None)
            for i in range(3)]
    assert len(r.batch_groups(jobs)) == 3
