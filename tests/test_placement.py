"""The dispatcher's policy, pure: held models first, longest work first, splits only when they pay."""

from symoe_eval.engines import GenerationRequest, SamplingParams
from symoe_eval.runtime.placement import Chunk, Dispatcher, make_chunks


def chunks(model, n, work=100.0):
    return [Chunk(model, [i], work) for i in range(n)]


def test_a_worker_keeps_to_the_model_it_holds():
    d = Dispatcher(chunks("a", 3) + chunks("b", 5), load_cost=50)
    assert d.next_for("w0", holds=["a"]).model == "a"


def test_fresh_models_go_longest_first_and_not_to_two_workers_while_others_wait():
    d = Dispatcher(chunks("small", 1) + chunks("big", 4) + chunks("mid", 2), load_cost=50)
    first, second, third = (d.next_for(w, holds=[]) for w in ("w0", "w1", "w2"))
    assert [first.model, second.model, third.model] == ["big", "mid", "small"]


def test_a_split_happens_only_when_it_shortens_the_stage():
    d = Dispatcher(chunks("only", 10), load_cost=50)
    assert d.next_for("w0", holds=[]).model == "only"
    assert d.next_for("w1", holds=[]).model == "only"  # 900 left: (900 + 50) / 2 beats 900 / 1
    costly = Dispatcher(chunks("only", 3), load_cost=500)
    costly.next_for("w0", holds=[])
    assert costly.next_for("w1", holds=[]) is None  # 200 left: (200 + 500) / 2 is later than 200 / 1


def test_a_failed_chunk_is_run_again_first():
    d = Dispatcher(chunks("a", 2), load_cost=0)
    lost = d.next_for("w0", holds=[])
    d.failed("w0", lost)
    assert lost.attempts == 1 and d.next_for("w1", holds=[]) is lost


def test_loads_stay_at_most_distinct_models_plus_splits():
    """A simulated stage: 16 models of skewed size on 4 workers, counting loads."""
    sizes = [40, 20, 12, 8, 6, 5, 4, 3, 3, 2, 2, 2, 1, 1, 1, 1]
    d = Dispatcher([c for m, n in enumerate(sizes) for c in chunks(f"m{m}", n)], load_cost=30)
    holds = {w: [] for w in ("w0", "w1", "w2", "w3")}
    loads = splits = 0
    clock = {w: 0.0 for w in holds}
    running = {}
    while not d.done:
        for w in holds:
            if w not in running and (chunk := d.next_for(w, holds[w])) is not None:
                if chunk.model not in holds[w]:
                    loads += 1
                    splits += any(chunk.model in h for o, h in holds.items() if o != w)
                    holds[w] = [chunk.model]
                    clock[w] += 30
                running[w] = chunk
        w = min(running, key=lambda x: clock[x] + running[x].work)
        clock[w] += running[w].work
        d.finished(w, running.pop(w))
    assert loads <= len(sizes) + splits
    assert max(clock.values()) <= 1.15 * max(sum(sizes) * 100 / 4 + 30 * 16 / 4, 100 + 30)


def test_chunks_are_whole_micro_batches_longest_first():
    """A worker's chunk is whole micro-batches of the stage, so a request meets the same
    batch-mates with any number of workers; big groups get fewer, bigger chunks, shrinking at the end."""
    from symoe_eval.engines.batching import micro_batches

    reqs = [GenerationRequest.user("x" * n, SamplingParams(max_tokens=10)) for n in (10, 4000, 20, 3000)]
    assert [c.indices for c in make_chunks("a", [0, 1, 2, 3], reqs, size=2)] == [[3, 1], [0, 2]]
    many = [GenerationRequest.user(f"q{n:03d}" + "x" * (n % 7), SamplingParams(max_tokens=10)) for n in range(400)]
    for n, workers, first in ((40, 4, 4), (400, 4, 28), (400, 1, 100)):
        chunks = make_chunks("a", list(range(n)), many, size=4, workers=workers)
        sizes = [len(c.indices) for c in chunks]
        assert sizes[0] == first and sizes[-1] == 4 and sum(sizes) == n
        own = {tuple(sorted(b)) for b in micro_batches(many[:n], 4)}
        assert all(set(c.indices) == {i for b in own if set(b) <= set(c.indices) for i in b} for c in chunks)

def test_one_worker_stays_in_process_without_ray():
    import subprocess
    import sys

    code = ("import sys; from symoe_eval.runtime.context import RunContext; "
            "from symoe_eval.runtime.scheduling import Scheduler; "
            "s = RunContext.create(pool='tiny-cpu', engine='hf', cache_dir='none').scheduler(False); "
            "assert type(s) is Scheduler, type(s); assert 'ray' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
