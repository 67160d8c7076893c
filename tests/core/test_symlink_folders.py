"""Issue 19 item 5: symlinked class folders are followed, and a link loop ends."""
import os

import pytest

from learnkit.core.items import get_files
from learnkit.vision.io import get_image_files


@pytest.fixture
def linked(tmp_path):
    store = tmp_path / "store" / "dogs"
    store.mkdir(parents=True)
    (store / "d1.jpg").write_bytes(b"x")
    data = tmp_path / "data"
    (data / "cats").mkdir(parents=True)
    (data / "cats" / "c1.jpg").write_bytes(b"x")
    os.symlink(store, data / "dogs", target_is_directory=True)       # a class folder that is a link
    os.symlink(data, data / "cats" / "loop", target_is_directory=True)  # a loop back to the top
    return data


def test_symlinked_class_folder_is_followed_and_loop_ends(linked):
    files = get_image_files(linked)
    assert [f.relative_to(linked).as_posix() for f in files] == ["cats/c1.jpg", "dogs/d1.jpg"]
    assert [f.name for f in get_files(linked, extensions=[".jpg"])] == ["c1.jpg", "d1.jpg"]
