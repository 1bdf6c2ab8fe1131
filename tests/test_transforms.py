import numpy as np
import pytest
import torch
from mmpretrain.registry import TRANSFORMS

import mixedae  # noqa: F401


def _crop(**kw):
    cfg = dict(type='SingleCentricObjectCrop', scale=32)
    cfg.update(kw)
    return TRANSFORMS.build(cfg)


def _inside_share(crop, box):
    x1, y1, x2, y2 = crop[0], crop[1], crop[2] + 1, crop[3] + 1
    iw = max(0, min(x2, box[2]) - max(x1, box[0]))
    ih = max(0, min(y2, box[3]) - max(y1, box[1]))
    return iw * ih / ((box[2] - box[0]) * (box[3] - box[1])), iw * ih / (
        (x2 - x1) * (y2 - y1))


@pytest.mark.parametrize('seed', range(20))
def test_crop_centre_inside_chosen_box_and_box_kept(seed):
    np.random.seed(seed)
    boxes = np.array([[10, 20, 60, 90], [100, 30, 180, 70], [5, 5, 15, 12]],
                     dtype=np.float32)
    t = _crop(min_box_kept=0.6, min_crop_cover=0.2)
    res = t(dict(img=np.random.randint(0, 255, (120, 200, 3), np.uint8),
                 gt_bboxes=boxes.copy()))
    assert res['img'].shape == (32, 32, 3)
    obj = res['object_index']
    assert obj >= 0
    box = boxes[obj]
    x1, y1, x2, y2 = res['crop_bbox']
    cx, cy = (x1 + x2 + 1) / 2, (y1 + y2 + 1) / 2
    assert box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
    kept, cover = _inside_share(res['crop_bbox'], box)
    assert kept >= 0.6 - 1e-6 and cover >= 0.2 - 1e-6
    # boxes follow the crop into the 32 x 32 output
    assert res['gt_bboxes'].shape == (3, 4)
    assert (res['gt_bboxes'] >= 0).all() and (res['gt_bboxes'] <= 32).all()


def test_accepts_mmdet_boxes_and_tensors():
    from mmdet.structures.bbox import HorizontalBoxes
    np.random.seed(0)
    img = np.zeros((64, 64, 3), np.uint8)
    for boxes in (HorizontalBoxes(torch.tensor([[8., 8., 40., 40.]])),
                  torch.tensor([[8., 8., 40., 40.]])):
        res = _crop()(dict(img=img, gt_bboxes=boxes))
        assert res['object_index'] == 0


@pytest.mark.parametrize('boxes', [None, np.zeros((0, 4), np.float32),
                                   np.array([[5, 5, 5, 9]], np.float32)])
def test_falls_back_to_random_resized_crop_without_boxes(boxes):
    np.random.seed(0)
    results = dict(img=np.zeros((50, 70, 3), np.uint8))
    if boxes is not None:
        results['gt_bboxes'] = boxes
    res = _crop()(results)
    assert res['object_index'] == -1
    assert res['img'].shape == (32, 32, 3)


def test_falls_back_when_no_crop_satisfies_the_constraints():
    np.random.seed(0)
    # a 2 x 2 box can never cover 90% of a crop of at least 20% of the image
    res = _crop(min_crop_cover=0.9)(dict(
        img=np.zeros((100, 100, 3), np.uint8),
        gt_bboxes=np.array([[50, 50, 52, 52]], np.float32)))
    assert res['object_index'] == -1


def test_bad_share_names_the_argument():
    with pytest.raises(ValueError, match='min_box_kept'):
        _crop(min_box_kept=1.5)
