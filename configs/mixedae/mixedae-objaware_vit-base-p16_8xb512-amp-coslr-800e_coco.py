# Object-aware MixedAE: pre-training on COCO train2017 images (no labels)
# with crops centred on one instance box (SingleCentricObjectCrop); images
# without boxes fall back to a random resized crop. 800 epochs of COCO's
# 118k images is about 74 ImageNet epochs of compute (our choice: the slides
# give no schedule for this row).
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

data_root = 'data/coco/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(
        type='SingleCentricObjectCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        min_box_kept=0.5,
        min_crop_cover=0.1,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='mmdet.CocoDataset',
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        # keep images without boxes: the crop falls back to RandomResizedCrop
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.0001,
        by_epoch=True,
        begin=0,
        end=40,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=760,
        by_epoch=True,
        begin=40,
        end=800,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=800)
