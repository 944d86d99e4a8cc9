"""io: atomic writes that fail in one sentence, stage records with provenance, stage locks."""

from __future__ import annotations

import json
import os

import pytest
from filelock import FileLock

from depthg_lib import io
from depthg_lib.errors import DepthGError, run_cli


def test_long_file_name_fits_the_temporary_name(tmp_path):
    path = tmp_path / ("x" * 240 + ".png")  # legal; ".<name>.XXXXXXXX.tmp.png" would not be
    io.save_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_file_name_over_the_limit_is_one_clear_error(tmp_path):
    with pytest.raises(DepthGError, match="file name is 300 bytes"):
        io.save_json(tmp_path / ("y" * 295 + ".json"), {})


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_output_folder_that_is_a_file_is_one_clear_error(tmp_path, where):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    target = blocker / "x.json" if where == "file" else blocker / "sub" / "x.json"
    with pytest.raises(DepthGError, match="in the way|cannot create"):
        io.save_json(target, {})


def test_folder_where_the_output_file_should_be(tmp_path):
    (tmp_path / "x.json").mkdir()
    with pytest.raises(DepthGError, match="folder of that name is in the way"):
        io.save_json(tmp_path / "x.json", {})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left


def test_cli_prints_one_line_for_an_unusable_output(tmp_path, capsys):
    (tmp_path / "out").write_text("")

    def main(argv):
        io.save_json(tmp_path / "out" / "r.json", {})

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


# -- provenance ---------------------------------------------------------------------------------

def _files(tmp_path, **contents):
    for name, text in contents.items():
        (tmp_path / name).write_text(text)
    return [tmp_path / n for n in contents]


def test_stamp_files_sees_a_file_replaced_in_place(tmp_path, monkeypatch):
    files = _files(tmp_path, a="1", b="2")
    before = io.stamp_files(files, tmp_path)
    assert io.stamp_files(files, tmp_path) == before
    (tmp_path / "b").write_text("3")  # same name, same size
    assert io.stamp_files(files, tmp_path)["digest"] != before["digest"]
    # by mtime (large sets): a rewrite with new content and a later mtime changes it too
    monkeypatch.setattr(io, "HASH_LIMIT", 0)
    by_time = io.stamp_files(files, tmp_path)
    os.utime(tmp_path / "a", ns=(1, 10**18))
    assert io.stamp_files(files, tmp_path)["digest"] != by_time["digest"]
    monkeypatch.undo()
    # names are relative to the root: a moved folder keeps its digest (content mode)
    current = io.stamp_files(files, tmp_path)
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in files:
        os.replace(f, moved / f.name)
    assert io.stamp_files([moved / f.name for f in files], moved) == current
    assert io.stamp_files([moved / "a"], moved)["files"] == 1


def test_stage_record_refuses_changed_inputs_once_and_names_the_command(tmp_path):
    files = _files(tmp_path, a="1")
    inputs = {"train/images": io.stamp_files(files, tmp_path, what="the train images")}
    assert io.check_stage_settings(tmp_path, "s", {"k": 1}, inputs=inputs) is False
    assert io.check_stage_settings(tmp_path, "s", {"k": 1}, inputs=inputs) is True
    (tmp_path / "a").write_text("2")
    inputs2 = {"train/images": io.stamp_files(files, tmp_path, what="the train images")}
    with pytest.raises(DepthGError) as err:
        io.check_stage_settings(tmp_path, "s", {"k": 2}, inputs=inputs2, command="python -m x")
    message = str(err.value)
    assert "other settings (k: 1 -> 2)" in message and "the train images" in message
    assert message.count("python -m x --force") == 1
    assert io.check_stage_settings(tmp_path, "s", {"k": 1}, inputs=inputs2, force=True) is False
    assert io.check_stage_settings(tmp_path, "s", {"k": 1}, inputs=inputs2) is True


def test_stage_record_adds_new_splits_and_adopts_old_records(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"k": 1}))  # written before inputs existed
    train = {"train/images": {"what": "t", "digest": "aa", "files": 1}}
    assert io.check_stage_settings(tmp_path, "s", {"k": 1}, inputs=train) is True
    assert io.recorded_inputs(tmp_path, "s") == train
    train_part = io.record_digest(tmp_path / "s.json", split="train")
    val = {"val/images": {"what": "v", "digest": "bb", "files": 1}}
    assert io.check_stage_settings(tmp_path, "s", {"k": 1}, inputs=val) is True
    assert set(io.recorded_inputs(tmp_path, "s")) == {"train/images", "val/images"}
    # the train part of the record did not change when val was added: train's users stay valid
    assert io.record_digest(tmp_path / "s.json", split="train") == train_part
    assert io.record_digest(tmp_path / "s.json", split="val") != train_part
    assert not io.recorded_settings_differ(tmp_path, "s", {"k": 1})
    assert io.record_digest(tmp_path / "absent.json")["digest"] is None


def test_stage_lock_second_holder_gets_one_clear_message(tmp_path):
    with io.stage_lock(tmp_path, "depth"):
        with pytest.raises(DepthGError, match=r"another depth run is writing to .*wait for it"):
            with io.stage_lock(tmp_path, "depth"):
                pass
    with FileLock(tmp_path / ".crop.lock"):
        with pytest.raises(DepthGError, match="another crop run"):
            with io.stage_lock(tmp_path, "crop"):
                pass
    with io.stage_lock(tmp_path, "depth"):  # released: free again
        pass


def test_disk_room_walks_its_folder_only_when_it_will_judge(tmp_path, monkeypatch):
    walked = []
    monkeypatch.setattr(io, "tree_bytes", lambda folder: walked.append(folder) or 0)
    io.DiskRoom(tmp_path, io.DiskRoom.PROBE, "images")  # e.g. depth's "." when nothing is to do
    assert walked == []
    io.DiskRoom(tmp_path, io.DiskRoom.PROBE + 1, "images")
    assert walked == [tmp_path]
