"""`divebatch export ID... --format gif|mp4`: a file of the race, its path printed; bad input
is one line and exit code 2."""

import imageio_ffmpeg
import pytest
from PIL import Image

from tests.helpers.cli import cli_in_process, run_cli
from tests.helpers.races import RACE, stored_race


@pytest.fixture
def race_ids(store):
    return [str(run_id) for run_id in stored_race(store)]


def test_gif_of_a_race_written_where_asked(race_ids, tmp_path):
    output = tmp_path / "race.gif"
    result = cli_in_process("export", *race_ids, "--format", "gif", "--speed", "fast",
                            "--x-axis", "train_time", "-o", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(output)
    with Image.open(output) as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 100


def test_mp4_named_after_its_runs_by_default(race_ids, tmp_path):
    result = run_cli("export", *race_ids[:2], "--format", "mp4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    name = f"divebatch-race-{race_ids[0]}-{race_ids[1]}.mp4"
    assert result.stdout.strip() == name
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / name))
    assert frames == 6 - 1 + 20  # 5 frames a second, the last one held 4 s


@pytest.mark.parametrize("args,needle", [
    (["export", "1", "999", "--format", "gif"], "run_id should be the id of a stored run, "
                                                "but got run_id=999"),
    (["export", "--format", "gif"], "the following arguments are required: run_id"),
    (["export", "1", "5", "--format", "mp4"], "runs should be of one problem and dataset to "
                                              "race, but got classification (run 1) and "
                                              "least_squares (run 5)"),
    (["export", "1", "2", "--format", "csv"], "--format csv exports one run's records, but "
                                              "got 2 run ids"),
    (["export", "1", "--format", "gif", "--speed", "warp"], "--speed: invalid choice: 'warp'"),
    (["export", "1", "--format", "gif", "--x-axis", "time"], "--x-axis: x_axis should be one "
                                                             "of samples_seen"),
    (["export", "1", "--format", "gif", "-o", "/nonexistent/race.gif"],
     "--output: cannot write /nonexistent/race.gif"),
])
def test_bad_input_exits_2_with_one_line(store, args, needle):
    stored_race(store)
    stored_race(store, RACE[:1], problem="least_squares")  # run 5
    result = cli_in_process(*args)
    assert result.returncode == 2, result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
