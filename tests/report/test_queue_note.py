"""The line that says why queued runs wait, and which paused runs hold the worker slots."""

from divebatch.report.queue_note import paused_holders, paused_slots, queued_note, workers_line


def running(run_id, pid, background=True, nproc=1):
    return {"id": run_id, "status": "running", "worker_pid": pid, "config": {"nproc": nproc},
            "info": {"background": True} if background else {}}


PAUSED_1 = {"epoch": 1, "paused": True}


def test_a_paused_background_run_holds_its_slot():
    runs = [running(5, 100), running(7, 200)]
    assert paused_holders(runs, {5: PAUSED_1, 7: {"epoch": 3, "batch": 2}}) == {5: 1}
    assert paused_holders(runs, {5: PAUSED_1, 7: None}) == {5: 1}
    assert paused_holders(runs, {}) == {}


def test_a_run_from_the_command_line_or_without_a_worker_yet_holds_no_slot_paused():
    runs = [running(5, 100, background=False), running(6, None)]
    assert paused_holders(runs, {5: PAUSED_1, 6: PAUSED_1}) == {}


def test_a_worker_interleaving_a_race_holds_its_slot_paused_only_when_all_its_runs_are():
    race = [running(run_id, 100) for run_id in (1, 2, 3, 4)]
    some = {1: PAUSED_1, 2: {"epoch": 1, "paused": True}, 3: {"epoch": 2}, 4: None}
    assert paused_holders(race, some) == {}
    every = {run_id: {"epoch": run_id, "paused": True} for run_id in (1, 2, 3, 4)}
    assert paused_holders(race, every) == {1: 1, 2: 2, 3: 3, 4: 4}
    assert paused_slots(race, paused_holders(race, every)) == 1  # one worker, one slot


def test_a_paused_run_with_nproc_2_holds_two_slots():
    runs = [running(5, 100, nproc=2)]
    assert paused_slots(runs, paused_holders(runs, {5: PAUSED_1})) == 2


def test_without_paused_runs_the_line_says_slots_free_up_on_their_own():
    level, line = queued_note([6], busy=1, slots=1, paused={})
    assert level == "info"
    assert line == ("Queued: #6. 1 of 1 worker slot(s) are busy; queued runs start on their "
                    "own, oldest first, as slots free up.")


def test_a_paused_run_on_a_free_slot_machine_blocks_nothing():
    level, line = queued_note([6], busy=1, slots=2, paused={5: 1})
    assert level == "info" and "1 of 2 worker slot(s) are busy" in line and "#5" not in line


def test_the_paused_run_on_the_only_slot_is_named_with_the_way_out():
    level, line = queued_note([6], busy=1, slots=1, paused={5: 1})
    assert level == "warning"
    assert line == ("Queued: #6. Its worker slot is held by #5, paused after epoch 1: Resume "
                    "#5 to let it finish, or Stop it to free the slot now.")
    assert "\n" not in line


def test_several_queued_and_several_paused_runs():
    level, line = queued_note([6, 7], busy=2, slots=2, paused={4: 2, 5: 1})
    assert level == "warning"
    assert line == ("Queued: #6, #7. All 2 worker slots are held by #4 (paused after epoch 2) "
                    "and #5 (paused after epoch 1): Resume them to let them finish, or Stop "
                    "one to free its slot now.")
    _, line = queued_note([6, 7], busy=1, slots=1, paused={5: 3})
    assert line.startswith("Queued: #6, #7. Their worker slot is held by #5, paused after "
                           "epoch 3:")


def test_a_paused_run_beside_a_training_one_is_named_and_the_queue_still_moves():
    level, line = queued_note([6], busy=2, slots=2, paused={5: 1}, paused_busy=1)
    assert level == "warning"
    assert line == ("Queued: #6. 2 of 2 worker slots are busy, 1 held by #5, paused after "
                    "epoch 1: Resume #5 to let it finish, or Stop it to free the slot now. "
                    "Queued runs also start on their own, oldest first, as slots free up.")


def test_a_read_only_dashboard_says_the_instructor_frees_the_slot():
    _, line = queued_note([6], busy=1, slots=1, paused={5: 1}, can_change=False)
    assert line == ("Queued: #6. Its worker slot is held by #5, paused after epoch 1: #6 "
                    "starts once the instructor resumes or stops #5.")
    _, line = queued_note([6, 7], busy=2, slots=2, paused={4: 1, 5: 1}, can_change=False)
    assert line.endswith("#6, #7 start once the instructor resumes or stops one of them.")


def test_the_workers_line_names_the_paused_runs_that_hold_slots():
    assert workers_line(1, 1, 0, {}) == "Workers: 1 of 1 slot(s) busy, 0 run(s) queued"
    assert workers_line(1, 1, 1, {5: 1}) == (
        "Workers: 1 of 1 slot(s) busy (#5 paused, holding its slot), 1 run(s) queued")
    assert workers_line(2, 2, 3, {4: 2, 5: 1}, command_line=[9]) == (
        "Workers: 2 of 2 slot(s) busy (#4 and #5 paused, holding their slots), 3 run(s) "
        "queued · running from the command line: #9")
