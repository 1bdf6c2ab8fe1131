from .single_centric_object_crop import SingleCentricObjectCrop

__all__ = ['SingleCentricObjectCrop']
