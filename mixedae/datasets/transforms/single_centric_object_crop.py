"""Object-aware cropping for MixedAE's object-aware pre-training."""
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from mmpretrain.datasets.transforms import RandomResizedCrop
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class SingleCentricObjectCrop(RandomResizedCrop):
    """Random resized crop centred on one object (MultiSiam's
    single-centric-object guarantee).

    A box is chosen at random among ``results[bbox_key]`` (x1, y1, x2, y2 in
    pixels; an array, a tensor or mmdet's ``HorizontalBoxes``). The crop's
    size and aspect ratio are drawn as in :class:`RandomResizedCrop`, its
    centre is drawn inside the box, and the crop is accepted when it keeps at
    least ``min_box_kept`` of the box's area and the box covers at least
    ``min_crop_cover`` of the crop. ``max_attempts`` candidates are drawn at
    once; if none is accepted, or the image has no box, it falls back to
    the plain :class:`RandomResizedCrop`.

    Adds ``crop_bbox`` (x1, y1, x2, y2 of the crop in the input image,
    inclusive) and ``object_index`` (index of the chosen box in
    ``results[bbox_key]``, -1 on fallback), and maps the boxes into the
    output image (clipped to the crop, as a float32 array).

    Args:
        scale, crop_ratio_range, aspect_ratio_range, max_attempts,
            interpolation, backend: as in :class:`RandomResizedCrop`.
        min_box_kept (float): least share of the box inside the crop.
            Defaults to 0.5.
        min_crop_cover (float): least share of the crop covered by the box.
            Defaults to 0.1.
        bbox_key (str): results key of the boxes. Defaults to 'gt_bboxes'
            (mmdet's ``LoadAnnotations``).
    """

    def __init__(self,
                 scale: Union[Sequence, int],
                 crop_ratio_range: Tuple[float, float] = (0.2, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 50,
                 interpolation: str = 'bicubic',
                 backend: str = 'pillow',
                 min_box_kept: float = 0.5,
                 min_crop_cover: float = 0.1,
                 bbox_key: str = 'gt_bboxes') -> None:
        super().__init__(
            scale=scale,
            crop_ratio_range=crop_ratio_range,
            aspect_ratio_range=aspect_ratio_range,
            max_attempts=max_attempts,
            interpolation=interpolation,
            backend=backend)
        for name, value in (('min_box_kept', min_box_kept),
                            ('min_crop_cover', min_crop_cover)):
            if not 0 <= value <= 1:
                raise ValueError(f'`{name}` must be in [0, 1], got {value}.')
        self.min_box_kept = min_box_kept
        self.min_crop_cover = min_crop_cover
        self.bbox_key = bbox_key

    def object_crop_params(
            self, img_hw: Tuple[int, int],
            boxes: np.ndarray) -> Optional[Tuple[int, int, int, int, int]]:
        """Draw ``max_attempts`` candidate crops at once and return the first
        accepted one as (offset_h, offset_w, target_h, target_w, box index),
        or None."""
        h, w = img_hw
        n = self.max_attempts
        idx = np.random.randint(len(boxes), size=n)
        x1, y1, x2, y2 = boxes[idx].T
        area = np.random.uniform(*self.crop_ratio_range, size=n) * h * w
        ratio = np.exp(
            np.random.uniform(*np.log(self.aspect_ratio_range), size=n))
        tw = np.round(np.sqrt(area * ratio)).astype(int)
        th = np.round(np.sqrt(area / ratio)).astype(int)
        # offsets whose crop lies in the image and whose centre lies in the box
        lo_x = np.ceil(np.maximum(0, x1 - tw / 2)).astype(int)
        hi_x = np.floor(np.minimum(w - tw, x2 - tw / 2)).astype(int)
        lo_y = np.ceil(np.maximum(0, y1 - th / 2)).astype(int)
        hi_y = np.floor(np.minimum(h - th, y2 - th / 2)).astype(int)
        ok = (tw > 0) & (th > 0) & (lo_x <= hi_x) & (lo_y <= hi_y)
        ox = lo_x + np.floor(np.random.rand(n) *
                             np.maximum(hi_x - lo_x + 1, 1)).astype(int)
        oy = lo_y + np.floor(np.random.rand(n) *
                             np.maximum(hi_y - lo_y + 1, 1)).astype(int)
        inter = (np.clip(np.minimum(ox + tw, x2) - np.maximum(ox, x1), 0,
                         None) *
                 np.clip(np.minimum(oy + th, y2) - np.maximum(oy, y1), 0,
                         None))
        box_area = (x2 - x1) * (y2 - y1)
        ok &= inter >= self.min_box_kept * box_area
        ok &= inter >= self.min_crop_cover * tw * th
        if not ok.any():
            return None
        a = int(np.argmax(ok))
        return int(oy[a]), int(ox[a]), int(th[a]), int(tw[a]), int(idx[a])

    def transform(self, results: dict) -> dict:
        img = results['img']
        boxes = results.get(self.bbox_key)
        params = None
        if boxes is not None:
            boxes = np.asarray(
                getattr(boxes, 'tensor', boxes),
                dtype=np.float32).reshape(-1, 4)
            valid = np.flatnonzero((boxes[:, 2] > boxes[:, 0])
                                   & (boxes[:, 3] > boxes[:, 1]))
            if len(valid):
                params = self.object_crop_params(img.shape[:2],
                                                 boxes[valid])
            if params is not None:
                params = (*params[:4], int(valid[params[4]]))
        if params is None:
            params = (*self.rand_crop_params(img), -1)
        oh, ow, th, tw, obj = params
        crop_bbox = np.array([ow, oh, ow + tw - 1, oh + th - 1])
        img = mmcv.imcrop(img, bboxes=crop_bbox)
        img = mmcv.imresize(
            img,
            tuple(self.scale[::-1]),
            interpolation=self.interpolation,
            backend=self.backend)
        results.update(
            img=img, img_shape=img.shape, crop_bbox=crop_bbox,
            object_index=obj)
        if boxes is not None:
            # boxes follow the crop (clipped to it) and the resize, as a
            # float32 array, so later transforms (flip) stay consistent
            scale = np.array(self.scale[::-1] * 2) / [tw, th, tw, th]
            boxes = (boxes - [ow, oh, ow, oh]).clip(0, [tw, th, tw, th])
            results[self.bbox_key] = (boxes * scale).astype(np.float32)
        return results

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] +
                f', min_box_kept={self.min_box_kept}, '
                f'min_crop_cover={self.min_crop_cover}, '
                f'bbox_key={self.bbox_key!r})')
