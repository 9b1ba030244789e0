import pytest

from pipeline.names import BadPatchName, check_patch_location, parse_patch_name


def test_parses_dataset_name():
    p = parse_patch_name("10253_idx5_x1351_y1101_class0.png")
    assert (p.patient_id, p.x, p.y, p.label) == ("10253", 1351, 1101, 0)


@pytest.mark.parametrize("name", [
    "10253_idx5_x1351_y1101_class2.png",    # no such class
    "10253_idx5_x1351_y1101_class0.jpg",    # not a PNG name
    "10253_idx5_x1351_class0.png",          # missing y
    "abc_idx5_x1_y1_class0.png",            # non-numeric patient
    "10253_idx5_x0_y1_class0.png",          # coordinates start at 1
    ".DS_Store",
])
def test_rejects_odd_names(name):
    with pytest.raises(BadPatchName):
        parse_patch_name(name)


def test_folder_label_must_agree_with_name():
    p = parse_patch_name("8863_idx5_x51_y101_class1.png")
    check_patch_location(p, "8863", "1")
    with pytest.raises(BadPatchName, match="folder says class 0"):
        check_patch_location(p, "8863", "0")
    with pytest.raises(BadPatchName, match="move the file"):
        check_patch_location(p, "9999", "1")
